"""The AUM sweep (services.aum_sweep) and compare_aum.py, which scores a study's AUM run against its flips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from core.dynamics import DYNAMICS_FILE, TrainingDynamics
from services.aum_sweep import aum_sweep, rank_fraction
from services.label_issues import stratified_folds
from services.noise_study import study_setup
from test_noise_study import STUDY_SCRIPT


def test_rank_fraction_ranks_nan_lowest_and_averages_ties():
    np.testing.assert_allclose(rank_fraction(np.array([0.5, np.nan, 2.0, 0.5])), [2.5 / 4, 1 / 4, 1.0, 2.5 / 4])


def test_aum_sweep_scores_each_window_threshold_count_and_rank_average():
    mask = np.array([True, True, False, False, False, False])
    margin = np.array([[-1.0, -2.0, 1.0, 2.0, 0.5, 3.0],     # epoch 1: the flips below 0, the rest above
                       [2.0, 1.0, 1.0, -2.0, 0.5, np.nan]])  # epoch 2: the flips memorised, a clean sample lost
    kfold = np.array([0.9, 0.2, 0.1, 0.8, 0.3, 0.0])         # wrongness: flip 1 found, flip 2 not
    rows = {r["rule"]: r for r in aum_sweep(margin, mask, [(0, 0), (1, 1)], count=2, others={"kfold": kfold})}
    early = rows["AUM epochs 1-1 < 0"]
    assert (early["num_flagged"], early["precision"], early["recall"]) == (2, 1.0, 1.0)
    assert early["average_precision"] == 1.0 and early["curve_meets_targets"] is True
    late = rows["AUM epochs 2-2 < 0"]  # only the clean sample whose margin fell; NaN is never flagged
    assert (late["num_flagged"], late["precision"], late["recall"]) == (1, 0.0, 0.0)
    assert rows["AUM epochs 2-2 (lowest 2)"]["precision"] == 0.0  # sample 3 and sample 4 (0.5) rank lowest
    assert np.isnan(rows["AUM epochs 1-1 (lowest 2)"]["average_precision"])  # the curve is on the threshold row
    assert rows["kfold (lowest 2)"]["precision"] == 0.5  # samples 0 and 3
    mixed = rows["mean rank of AUM epochs 1-1 and kfold (lowest 2)"]
    assert mixed["precision"] == 1.0 and 0 < mixed["average_precision"] <= 1
    with pytest.raises(ValueError, match="windows"):
        aum_sweep(margin, mask, [(0, 2)])
    with pytest.raises(ValueError, match="count 7"):
        aum_sweep(margin, mask, [(0, 1)], count=7)
    with pytest.raises(ValueError, match="must be \\(E, N\\)"):
        aum_sweep(margin[:, :5], mask, [(0, 1)])


def standin_kfold_detection(det: Path, base, noisy_labels: np.ndarray, cl) -> None:
    """A finished K-fold detection folder ``det`` (fold_k/pred_probs.npy and scored_ids.npy) whose out-of-sample
    probabilities put 0.9 on each sample's true class: it sees every flip."""
    n = base.train_ids.size
    fold_of = stratified_folds(noisy_labels, cl.folds, cl.fold_seed)
    probs = np.full((n, base.num_classes), 0.1 / (base.num_classes - 1), dtype=np.float32)
    probs[np.arange(n), base.train_labels] = 0.9
    for k in range(cl.folds):
        (det / f"fold_{k}").mkdir(parents=True)
        np.save(det / f"fold_{k}" / "pred_probs.npy", probs[fold_of == k])
        np.save(det / f"fold_{k}" / "scored_ids.npy", base.train_ids[fold_of == k])


def test_compare_aum_checks_the_run_against_the_study_labels_and_scores_it(tmp_path):
    from experiments.label_noise_study import compare_aum

    flags = ["--logging.output_dir", str(tmp_path / "study")]
    setup = study_setup(STUDY_SCRIPT.parent, flags, "", 0.2)
    cl, base, noisy = setup.cl, setup.data, setup.noisy
    n, flips = base.train_ids.size, noisy.noise_mask
    rec = TrainingDynamics(n, 2, torch.device("cpu"))  # a stand-in record: epoch 1 separates the flips
    rec.margin[0] = torch.from_numpy(np.where(flips, -1.0, 1.0).astype(np.float32))
    rec.margin[1] = torch.from_numpy(np.where(flips, 1.0, -1.0).astype(np.float32))  # memorised: mean 0
    run = tmp_path / "aum_run"
    rec.save(run / "logs" / DYNAMICS_FILE, base.train_ids, noisy.labels, epochs_done=2)
    standin_kfold_detection(tmp_path / "det", base, noisy.labels, cl)
    out = tmp_path / "out"
    args = [*flags, "--aum_run", str(run), "--windows", "1-1", "1-2", "--kfold", str(tmp_path / "det"),
            "--out", str(out)]
    assert compare_aum.run(args) == 0
    rows = {r["rule"]: r for r in csv.DictReader(open(out / "compare_aum.csv"))}
    assert float(rows["AUM epochs 1-1 < 0"]["precision"]) == float(rows["AUM epochs 1-1 < 0"]["recall"]) == 1.0
    assert int(rows["AUM epochs 1-1 < 0"]["num_flagged"]) == int(flips.sum())
    assert float(rows["AUM epochs 1-2 < 0"]["recall"]) == 0.0  # mean margin 0: not below the threshold
    assert f"{cl.folds}-fold self-confidence (lowest {int(flips.sum())})" in rows  # cleanlab counts every flip
    assert f"AUM of {run} at 0.2 noise: {n} samples, {int(flips.sum())} flipped" in (out / "compare_aum.md").read_text()
    with pytest.raises(ValueError, match="trained on other samples or labels"):
        compare_aum.run([*flags, "--noise_rate", "0.4", "--aum_run", str(run), "--out", str(out)])
    with pytest.raises(SystemExit):
        compare_aum.run([*flags, "--aum_run", str(run), "--windows", "3-1", "--out", str(out)])
