"""Training dynamics (core.dynamics): per-sample margins recorded by the training pass, the Area Under the Margin,
and the record's save, load and exact resume."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

from conftest import PHASE1_SCRIPT, cli_args, run_script_in_process, tiny_config
from core.config import ExperimentConfig
from core.dynamics import DYNAMICS_FILE, TrainingDynamics, area_under_margin, aum_flags, load_dynamics
from core.trainer import ImageNetTrainer


def test_margin_is_the_given_logit_minus_the_highest_other_at_each_position():
    rec = TrainingDynamics(num_samples=5, epochs=2, device=torch.device("cpu"))
    logits = torch.tensor([[3.0, 1.0, 0.5],    # given 0: 3 - 1 = 2, closest other class 1
                           [0.0, 2.0, 5.0],    # given 1: 2 - 5 = -3, other 2
                           [4.0, 4.5, -1.0]])  # given 2: -1 - 4.5 = -5.5, other 1
    rec.add(1, torch.tensor([4, 0, 2]), logits, torch.tensor([0, 1, 2]))
    np.testing.assert_allclose(rec.margin[1].numpy(), [-3.0, np.nan, -5.5, np.nan, 2.0])
    assert rec.other[1].tolist() == [2, -1, 1, -1, 1]
    assert torch.isnan(rec.margin[0]).all() and (rec.other[0] == -1).all()  # epoch 0 untouched
    rec.add(1, torch.tensor([4]), logits[:1] * 2, torch.tensor([0]))  # a replayed position is set, not summed
    assert rec.margin[1, 4].item() == 4.0


def test_area_under_margin_averages_the_epochs_each_sample_was_seen_in_a_window():
    margin = np.array([[1.0, -2.0, np.nan],
                       [3.0, np.nan, np.nan],
                       [5.0, 4.0, np.nan]], dtype=np.float32)  # (E=3, N=3)
    np.testing.assert_allclose(area_under_margin(margin), [3.0, 1.0, np.nan])
    np.testing.assert_allclose(area_under_margin(margin, 0, 1), [2.0, -2.0, np.nan])  # epochs 0-1 inclusive
    np.testing.assert_allclose(area_under_margin(margin, first_epoch=2), [5.0, 4.0, np.nan])


def test_the_record_saves_atomically_and_loads_only_for_the_same_samples_and_schedule(tmp_path):
    ids = np.array([10, 11, 12, 13])
    rec = TrainingDynamics(4, 3, torch.device("cpu"))
    rec.add(0, torch.tensor([2, 0]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
    path = rec.save(tmp_path / DYNAMICS_FILE, ids, np.array([0, 1, 0, 1]), epochs_done=0)
    saved = load_dynamics(path)
    assert set(saved) == {"margin", "other", "sample_ids", "labels", "epochs_done"}
    assert saved["margin"].shape == (3, 4) and saved["margin"][0, 2] == 1.0 and saved["margin"][0, 0] == -2.0
    assert not list(tmp_path.glob("*.tmp*"))
    again = TrainingDynamics(4, 3, torch.device("cpu"))
    assert again.load(path, ids) and torch.equal(again.other, rec.other)
    np.testing.assert_array_equal(again.margin.numpy(), rec.margin.numpy())
    for other in (TrainingDynamics(4, 3, torch.device("cpu")), TrainingDynamics(4, 5, torch.device("cpu"))):
        sample_ids = ids[::-1] if other.margin.shape[0] == 3 else ids  # other samples, or another schedule
        assert not other.load(path, sample_ids) and torch.isnan(other.margin).all()
    assert not again.load(tmp_path / "missing.npz", ids)
    with pytest.raises(FileNotFoundError, match="--training.record_dynamics true"):
        load_dynamics(tmp_path / "missing.npz")


def test_a_recorded_run_holds_every_trained_sample_once_per_epoch(tmp_path):
    cfg = tiny_config(tmp_path, training={"epochs": 2, "record_dynamics": True, "batch_size": 16})
    trainer = ImageNetTrainer(cfg)
    trainer.fit()
    rec = load_dynamics(tmp_path / "run" / "logs" / DYNAMICS_FILE)
    n = len(trainer.data.train_ids)
    assert rec["margin"].shape == rec["other"].shape == (2, n) and int(rec["epochs_done"]) == 2
    np.testing.assert_array_equal(rec["sample_ids"], trainer.data.train_ids)
    np.testing.assert_array_equal(rec["labels"], trainer.data.train_labels)
    records = [json.loads(line) for line in (tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()]
    for epoch in range(2):
        trainer.sampler.set_epoch(epoch)
        trained = np.zeros(n, dtype=bool)
        trained[trainer.sampler.positions()] = True  # drop_last leaves < one batch out
        assert 0 < (~trained).sum() < cfg.training.batch_size
        seen = ~np.isnan(rec["margin"][epoch])
        np.testing.assert_array_equal(seen, trained)
        other = rec["other"][epoch]
        assert ((other >= 0) == seen).all() and (other[seen] != rec["labels"][seen]).all()
        # a positive margin is a correct training prediction: the record agrees with the epoch's train top-1
        correct = (rec["margin"][epoch][seen] > 0).sum()
        assert 100.0 * correct / seen.sum() == pytest.approx(records[epoch]["train_top1"])
    assert "record_dynamics" not in cfg.result_settings()["training"]  # recording changes nothing trained


def test_recording_dynamics_refuses_mixed_batches(tmp_path):
    d = tiny_config(tmp_path, training={"record_dynamics": True}).to_dict()
    d["training"]["mixup_alpha"] = 0.2
    with pytest.raises(ValueError, match="training.record_dynamics"):
        ExperimentConfig.from_dict(d)


def test_sigkill_mid_epoch_then_resume_records_the_same_margins(tmp_path):
    def cfg(out: str) -> ExperimentConfig:
        return tiny_config(tmp_path, data={"num_workers": 0}, logging={"output_dir": tmp_path / out},
                           training={"epochs": 2, "deterministic": True, "checkpoint_every_steps": 1,
                                     "resume": "auto", "record_dynamics": True, "save_every_epochs": 0})

    ref = run_script_in_process(PHASE1_SCRIPT, cli_args(cfg("ref")))  # the killed run is a real process
    assert ref.returncode == 0, ref.stderr[-3000:]
    from test_trainer import _start, _wait_for_step

    from core.checkpoint import load_checkpoint

    args = cli_args(cfg("killed"))
    last = tmp_path / "killed" / "models" / "last.pt"
    proc = _start(args)
    _wait_for_step(last, proc, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(last)
    partial = load_dynamics(tmp_path / "killed" / "logs" / DYNAMICS_FILE)
    assert 0 < (~np.isnan(partial["margin"])).sum() < partial["margin"].size  # killed with part of the record
    done = run_script_in_process(PHASE1_SCRIPT, args)
    assert done.returncode == 0 and "resumed from" in done.stderr, done.stderr[-3000:]
    assert saved["global_step"] >= 3
    a = load_dynamics(tmp_path / "ref" / "logs" / DYNAMICS_FILE)
    b = load_dynamics(tmp_path / "killed" / "logs" / DYNAMICS_FILE)
    np.testing.assert_array_equal(a["margin"], b["margin"])
    np.testing.assert_array_equal(a["other"], b["other"])


def test_aum_count_cut_counts_only_the_scored_samples_and_never_flags_an_unscored_one():
    aum = np.array([0.5, np.nan, -2.0, 1.5, np.nan, -0.5, 3.0, 0.0, np.nan, 2.0, -1.0, 0.7])  # 9 scored of 12
    cut = aum_flags(aum, fraction=0.34)  # round(0.34 x 9) = 3
    np.testing.assert_array_equal(np.flatnonzero(cut), [2, 5, 10])  # -2.0, -0.5, -1.0
    assert not cut[np.isnan(aum)].any()
    rule = aum_flags(aum, threshold=0.6)
    np.testing.assert_array_equal(np.flatnonzero(rule), [0, 2, 5, 7, 10])  # NaN is not below anything
    assert not aum_flags(aum, fraction=0.01).any()  # rounds to none
