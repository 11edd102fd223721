"""Config validation, YAML layering and command-line overrides."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.cli import experiment_config
from core.config import (DataConfig, ExperimentConfig, ModelConfig, TrainingConfig, load_yaml_config,
                         parse_config)


def test_defaults_are_valid_and_effective_batch_is_derived():
    cfg = ExperimentConfig()
    assert cfg.training.effective_batch_size == cfg.training.batch_size * cfg.training.grad_accum_steps
    t = TrainingConfig(batch_size=32, grad_accum_steps=4)
    assert t.effective_batch_size == 128


def test_every_field_has_a_default_and_a_doc():
    source = Path(sys.modules["core.config"].__file__).read_text()
    for section in (DataConfig, ModelConfig, TrainingConfig):
        for f in dataclasses.fields(section):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            # attribute docstring directly below the field
            assert f'    {f.name}:' in source and '"""' in source.split(f"    {f.name}:", 1)[1].splitlines()[1], f.name


def test_all_problems_reported_at_once_with_flag_names():
    with pytest.raises(ValueError) as e:
        ExperimentConfig(data=DataConfig(fraction=0.0), model=ModelConfig(name="resnet51"),
                         training=TrainingConfig(grad_accum_steps=0, label_smoothing=1.5, lr_finder_steps=5))
    msg = str(e.value)
    for flag in ("--data.fraction", "--model.name", "--training.grad_accum_steps", "--training.label_smoothing",
                 "--training.lr_finder_steps"):
        assert flag in msg
    assert "resnet18" in msg  # the valid choices are listed


def test_cli_overrides_and_yaml_layering(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": {"name": "resnet50"}, "training": {"epochs": 30, "lr": 0.05}}))
    cfg = parse_config(["--training.epochs", "2", "--data.root", "/data/ILSVRC2012", "--model.name", "resnet18",
                        "--training.deterministic", "true"], [base])
    assert cfg.training.epochs == 2 and cfg.training.lr == 0.05  # flag beats YAML, YAML beats default
    assert cfg.model.name == "resnet18" and cfg.data.root == Path("/data/ILSVRC2012")
    assert cfg.training.deterministic is True


def test_cli_out_of_range_value_raises_value_error():
    with pytest.raises(ValueError, match="--training.epochs must be >= 1"):
        parse_config(["--training.epochs", "0"])


def test_cli_wrong_type_exits_with_usage():
    with pytest.raises(SystemExit):
        parse_config(["--training.amp", "fp32"])


def test_help_lists_every_field_with_its_doc():
    out = subprocess.run([sys.executable, "-c", "from core.config import build_parser; build_parser().print_help()"],
                         capture_output=True, text=True, check=True, cwd="/").stdout
    for flag in ("--data.root", "--data.fraction", "--model.name", "--training.grad_accum_steps",
                 "--training.resume", "--logging.output_dir"):
        assert flag in out
    assert "Micro-batches accumulated per optimizer step" in out


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = ExperimentConfig(data=DataConfig(root=Path("/x"), fraction=0.2, mean=(0.5, 0.5, 0.5)),
                           training=TrainingConfig(epochs=3))
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    path = cfg.save_yaml(tmp_path / "config.yaml")
    assert load_yaml_config(path) == cfg


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown fields in section 'training'"):
        ExperimentConfig.from_dict({"training": {"epoch": 3}})


def test_phase_script_config_uses_sample_overlay_only_without_root(tmp_path):
    script_dir = Path(__file__).resolve().parents[1] / "experiments" / "phase1_subset_20pct"
    sample_cfg = experiment_config(script_dir, [])
    assert sample_cfg.data.root is None and sample_cfg.model.name == "resnet18"  # sample.yaml applied
    assert sample_cfg.logging.output_dir == script_dir
    real_cfg = experiment_config(script_dir, ["--data.root", str(tmp_path), "--logging.output_dir", str(tmp_path)])
    assert real_cfg.model.name == "resnet50" and real_cfg.data.fraction == 0.2  # the real recipe
    assert real_cfg.training.batch_size == 32 and real_cfg.training.grad_accum_steps == 4
    assert real_cfg.training.save_every_epochs == 5
    assert real_cfg.logging.output_dir == tmp_path


def test_readme_documents_every_flag():
    from core.config import reference_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert reference_markdown() in readme, "README's flag tables are stale: paste the output of python -m core.config"


PHASE1_DIR = Path(__file__).resolve().parents[1] / "experiments" / "phase1_subset_20pct"


def _printed(capsys, argv: list[str]) -> str:
    """What ``experiment_config(phase 1, argv)`` prints before it exits (``--help``, ``--print_config``)."""
    from experiments.phase1_subset_20pct import train

    with pytest.raises(SystemExit) as exit_:
        experiment_config(PHASE1_DIR, argv, description=train.__doc__)
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["--data.root", "/data/ILSVRC2012", "--training.epochs", "7"],
                                  ["--training.lr", "0.3", "--config", str(PHASE1_DIR / "config.yaml")]])
def test_print_config_is_the_config_the_script_runs_with(capsys, argv):
    printed = yaml.safe_load(_printed(capsys, argv + ["--print_config"]))
    assert printed == experiment_config(PHASE1_DIR, argv).to_dict()


def test_help_shows_the_resolved_defaults_and_keeps_line_breaks(capsys):
    sample = _printed(capsys, ["--help"])
    flat = " ".join(sample.split())
    assert "--model.name NAME" in sample and "(type: str, default: resnet18)" in flat  # sample.yaml, not resnet50
    assert "Training crop side in pixels (RandomResizedCrop output). (type: int, default: 64)" in flat
    epochs = yaml.safe_load((PHASE1_DIR / "sample.yaml").read_text())["training"]["epochs"]
    assert f"Number of training epochs. (type: int, default: {epochs})" in flat
    assert f"default: {PHASE1_DIR}" in flat  # --logging.output_dir: the script's own folder
    usage = [line.strip() for line in sample.splitlines() if line.strip().startswith("python experiments/")]
    assert len(usage) == 3 and usage[1].startswith("python experiments/phase1_subset_20pct/train.py --data.root "
                                                    "/data/ILSVRC2012  # the real")  # the usage lines stay lines
    assert "config.yaml < sample.yaml < the flags given" in flat

    real = " ".join(_printed(capsys, ["--data.root", "/data/ILSVRC2012", "--training.epochs", "7", "--help"]).split())
    assert "(type: str, default: resnet50)" in real and "(type: int, default: 128)" in real  # config.yaml
    assert "Number of training epochs. (type: int, default: 7)" in real  # the flag given


def test_unavailable_device_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    import torch

    from core.cli import EXIT_BAD_INPUT, experiment_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = experiment_main(str(PHASE1_DIR / "train.py"), ["--training.device", "cuda", "--logging.output_dir",
                                                          str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT
    assert len(err) == 1 and "--training.device cuda" in err[0] and "--training.device auto or cpu" in err[0]
