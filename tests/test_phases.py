"""Phases 2 and 3, staged training, label-mapping repair and the LR finder hook, as real (short) runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT, run_script, run_script_in_process, tiny_config
from core.checkpoint import atomic_torch_save, load_checkpoint
from core.cli import build_trainer, experiment_config, with_default_init
from core.data.manager import ImageNetDataManager
from core.trainer import ImageNetTrainer

EXPERIMENTS = PROJECT_ROOT / "experiments"
SHORT = ["--data.fraction", "0.25", "--data.val_fraction", "0.5", "--data.num_workers", "0",
         "--logging.progress_bar", "false"]


@pytest.fixture(scope="module")
def phase1_best(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("phase1")
    ImageNetTrainer(tiny_config(tmp, training={"epochs": 1})).fit()
    return tmp / "run" / "models" / "best.pt"


@pytest.mark.parametrize("phase", ["phase2_finetune", "phase3_full_training"])
def test_phase_configs_hold_the_real_recipe(phase):
    cfg = experiment_config(EXPERIMENTS / phase, ["--data.root", "/data/ILSVRC2012"])
    assert cfg.model.name == "resnet50" and cfg.training.save_every_epochs == 5 and cfg.training.keep_best_k == 3
    if phase == "phase2_finetune":
        assert cfg.data.progressive_resizing and cfg.data.image_size == 224 and cfg.data.auto_augment != "none"
    else:
        assert cfg.data.fraction == 1.0 and cfg.training.ema_decay > 0 and cfg.training.label_smoothing > 0
        assert cfg.training.grad_clip_norm > 0 and cfg.training.effective_batch_size >= 1024
    sample = experiment_config(EXPERIMENTS / phase, [])
    assert sample.data.root is None and sample.model.name == "resnet18"  # chains from phase 1's sample run


def test_chaining_uses_the_previous_best_only_when_present(tmp_path, caplog):
    cfg = tiny_config(tmp_path)
    present = tmp_path / "best.pt"
    present.write_bytes(b"x")
    assert with_default_init(cfg, present, "phase 1").training.init_from == present
    with caplog.at_level(logging.WARNING):
        assert with_default_init(cfg, tmp_path / "missing.pt", "phase 1").training.init_from is None
    assert "training from scratch" in caplog.text


def test_phase2_then_phase3_chain(tmp_path, phase1_best):
    p2 = run_script(EXPERIMENTS / "phase2_finetune" / "train.py",
                    SHORT + ["--training.init_from", str(phase1_best), "--training.epochs", "2",
                             "--logging.output_dir", str(tmp_path / "p2")])
    assert p2.returncode == 0, p2.stderr[-3000:]
    assert "initial weights from" in p2.stderr
    m2 = [json.loads(x) for x in (tmp_path / "p2" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len(m2) == 2 and "val_top1_ema" in m2[-1]
    p3 = run_script_in_process(EXPERIMENTS / "phase3_full_training" / "train.py",
                               SHORT + ["--training.init_from", str(tmp_path / "p2" / "models" / "best.pt"),
                                        "--training.epochs", "1", "--logging.output_dir", str(tmp_path / "p3")])
    assert p3.returncode == 0, p3.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "p3" / "models" / "last.pt")
    assert ckpt["config"]["training"]["grad_accum_steps"] == 4 and "model_ema" in ckpt


def test_progressive_stages_reuse_the_backbone(tmp_path):
    proc = run_script(EXPERIMENTS / "progressive_stages" / "run.py",
                      ["--logging.output_dir", str(tmp_path), "--training.epochs", "1"] + SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = load_checkpoint(tmp_path / "sample_96px" / "models" / "best.pt")
    second = load_checkpoint(tmp_path / "sample_48px" / "models" / "last.pt")
    assert "classifier re-initialised" in proc.stderr
    assert second["config"]["training"]["init_from"].endswith("sample_96px/models/best.pt")
    assert second["config"]["data"]["image_size"] == 48
    # the second stage started from the first stage's weights, not from a random initialisation
    w1, w2 = first["model"]["conv1.weight"], second["model"]["conv1.weight"]
    assert (w1 - w2).norm() < 0.5 * w1.norm()


def test_label_mapping_repair(tmp_path, phase1_best):
    broken = load_checkpoint(phase1_best)
    broken["classes"] = list(reversed(broken["classes"]))  # a wrong mapping
    broken.pop("class_names")
    atomic_torch_save(broken, tmp_path / "broken.pt")
    proc = run_script(EXPERIMENTS / "label_mapping_repair" / "repair.py",
                      ["--checkpoint", str(tmp_path / "broken.pt"), "--training.epochs", "1",
                       "--logging.output_dir", str(tmp_path / "repair")] + SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fixed = load_checkpoint(tmp_path / "repair" / "models" / "last.pt")
    assert fixed["classes"] == sorted(broken["classes"]) and fixed["class_names"][0].startswith("tench")
    for k, v in broken["model"].items():
        same = torch.equal(v, fixed["model"][k])
        assert same != k.startswith("fc."), k  # backbone untouched, classifier retrained
    missing = run_script_in_process(EXPERIMENTS / "label_mapping_repair" / "repair.py", [])
    assert missing.returncode == 2 and "--checkpoint" in missing.stderr


def test_lr_finder_before_a_fresh_run(tmp_path, phase1_best, monkeypatch):
    cfg = tiny_config(tmp_path, training={"epochs": 1, "init_from": phase1_best, "lr_finder": True, "lr": 1.0,
                                          "lr_finder_steps": 30})
    built = []
    init = ImageNetDataManager.__init__
    monkeypatch.setattr(ImageNetDataManager, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    trainer = build_trainer(cfg)  # the entry points' set-up: the sweep first, then the trainer
    assert len(built) == 1  # one data manager (one file index) serves the sweep and the run
    start = load_checkpoint(phase1_best)["model"]
    for k, v in trainer.unwrapped_model().state_dict().items():  # the sweep left the loaded weights alone
        assert torch.equal(v, start[k]), k
    suggested = float((tmp_path / "run" / "logs" / "lr_finder" / "optimal_lr.txt").read_text().split()[0])
    assert trainer.cfg.training.lr == pytest.approx(suggested) and suggested != 1.0
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(suggested)
