"""Trainer: the step (AMP path, accumulation), schedules, checkpoints, resume, signals and the NaN guard."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import PHASE1_SCRIPT, cli_args, run_script_in_process, tiny_config
from core.checkpoint import CheckpointMismatchError, load_checkpoint
from core.preprocessing import preprocessing_of_checkpoint
from core.config import TrainingConfig
from core.model import build_model
from core.schedules import lr_at
from core.step import build_optimizer, forward_backward, optimizer_step
from core.trainer import ImageNetTrainer, NonFiniteLossError


# --- the step ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_gradient_accumulation_matches_one_large_batch(amp_dtype):
    torch.manual_seed(0)
    model_big = build_model("resnet18", num_classes=10).eval()  # eval-mode BN: no batch statistics
    model_acc = copy.deepcopy(model_big)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    cfg = TrainingConfig(lr=0.1, weight_decay=1e-4, nesterov=True)
    opt_big, opt_acc = build_optimizer(model_big, cfg), build_optimizer(model_acc, cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    forward_backward(model_big, x, y, crit, amp_dtype, scaler, grad_accum_steps=1)
    for i in range(4):  # k=4 micro-batches of b=2
        forward_backward(model_acc, x[2 * i:2 * i + 2], y[2 * i:2 * i + 2], crit, amp_dtype, scaler, 4)
    tol = 1e-5 if amp_dtype is None else 2e-2
    for (name, a), b in zip(model_big.named_parameters(), model_acc.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=tol, rtol=tol), name
    optimizer_step(opt_big, scaler, model_big, grad_clip_norm=1.0)
    optimizer_step(opt_acc, scaler, model_acc, grad_clip_norm=1.0)
    for a, b in zip(model_big.parameters(), model_acc.parameters()):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
        assert a.grad is None and b.grad is None  # cleared after the step


def test_no_weight_decay_on_batchnorm_and_bias():
    model = build_model("resnet18", num_classes=10)
    opt = build_optimizer(model, TrainingConfig(weight_decay=5e-5))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-5 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert any(p is model.fc.bias for p in no_decay["params"]) and any(p is model.bn1.weight for p in no_decay["params"])


def test_lr_schedules():
    cfg = TrainingConfig(epochs=10, lr=0.4, warmup_epochs=2, min_lr=0.004, scheduler="cosine")
    spe = 100
    assert lr_at(0, cfg, spe) == pytest.approx(0.4 / 200)
    assert lr_at(199, cfg, spe) == pytest.approx(0.4)  # end of warmup = peak
    mid = lr_at(200 + 400, cfg, spe)
    assert mid == pytest.approx(0.004 + 0.5 * (0.4 - 0.004))  # halfway through the cosine
    assert lr_at(999, cfg, spe) == pytest.approx(0.004, abs=1e-4)
    lrs = [lr_at(s, cfg, spe) for s in range(200, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    step = dataclasses.replace(cfg, scheduler="step", step_epochs=3, step_gamma=0.1, warmup_epochs=0)
    assert [lr_at(s * spe, step, spe) for s in (0, 2, 3, 6, 9)] == pytest.approx([0.4, 0.4, 0.04, 0.004, 0.0004])
    linear = dataclasses.replace(cfg, scheduler="linear", min_lr=0.0)  # FFCV's triangular schedule
    assert lr_at(199, linear, spe) == pytest.approx(0.4)
    assert lr_at(600, linear, spe) == pytest.approx(0.2)  # half-way down
    assert lr_at(1000, linear, spe) == pytest.approx(0.0)
    lrs = [lr_at(s, linear, spe) for s in range(200, 1000)]
    assert np.allclose(np.diff(lrs), -0.4 / 800)  # a straight line to zero


# --- training runs in-process -----------------------------------------------------------------------------------

def test_short_run_writes_everything_and_checkpoint_loads_weights_only(tmp_path):
    cfg = tiny_config(tmp_path, training={"epochs": 3, "save_every_epochs": 1, "keep_best_k": 2})
    result = ImageNetTrainer(cfg).fit()
    logs, models = tmp_path / "run" / "logs", tmp_path / "run" / "models"
    for name in ("train.log", "metrics.jsonl", "config.yaml", "run_info.json", "curves.png", "summary.json",
                 "class_distribution.csv"):
        assert (logs / name).stat().st_size > 0, name
    lines = (logs / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert result["epochs_completed"] == 3 and 0 <= result["best_top1"] <= 100
    kept = sorted(p.name for p in models.glob("epoch_*.pt"))
    assert len(kept) == 2  # best 2 of 3 kept
    ckpt = torch.load(models / "last.pt", map_location="cpu", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "step_in_epoch", "global_step", "best_top1",
                "config", "classes", "class_names", "class_to_idx", "rng"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 3 and ckpt["step_in_epoch"] == 0 and ckpt["classes"][0] == "n01440764"
    assert ckpt["class_names"][0].startswith("tench") and ckpt["config"]["model"]["name"] == "resnet18"
    spec = preprocessing_of_checkpoint(ckpt)  # read from the checkpoint's own pretrained_cfg entry
    assert ckpt["pretrained_cfg"] == spec.to_dict() and spec.input_size == ckpt["config"]["data"]["val_image_size"]
    best = load_checkpoint(models / "best.pt")
    assert best["best_top1"] == pytest.approx(result["best_top1"])
    assert not list(models.glob("*.tmp"))


def test_resume_refuses_another_architecture_or_class_list(tmp_path, sample_copy):
    ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1})).fit()
    with pytest.raises(CheckpointMismatchError, match="resnet34"):
        ImageNetTrainer(tiny_config(tmp_path, model={"name": "resnet34"}, training={"epochs": 2, "resume": "auto"}))
    import shutil
    for split in ("train", "val"):
        shutil.rmtree(sample_copy / split / "n03888257")
    with pytest.raises(CheckpointMismatchError, match="another class list"):
        ImageNetTrainer(tiny_config(tmp_path, root=sample_copy, training={"epochs": 2, "resume": "auto"}))


def test_resume_refuses_a_checkpoint_made_on_other_labels_or_soft_targets(tmp_path):
    from core.data.manager import ImageNetDataManager
    from core.label_noise import labels_digest
    from core.soft_targets import SoftTargets

    cfg = tiny_config(tmp_path, training={"epochs": 1})
    ImageNetTrainer(cfg).fit()
    resume = tiny_config(tmp_path, training={"epochs": 2, "resume": "auto"})
    data = ImageNetDataManager(resume.data, seed=resume.training.seed, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "models" / "last.pt")
    assert ckpt["train_labels_digest"] == labels_digest(data.train_ids, data.train_labels)
    assert ImageNetTrainer(resume, data=data).resumed_from is not None  # the same labels resume
    given = data.train_labels.copy()
    flipped = given.copy()
    flipped[0] = (flipped[0] + 1) % data.num_classes  # one label of the training set changed
    data.set_train_labels(flipped)
    with pytest.raises(CheckpointMismatchError, match=r"trained on other labels \(digest [0-9a-f]{12}, this run's"
                                                     r".*delete .*models to train this run afresh"):
        ImageNetTrainer(resume, data=data)
    elsewhere = tiny_config(tmp_path / "b", training={"epochs": 2, "resume": str(tmp_path / "run/models/last.pt")})
    with pytest.raises(CheckpointMismatchError, match="or drop --training.resume$"):  # another run's: not deleted
        ImageNetTrainer(elsewhere, data=data)
    evaluator = ImageNetTrainer(tiny_config(tmp_path / "c", training={"epochs": 2}), data=data)
    evaluator.load_checkpoint(tmp_path / "run/models/last.pt", check_labels=False)  # weights for evaluation
    assert evaluator.resumed_from is not None
    data.set_train_labels(given)
    rows = np.full(len(data.train_ids), -1)
    rows[0] = 0
    data.set_train_soft_targets(SoftTargets(rows, np.full((1, data.num_classes), 1 / data.num_classes, np.float32)))
    with pytest.raises(CheckpointMismatchError, match="soft targets changed since"):
        ImageNetTrainer(resume, data=data)
    del ckpt["train_labels_digest"]  # a checkpoint written before the entry existed resumes as before
    torch.save(ckpt, tmp_path / "run" / "models" / "last.pt")
    data.set_train_labels(given)
    assert ImageNetTrainer(resume, data=data).resumed_from is not None


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 3}))
    real = trainer.criterion
    calls = {"n": 0}
    micro_per_epoch = trainer.sampler.micro_batches_per_epoch

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] > micro_per_epoch + 1 else loss

    trainer.criterion = poisoned
    with pytest.raises(NonFiniteLossError, match="NaN or Inf"):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "run" / "models" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step_in_epoch"] == 0  # the end of the last good epoch
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_early_stopping(tmp_path):
    trainer = ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 6, "early_stopping_patience": 2}))
    scores = iter([50.0, 40.0, 45.0, 60.0, 10.0, 10.0])
    trainer.evaluate = lambda *a, **k: {"val_loss": 1.0, "val_top1": next(scores), "val_top5": 90.0}
    result = trainer.fit()
    assert result["stopped_early"] and result["epochs_completed"] == 3 and result["best_epoch"] == 1


def test_finished_run_resumes_as_complete(tmp_path):
    ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1})).fit()
    summary = (tmp_path / "run" / "logs" / "summary.json").read_text()
    result = ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1, "resume": "auto"})).fit()
    assert result["epochs_completed"] == 1 and result["resumed_from"].endswith("last.pt")
    assert len((tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()) == 1
    # reopening a finished run (to score it) trains nothing and keeps its summary: final metrics, wall time
    assert (tmp_path / "run" / "logs" / "summary.json").read_text() == summary
    assert json.loads(summary)["final"]["val_top1"] >= 0
    assert result["run_time_s"] == json.loads(summary)["run_time_s"] > 0  # its stored time, not 0 nor a new count


def test_a_checkpoint_older_than_run_time_reports_it_unknown_not_zero(tmp_path):
    ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1})).fit()
    last = tmp_path / "run" / "models" / "last.pt"
    ckpt = load_checkpoint(last)
    del ckpt["train_state"]["run_time_s"]  # as written before the field existed
    torch.save(ckpt, last)
    result = ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 2, "resume": "auto"})).fit()
    assert result["epochs_completed"] == 2 and result["run_time_s"] is None
    assert json.loads((tmp_path / "run" / "logs" / "summary.json").read_text())["run_time_s"] is None


# --- interruption: real subprocesses ----------------------------------------------------------------------------

def _resume_cfg(tmp_path: Path, out: str):
    # every source of randomness on: augmentation policies, batch mixing, EMA and a resolution schedule
    return tiny_config(tmp_path, data={"num_workers": 1, "persistent_workers": True, "auto_augment": "trivialaugment",
                                       "random_erasing": 0.25, "progressive_resizing": True, "start_image_size": 32,
                                       "image_size": 64, "ramp_start_epoch": 0, "ramp_end_epoch": 1},
                       training={"epochs": 2, "deterministic": True, "checkpoint_every_steps": 1,
                                 "resume": "auto", "log_every_steps": 1, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
                                 "ema_decay": 0.9},
                       logging={"output_dir": tmp_path / out})


def _start(args: list[str]) -> subprocess.Popen:
    # this interpreter's thread count: the in-process reference runs compute with it, bit for bit the same
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, str(PHASE1_SCRIPT), *args], cwd="/", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_step(ckpt: Path, proc: subprocess.Popen, min_step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended before step {min_step}:\n{proc.stdout.read()}")
        if ckpt.is_file():
            try:
                if load_checkpoint(ckpt)["global_step"] >= min_step:
                    return
            except ValueError:
                pass
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared in time")


def test_sigkill_anywhere_then_resume_is_bitwise_identical(tmp_path):
    # the uninterrupted reference and the final resume run in this interpreter; the runs killed are real processes
    ref = run_script_in_process(PHASE1_SCRIPT, cli_args(_resume_cfg(tmp_path, "ref")))
    assert ref.returncode == 0, ref.stderr[-3000:]
    args = cli_args(_resume_cfg(tmp_path, "killed"))
    last = tmp_path / "killed" / "models" / "last.pt"
    kill_points = []
    for min_step in (2, 9):  # once early in epoch 1, once later (epoch 2 when an epoch has < 9 steps)
        proc = _start(args)
        _wait_for_step(last, proc, min_step)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = load_checkpoint(last)
        kill_points.append((saved["epoch"], saved["step_in_epoch"]))
    assert any(step > 0 for _, step in kill_points), kill_points  # at least one mid-epoch resume
    done = run_script_in_process(PHASE1_SCRIPT, args)
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_checkpoint(tmp_path / "ref" / "models" / "last.pt")
    b = load_checkpoint(last)
    assert a["global_step"] == b["global_step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
        assert torch.equal(a["model_ema"][key], b["model_ema"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    ref_lines = (tmp_path / "ref" / "logs" / "metrics.jsonl").read_text().splitlines()
    got_lines = (tmp_path / "killed" / "logs" / "metrics.jsonl").read_text().splitlines()
    assert len(ref_lines) == len(got_lines) == 2


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    cfg = _resume_cfg(tmp_path, "spot")
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, checkpoint_every_steps=0))
    proc = _start(cli_args(cfg))
    log_file = tmp_path / "spot" / "logs" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and "optimizer steps per epoch" not in (log_file.read_text() if log_file.is_file() else ""):
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "received SIGTERM" in out and "--training.resume auto" in out
    saved = load_checkpoint(tmp_path / "spot" / "models" / "last.pt")
    assert saved["global_step"] >= 1
    resumed = run_script_in_process(PHASE1_SCRIPT, cli_args(cfg))
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr
    assert load_checkpoint(tmp_path / "spot" / "models" / "last.pt")["epoch"] == 2
    # run_time_s carries the first session's time on: the whole run's cost, not the resumed process's
    first = saved["train_state"]["run_time_s"]
    summary = json.loads((tmp_path / "spot" / "logs" / "summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "spot" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert 0.5 < first < records[-1]["run_time_s"] <= summary["run_time_s"]


def test_monitoring_tensorboard_wandb_and_curves(tmp_path, monkeypatch, one_torch_thread):
    """One 2-epoch run with EMA and label smoothing, TensorBoard and offline W&B on: the event files read back
    with TensorBoard's own reader, the W&B history gets the per-layer statistics and the summary the headline
    metrics only, and curves.png draws the EMA curves and names the label smoothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import core.trainer
    import utils.visualization

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logged, summaries, legends = [], [], []
    real_init, real_save = core.trainer.init_wandb, utils.visualization._save

    def spying_init(*args, **kwargs):
        run = real_init(*args, **kwargs)
        real_log, real_finish = run.log, run.finish
        run.log = lambda data, step=None: (logged.append((step, dict(data))), real_log(data, step=step))[1]
        run.finish = lambda: (summaries.append(dict(run.summary)), real_finish())[1]
        return run

    def spying_save(fig, out_path):
        legends.append([[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes])
        return real_save(fig, out_path)

    monkeypatch.setattr(core.trainer, "init_wandb", spying_init)
    monkeypatch.setattr(utils.visualization, "_save", spying_save)
    cfg = tiny_config(tmp_path, data={"fraction": 0.1, "val_fraction": 0.2},
                      training={"epochs": 2, "ema_decay": 0.9, "label_smoothing": 0.1},
                      logging={"wandb": True, "wandb_mode": "offline", "tensorboard": True})
    result = ImageNetTrainer(cfg).fit()
    logs = tmp_path / "run" / "logs"
    metrics = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]

    events = EventAccumulator(str(logs / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("top1/train", "train_top1"),
                     ("top1/val", "val_top1"), ("top5/val", "val_top5"), ("lr", "lr"),
                     ("throughput/images_per_sec", "images_per_sec"), ("loss/val_ema", "val_loss_ema"),
                     ("top1/val_ema", "val_top1_ema"), ("top5/val_ema", "val_top5_ema")):
        assert tag in tags["scalars"], (tag, tags["scalars"])
        points = events.Scalars(tag)
        assert [p.step for p in points] == [1, 2]
        assert [p.value for p in points] == pytest.approx([m[key] for m in metrics], rel=1e-5, abs=1e-6)
    n_params = len(list(build_model("resnet18", num_classes=10).named_parameters()))
    assert len([t for t in tags["histograms"] if t.startswith("weights/")]) == n_params
    assert len([t for t in tags["histograms"] if t.startswith("grads/")]) == n_params
    grads = events.Histograms("grads/fc.weight")
    assert [h.step for h in grads] == [1, 2] and grads[0].histogram_value.num == 10 * 512
    assert grads[0].histogram_value.max > grads[0].histogram_value.min  # real gradients, not zeros

    assert [step for step, _ in logged] == [1, 2]
    for _, row in logged:
        assert {"train_loss", "val_top1", "val_top1_ema", "lr"} <= set(row)
        assert row["grads/fc/weight/std"] > 0 and "weights/layer4/1/conv2/weight/mean" in row
    summary = summaries[0]
    assert summary["epochs"] == 2 and summary["best_top1"] == pytest.approx(result["best_top1"])
    assert summary["val_top1"] == pytest.approx(metrics[-1]["val_top1"])
    assert summary["val_top1_ema"] == pytest.approx(metrics[-1]["val_top1_ema"])
    assert not [k for k in summary if k.startswith(("weights/", "grads/"))]  # history only
    assert list((logs / "wandb").glob("offline-run-*/*.wandb"))

    curves = [panel for panel in legends if len(panel) == 3][-1]  # curves.png: loss, accuracy, LR
    assert curves[0][0].startswith("train (with label smoothing 0.1)")
    assert any(t.startswith("val (EMA weights)") for t in curves[0])
    assert any(t.startswith("val top-1 (EMA weights)") for t in curves[1])
    assert (logs / "curves.png").stat().st_size > 10_000


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror(tmp_path):
    cfg = tiny_config(tmp_path, training={"epochs": 1, "eval_hflip": True})
    trainer = ImageNetTrainer(cfg)
    trainer.model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, targets in trainer.val_loader:
            x = trainer.data.to_device(images, trainer.device, trainer.memory_format)
            logits = (trainer.model(x) + trainer.model(x.flip(3))) / 2
            correct += (logits.argmax(1) == targets).sum().item()
            total += targets.numel()
            plain = trainer.model(x)
    assert not torch.allclose(plain, logits)  # the mirror images change the logits
    assert trainer.evaluate()["val_top1"] == pytest.approx(100 * correct / total)
    trainer.close()


def test_channels_last_on_the_cpu_and_metrics_carry_wall_time(tmp_path):
    cfg = tiny_config(tmp_path, training={"epochs": 1})
    trainer = ImageNetTrainer(cfg)
    assert trainer.memory_format == torch.channels_last
    assert trainer.unwrapped_model().conv1.weight.is_contiguous(memory_format=torch.channels_last)
    trainer.fit()
    record = json.loads((tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()[0])
    summary = json.loads((tmp_path / "run" / "logs" / "summary.json").read_text())
    assert 0 < record["eval_time_s"] < record["wall_time_s"] <= summary["wall_time_s"]
    assert record["eval_time_s"] < record["run_time_s"] < record["wall_time_s"]  # fit() only, start-up excluded
    assert record["run_time_s"] <= summary["run_time_s"] < summary["wall_time_s"]
    off = tiny_config(tmp_path / "off", model={"channels_last": False})
    assert ImageNetTrainer(off).memory_format == torch.preserve_format


def test_atomic_writes_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    from core.atomic import atomic_write_text
    from core.checkpoint import atomic_torch_save

    old = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "a" / "summary.json", "{}")
        ckpt = atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "last.pt")
        os.umask(0o077)
        private = atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert (text.stat().st_mode & 0o777) == 0o644 and (ckpt.stat().st_mode & 0o777) == 0o644
    assert (private.stat().st_mode & 0o777) == 0o600
