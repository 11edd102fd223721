"""Tests for services.gradcam_analyzer: bounded streaming selection, the CAM wrapper, the report and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import tiny_config
from core.model import build_model
from core.preprocessing import CHECKPOINT_KEY, PreprocessingSpec
from core.trainer import ImageNetTrainer
from services.gradcam_analyzer import (GradCamAnalyzer, collect_predictions, load_model, main, overlay_cam,
                                       resnet_target_layer)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_streaming_selection_matches_brute_force_for_1000_classes() -> None:
    """Heaps of k per class (and per confused pair) give exactly what sorting all outputs would."""
    C, N, k, m = 1000, 6000, 3, 2
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, C, (N,), generator=g)
    logits = torch.randn(N, C, generator=g)
    logits[torch.arange(N), targets] += 3.0 * torch.rand(N, generator=g) + 2.0  # ~half correct
    model = nn.Linear(C, C, bias=False)
    nn.init.eye_(model.weight)  # the "images" are the logits themselves
    loader = [(logits[i:i + 512], targets[i:i + 512]) for i in range(0, N, 512)]
    s = collect_predictions(model, loader, C, top_k=k, pair_examples=m)

    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    assert s.num_images == N
    assert s.confusion.shape == (C, C) and int(s.confusion.sum()) == N
    assert s.top1 == pytest.approx(100.0 * (pred == targets).float().mean().item())
    for c in range(0, C, 97):
        mine = (targets == c)
        correct = torch.nonzero(mine & (pred == targets)).squeeze(1).tolist()
        wrong = torch.nonzero(mine & (pred != targets)).squeeze(1).tolist()
        best = sorted(correct, key=lambda i: -conf[i].item())[:k]
        worst = sorted(correct, key=lambda i: conf[i].item())[:k]
        wrong_best = sorted(wrong, key=lambda i: -conf[i].item())[:k]
        assert [e.position for e in s.examples["confident_correct"].get(c, [])] == best
        assert [e.position for e in s.examples["unsure_correct"].get(c, [])] == worst
        assert [e.position for e in s.examples["confident_wrong"].get(c, [])] == wrong_best
    assert all(len(v) <= k for kind in s.examples.values() for v in kind.values())
    assert all(len(v) <= m for v in s.pair_examples.values())
    ex = s.examples["confident_wrong"][int(targets[wrong_best[0]])][0] if wrong_best else None
    if ex is not None:
        assert ex.confidence == pytest.approx(conf[ex.position].item(), rel=1e-5)
        assert ex.true_prob == pytest.approx(probs[ex.position, ex.true].item(), rel=1e-4)


def test_cam_wrapper_shapes_hooks_and_errors() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=5, zero_init_residual=False)
    layer = resnet_target_layer(model)
    assert layer is model.layer4[-1]
    images = torch.randn(3, 3, 64, 64)
    for method in ("gradcam", "gradcam++"):
        with GradCamAnalyzer(model, method) as cam:
            assert len(layer._forward_hooks) > 0
            maps, logits = cam.cams(images, [0, 1, 4])
            maps_pred, _ = cam.cams(images)  # default: the predicted class
        assert len(layer._forward_hooks) == 0  # released on exit
        assert maps.shape == (3, 64, 64) and maps.dtype == np.float32 and maps_pred.shape == (3, 64, 64)
        assert maps.min() >= 0 and maps.max() <= 1 and np.isfinite(maps).all()
        assert logits.shape == (3, 5)
    # Exceptions inside the block propagate (pytorch-grad-cam's own __exit__ would swallow an IndexError)
    with pytest.raises(IndexError):
        with GradCamAnalyzer(model) as cam:
            raise IndexError("boom")
    assert len(layer._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="inside"):
        GradCamAnalyzer(model).cams(images)
    with pytest.raises(ValueError, match="gradcam, gradcam\\+\\+"):
        GradCamAnalyzer(model, "scorecam")
    with pytest.raises(ValueError, match="layer1, layer2, layer3, layer4"):
        GradCamAnalyzer(model, target_layer="layer9")
    over = overlay_cam(np.full((96, 80, 3), 128, np.uint8), maps[0])
    assert over.shape == (96, 80, 3) and over.dtype == np.uint8


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint in the trainer's own format (no training needed for shape tests)."""
    cfg = tiny_config(tmp_path, data={"val_fraction": 0.5})
    torch.manual_seed(0)
    trainer = ImageNetTrainer(cfg)
    path = trainer.save_last()
    trainer.close()
    return path


def test_command_writes_self_contained_report(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "gc"
    code = main(["--gradcam.checkpoint", str(checkpoint), "--gradcam.out", str(out), "--data.num_workers", "0",
                 "--data.index_cache_dir", str(tmp_path / "cache"), "--gradcam.top_k", "2", "--gradcam.pairs", "3",
                 "--pair-examples", "2", "--batch-size", "32", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["num_images"] == 90  # 10 classes x 18 val images x val_fraction 0.5
    cm = np.load(out / "confusion_matrix.npy")
    assert cm.shape == (10, 10) and cm.sum() == 90
    for kind in analysis["examples"].values():
        for cls, exs in kind.items():
            assert 1 <= len(exs) <= 2
            assert all(e["true"] == int(cls) for e in exs)
    assert 1 <= len(analysis["confused_pairs"]) <= 3
    for p in analysis["confused_pairs"]:
        assert cm[p["true"], p["pred"]] == p["count"] and 1 <= len(p["examples"]) <= 2

    overlays = sorted((out / "overlays").glob("*.png"))
    assert overlays
    with Image.open(overlays[0]) as im:
        assert im.size == (128, 128)  # display size: max(val 32 px, 128)
    rows = (out / "per_class_accuracy.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("class_index,wnid,name")

    html = (out / "report.html").read_text(encoding="utf-8")
    assert len(html) > 10_000
    srcs = re.findall(r"""src=["']([^"']*)["']""", html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # opens with no server and no sibling files
    assert not re.search(r"""(href|src)=["']https?:""", html)
    assert "tench" in html and "n01440764" in html  # names from the checkpoint's mapping
    assert html.count("<h3 id='class") == 10


def test_load_model_prefers_ema_and_refuses_other_classes(checkpoint: Path, tmp_path: Path, capsys) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["model_ema"] = {k: (v + 1 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    ema_path = tmp_path / "ema.pt"
    torch.save(ckpt, ema_path)
    loaded = load_model(ema_path, "cpu")
    assert loaded.weights == "model_ema" and not loaded.model.training
    assert torch.equal(loaded.model.fc.weight, ckpt["model_ema"]["fc.weight"])
    assert loaded.class_names[0].startswith("tench")

    ckpt["classes"] = [f"n{i:08d}" for i in range(10)]
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    assert main(["--checkpoint", str(other), "--out", str(tmp_path / "x"), "--data.num_workers", "0",
                 "--data.index_cache_dir", str(tmp_path / "cache")]) == 2
    assert "--data.root" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2


def test_load_model_reads_the_checkpoints_preprocessing(checkpoint: Path, tmp_path: Path) -> None:
    loaded = load_model(checkpoint, "cpu")
    assert loaded.preprocessing == PreprocessingSpec.from_data_config(loaded.config.data)  # derived from the config
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt[CHECKPOINT_KEY] = {**loaded.preprocessing.to_dict(), "input_size": 48, "resize_size": 55}
    torch.save(ckpt, tmp_path / "spec.pt")
    assert load_model(tmp_path / "spec.pt", "cpu").preprocessing.input_size == 48  # the recorded spec wins


def test_load_model_rebuilds_a_blurpool_network(tmp_path: Path) -> None:
    # --model.blurpool reaches the trainer's network (core.step.build_run_model), and a checkpoint of such a run
    # comes back with the blur: without it the logits (and CAMs) would be another network's
    cfg = tiny_config(tmp_path, data={"val_fraction": 0.5}, model={"blurpool": True})
    torch.manual_seed(0)
    trainer = ImageNetTrainer(cfg)
    path = trainer.save_last()
    trained = trainer.model.eval()
    trainer.close()
    assert [n for n, m in trained.named_modules() if hasattr(m, "blur_kernel")][0] == "layer2.0.conv1"
    loaded = load_model(path, "cpu").model
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # equal up to float rounding (1e-8 seen on some CPUs: oneDNN may pick other kernels for the trainer's
        # memory format); a network without the blur differs by far more (below)
        torch.testing.assert_close(loaded(x), trained(x).float(), rtol=0, atol=1e-6)
        plain = build_model(cfg.model.name, 10, cfg.model.small_input).eval()
        plain.load_state_dict(loaded.state_dict())
        assert (plain(x) - loaded(x)).abs().max() > 1e-4
