"""cleanlab's Datalab scored against known flips (services.datalab_sweep) and compare_datalab.py."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.model import build_model
from services.datalab_sweep import datalab_sweep, embeddings
from services.label_issues import find_label_issues
from services.noise_study import study_setup
from test_aum_sweep import standin_kfold_detection
from test_noise_study import STUDY_SCRIPT


def clustered_case(n=1500, num_classes=5, rate=0.2, seed=0):
    """Features in one tight cluster per true class, 20 far-away atypical clean samples, symmetric flips, and
    out-of-sample probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, num_classes, n)
    features = rng.normal(0, 4, (num_classes, 16))[true] + rng.normal(0, 1, (n, 16))
    flips = rng.random(n) < rate
    given = np.where(flips, (true + rng.integers(1, num_classes, n)) % num_classes, true)
    atypical = np.flatnonzero(~flips)[:20]
    features[atypical] += 40 * rng.normal(0, 1, (20, 16))
    probs = np.full((n, num_classes), 0.05)
    probs[np.arange(n), true] = 0.8
    return given, flips, probs / probs.sum(1, keepdims=True), features.astype(np.float32), atypical


def test_datalab_sweep_scores_label_issues_with_and_without_features_against_the_truth():
    given, flips, probs, features, atypical = clustered_case()
    rows, notes = datalab_sweep(given, flips, probs, features)
    by = {r["rule"]: r for r in rows}
    first = by["Datalab label issues (pred_probs, features beside)"]
    # with pred_probs, Datalab's label issues are confident learning's: the features do not change them
    assert notes["same_as_prune_by_noise_rate"]
    assert first["num_flagged"] == int(find_label_issues(given, probs, "prune_by_noise_rate").sum())
    assert first["precision"] > 0.95 and first["recall"] > 0.95 and first["curve_meets_targets"]
    knn = by["Datalab label issues from the features alone (kNN, k = 10)"]
    assert knn["precision"] > 0.9 and knn["recall"] > 0.8  # one cluster per class: the neighbours know the class
    assert notes["outliers"] >= 15  # the far-away samples are Datalab's outliers
    assert by["the same without Datalab's outliers"]["num_flagged"] <= first["num_flagged"]
    assert np.isnan(by["the same without Datalab's outliers"]["average_precision"])
    assert by[f"mean rank of both label scores (lowest {first['num_flagged']})"]["num_flagged"] == first["num_flagged"]
    with pytest.raises(ValueError, match="must be"):
        datalab_sweep(given, flips, probs, features[:-1])


def test_embeddings_are_the_pooled_layer4_features_in_loader_order():
    model = build_model("resnet18", num_classes=3).eval()
    x = torch.randn(5, 3, 64, 64)
    feats = embeddings(model, DataLoader(TensorDataset(x, torch.zeros(5)), batch_size=2), torch.device("cpu"))
    assert feats.shape == (5, 512)
    with torch.no_grad():
        # the classifier's input: fc(features) is the model's output
        np.testing.assert_allclose(model.fc(torch.from_numpy(feats)).numpy(), model(x).numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_compare_datalab_scores_the_study_labels_with_cached_features(tmp_path):
    from experiments.label_noise_study import compare_datalab

    flags = ["--logging.output_dir", str(tmp_path / "study")]
    setup = study_setup(STUDY_SCRIPT.parent, flags, "", 0.2)
    cl, base, noisy = setup.cl, setup.data, setup.noisy
    n = base.train_ids.size
    standin_kfold_detection(tmp_path / "det", base, noisy.labels, cl)
    out, ckpt = tmp_path / "out", tmp_path / "no_model.pt"  # the cache holds these samples: no model is loaded
    out.mkdir()
    features = np.eye(base.num_classes, dtype=np.float32)[base.train_labels] * 10
    np.savez(out / "features.npz", features=features, sample_ids=base.train_ids, checkpoint=str(ckpt))
    args = [*flags, "--kfold", str(tmp_path / "det"), "--checkpoint", str(ckpt), "--k", "5", "--out", str(out)]
    assert compare_datalab.run(args) == 0
    rows = {r["rule"]: r for r in csv.DictReader(open(out / "compare_datalab.csv"))}
    first = rows["Datalab label issues (pred_probs, features beside)"]
    assert float(first["precision"]) == 1.0 and int(first["num_flagged"]) == int(noisy.noise_mask.sum())
    assert float(rows["Datalab label issues from the features alone (kNN, k = 5)"]["recall"]) > 0.8
    text = (out / "compare_datalab.md").read_text()
    assert f"Datalab at 0.2 noise: {n} samples, {int(noisy.noise_mask.sum())} flipped" in text
    assert "prune_by_noise_rate flags: yes" in text
    np.savez(out / "features.npz", features=features, sample_ids=base.train_ids[::-1], checkpoint=str(ckpt))
    with pytest.raises(FileNotFoundError, match="no_model.pt"):  # a stale cache is not used
        compare_datalab.run(args)
