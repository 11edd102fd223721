"""Export of a checkpoint into the Space folder: files, class names, round trip, EMA, refusals, the Space's
torchvision network, the ImageNet class table and the Hub upload's dry run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from core.checkpoint import load_checkpoint
from core.config import BUNDLED_SAMPLE_ROOT, ExperimentConfig
from core.data.decode import decode_image
from core.data.transforms import build_eval_transform
from core.model import available_models, build_model
from deployment import push_to_hub
from deployment.app import build_network
from deployment.export import (CARD_END, CARD_START, DEPLOYMENT_DIR, ExportError, export_checkpoint,
                               load_imagenet_class_names, main, write_card_section)
from deployment_helpers import checkpoint_of, exported_space


@pytest.fixture(scope="session")
def space(tmp_path_factory) -> Path:
    return exported_space(tmp_path_factory.getbasetemp() / "deployment")


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _real_photos(n_per_class: int = 1) -> list[Path]:
    return [p for c in sorted((BUNDLED_SAMPLE_ROOT / "val").iterdir()) for p in sorted(c.iterdir())[:n_per_class]]


# ---------------------------------------------------------------------------------------------- the class table

def test_imagenet_class_table_is_the_real_1k_list():
    path = DEPLOYMENT_DIR.parent / "core" / "imagenet_classes.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    wnids = [line.split("\t")[0] for line in lines]
    assert len(lines) == 1000 and len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert all(line.count("\t") == 1 and line.split("\t")[1].strip() for line in lines)
    names = load_imagenet_class_names()
    assert names["n01440764"] == "tench, Tinca tinca"
    assert names["n02102040"].startswith("English springer")
    assert names["n03888257"].startswith("parachute")
    assert names["n15075141"].startswith("toilet tissue")  # the last ILSVRC2012 class
    # the bundled sample's own mapping agrees on its 10 classes
    for line in (BUNDLED_SAMPLE_ROOT / "LOC_synset_mapping.txt").read_text().splitlines():
        wnid, name = line.split(" ", 1)
        assert names[wnid].startswith(name.split(",")[0])


# ---------------------------------------------------------------------------------------------- export

def test_export_writes_weights_config_classes_and_card(space):
    ckpt = load_checkpoint(checkpoint_of(space))
    model_dir = space / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 10 and config["weights"] == "model"
    pre = config["preprocessing"]
    assert pre["input_size"] == 64 and pre["resize_size"] == round(64 / 0.875) and pre["crop_ratio"] == 0.875
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    # the recorded accuracy is the trainer's, with the data it was measured on
    records = [json.loads(line) for line in (checkpoint_of(space).parents[1] / "logs" / "metrics.jsonl").open()]
    best = next(r for r in records if r["epoch"] == ckpt["epoch"])
    assert config["metrics"]["top1"] == pytest.approx(ckpt["best_top1"]) == pytest.approx(best["val_top1"])
    assert config["metrics"]["top5"] == pytest.approx(best["val_top5"])
    assert "bundled Imagenette sample" in config["metrics"]["dataset"]
    assert config["metrics"]["val_images"] == 40 and config["metrics"]["val_fraction"] == 0.2

    classes = json.loads((model_dir / "classes.json").read_text())
    table = load_imagenet_class_names()
    assert [c["index"] for c in classes] == list(range(10))
    assert [c["wnid"] for c in classes] == ckpt["classes"]
    assert [c["name"] for c in classes] == [table[w] for w in ckpt["classes"]]

    weights = load_file(str(model_dir / "model.safetensors"))
    assert set(weights) == set(ckpt["model"])
    card = (model_dir / "model_card.md").read_text()
    assert f"top-1 {ckpt['best_top1']:.2f} %" in card and "ResNet-18" in card and "tench (n01440764)" in card
    readme = (space / "README.md").read_text()
    assert card.strip() in readme and readme.startswith("---\n")  # the card replaced the README's section


def test_exported_model_gives_the_checkpoints_logits_on_real_photos(space):
    ckpt = load_checkpoint(checkpoint_of(space))
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    reference = build_model(cfg.model.name, len(ckpt["classes"]), cfg.model.small_input).eval()
    reference.load_state_dict(ckpt["model"])
    space_app = _import_file(space / "app.py", "space_app_roundtrip")
    exported = space_app.build_network("resnet18", 10, False).eval()
    exported.load_state_dict(load_file(str(space / "model" / "model.safetensors")))
    transform = build_eval_transform(cfg.data, cfg.data.val_image_size)
    x = torch.stack([transform(image=decode_image(p))["image"] for p in _real_photos()])  # (10, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), reference(x), rtol=0, atol=0)


def test_a_blurpool_checkpoint_exports_and_the_space_rebuilds_it(space, tmp_path):
    ckpt = load_checkpoint(checkpoint_of(space))
    ckpt["config"]["model"]["blurpool"] = True  # same keys and weights: only the network's graph changes
    torch.save(ckpt, tmp_path / "blur.pt")
    export_checkpoint(tmp_path / "blur.pt", tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["blurpool"] is True
    assert "BlurPool" in (tmp_path / "model" / "model_card.md").read_text()
    space_app = _import_file(space / "app.py", "space_app_blurpool")
    served = space_app.Predictor(tmp_path / "model", device="cpu").model
    reference = build_model("resnet18", 10, False, blurpool=True).eval()
    reference.load_state_dict(ckpt["model"])
    cfg = ExperimentConfig.from_dict(ckpt["config"])
    transform = build_eval_transform(cfg.data, cfg.data.val_image_size)
    x = torch.stack([transform(image=decode_image(p))["image"] for p in _real_photos()])  # (10, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(served(x), reference(x), rtol=0, atol=0)
        plain = build_model("resnet18", 10, False).eval()
        plain.load_state_dict(ckpt["model"])
        assert (plain(x) - reference(x)).abs().max() > 1e-3  # the blur is really there


def test_export_prefers_ema_weights(space, tmp_path):
    ckpt = load_checkpoint(checkpoint_of(space))
    ckpt["model_ema"] = {k: v.clone() for k, v in ckpt["model"].items()}
    ckpt["model_ema"]["fc.weight"] += 1.0  # tell them apart
    torch.save(ckpt, tmp_path / "ema.pt")
    export_checkpoint(tmp_path / "ema.pt", tmp_path / "out")
    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    torch.testing.assert_close(weights["fc.weight"], ckpt["model_ema"]["fc.weight"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["weights"] == "ema"
    assert "EMA" in (tmp_path / "out" / "model_card.md").read_text()


def test_export_refuses_a_checkpoint_without_class_mapping(space, tmp_path):
    ckpt = load_checkpoint(checkpoint_of(space))
    for key in ("classes", "class_names", "class_to_idx"):
        ckpt.pop(key)
    torch.save(ckpt, tmp_path / "nameless.pt")
    with pytest.raises(ExportError, match="no class mapping"):
        export_checkpoint(tmp_path / "nameless.pt", tmp_path / "out")
    with pytest.raises(SystemExit, match="export failed: .*no class mapping"):
        main(["--checkpoint", str(tmp_path / "nameless.pt"), "--out", str(tmp_path / "out2")])
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_export_refuses_a_class_list_that_does_not_fit_the_head(space, tmp_path):
    ckpt = load_checkpoint(checkpoint_of(space))
    ckpt["classes"] = ckpt["classes"][:9]
    ckpt.pop("class_to_idx")
    torch.save(ckpt, tmp_path / "short.pt")
    with pytest.raises(ExportError, match="10 outputs but the class mapping names 9"):
        export_checkpoint(tmp_path / "short.pt", tmp_path / "out")


# ---------------------------------------------------------------------------------------------- the Space's network

@pytest.mark.parametrize("small_input,blurpool", [(False, False), (True, False), (False, True)],
                         ids=["imagenet_stem", "small_input", "blurpool"])
@pytest.mark.parametrize("name", available_models())
def test_space_network_matches_core(name, small_input, blurpool):
    assert not (DEPLOYMENT_DIR / "model.py").exists()  # no generated copy: the Space imports torchvision
    ours = build_model(name, num_classes=7, small_input=small_input, zero_init_residual=False,
                       blurpool=blurpool).eval()
    theirs = build_network(name, 7, small_input, blurpool).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same keys, same shapes
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=0, atol=0)  # same graph


# ---------------------------------------------------------------------------------------------- README and Hub

def test_space_readme_front_matter_and_card_section(tmp_path):
    text = (DEPLOYMENT_DIR / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    write_card_section(readme, "## Model card\n\nnew card\n")
    new = readme.read_text(encoding="utf-8")
    assert new.startswith(text.split(CARD_START)[0]) and "new card" in new and new.endswith(text.split(CARD_END)[1])
    assert new.count(CARD_START) == new.count(CARD_END) == 1


def test_push_to_hub_dry_run_lists_the_space_without_network(space, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # any import of it would raise
    assert push_to_hub.main(["--repo-id", "someone/resnet-demo", "--folder", str(space), "--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = [line.split("KiB")[1].strip() for line in out.splitlines() if "KiB" in line]
    assert listed == sorted(listed)
    for name in ("README.md", "app.py", "requirements.txt", "model/model.safetensors",
                 "model/config.json", "model/classes.json", "examples/tench.jpg"):
        assert name in listed
    assert not any(n.endswith(("export.py", "push_to_hub.py", "__init__.py")) for n in listed)
    assert "would send to https://huggingface.co/spaces/someone/resnet-demo" in out


def test_push_to_hub_refuses_a_folder_without_model(tmp_path, capsys):
    for name in ("README.md", "app.py", "requirements.txt"):
        (tmp_path / name).write_text("x")
    assert push_to_hub.main(["--repo-id", "someone/demo", "--folder", str(tmp_path), "--dry-run"]) == 2
    assert "model/model.safetensors" in capsys.readouterr().err
    assert push_to_hub.main(["--repo-id", "no-slash", "--folder", str(tmp_path), "--dry-run"]) == 2
