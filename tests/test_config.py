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
                         training=TrainingConfig(grad_accum_steps=0, label_smoothing=1.5))
    msg = str(e.value)
    for flag in ("--data.fraction", "--model.name", "--training.grad_accum_steps", "--training.label_smoothing"):
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
