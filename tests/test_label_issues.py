"""Real label-issue detection (services/label_issues.py) and the fastdup manifest wrapper's pure parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from core.config import PROJECT_ROOT, DataConfig
from core.data.manager import ImageNetDataManager
from core.label_noise import detection_metrics, inject_symmetric_noise, read_manifest
from services.fastdup_manifest import relative_to_split, removal_entries, write_manifest
from core.trainer import RunInterrupted
from services.detection_sweep import LABEL_QUALITY_SCORES, detection_sweep
from services.label_issues import (FILTER_METHODS, ConfidentLearningConfig, array_digest, detect_label_issues,
                                   find_label_issues, manifest_from_issues, out_of_sample_pred_probs, predict_proba,
                                   stratified_folds)


def test_stratified_folds_are_balanced_per_class_and_seeded():
    y = np.repeat(np.arange(5), [40, 41, 42, 3, 7])
    folds = stratified_folds(y, 4, seed=0)
    assert folds.min() == 0 and folds.max() == 3
    for c in range(5):
        counts = np.bincount(folds[y == c], minlength=4)
        assert counts.max() - counts.min() <= 1, (c, counts)
    np.testing.assert_array_equal(folds, stratified_folds(y, 4, seed=0))
    assert not np.array_equal(folds, stratified_folds(y, 4, seed=1))
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(y, 1, seed=0)


def synthetic_case(n=2000, num_classes=5, rate=0.2, seed=0):
    """Out-of-sample probabilities of a good model (80 % confident on the true class) and 20 % flipped labels."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % num_classes
    noisy = inject_symmetric_noise(truth, rate, num_classes, seed=seed)
    probs = rng.dirichlet(np.ones(num_classes), size=n) * 0.2
    probs[np.arange(n), truth] += 0.8
    return truth, noisy, probs.astype(np.float32)


def test_cleanlab_finds_injected_flips_with_good_probabilities():
    truth, noisy, probs = synthetic_case()
    issues = find_label_issues(noisy.labels, probs)
    m = detection_metrics(issues, noisy.noise_mask)
    assert m["precision"] > 0.9 and m["recall"] > 0.9, m
    with pytest.raises(ValueError, match="pred_probs"):
        find_label_issues(noisy.labels, probs[:10])


def test_detection_sweep_scores_every_rule_and_ranking_against_the_truth():
    truth, noisy, probs = synthetic_case()
    rows = detection_sweep(noisy.labels, probs, noisy.noise_mask)
    assert [r["rule"].split(" ")[0] for r in rows] == ([f"filter_by={m}" for m in FILTER_METHODS]
                                                        + [f"rank={m}" for m in LABEL_QUALITY_SCORES])
    default = detection_metrics(find_label_issues(noisy.labels, probs), noisy.noise_mask)
    assert (rows[0]["precision"], rows[0]["recall"]) == (default["precision"], default["recall"])
    # rank=self_confidence flags the n samples with the lowest probability of their given label
    sc = rows[len(FILTER_METHODS)]
    given_prob = probs[np.arange(truth.size), noisy.labels]
    flagged = np.argsort(given_prob, kind="stable")[:sc["num_flagged"]]
    assert sc["precision"] == pytest.approx(noisy.noise_mask[flagged].mean())
    assert sc["recall"] == pytest.approx(noisy.noise_mask[flagged].sum() / noisy.noise_mask.sum())
    for r in rows[len(FILTER_METHODS):]:  # good probabilities: some threshold reaches precision 0.9 and recall 0.8
        assert r["curve_meets_targets"] and r["average_precision"] > 0.9, r
    # probabilities that know nothing of the images rank flips no better than chance (20 % of the set)
    blind = np.random.default_rng(1).dirichlet(np.ones(probs.shape[1]), size=truth.size).astype(np.float32)
    for r in detection_sweep(noisy.labels, blind, noisy.noise_mask)[len(FILTER_METHODS):]:
        assert r["average_precision"] < 0.3 and not r["curve_meets_targets"], r
    with pytest.raises(ValueError, match="share M"):
        detection_sweep(noisy.labels, probs, noisy.noise_mask[:-1])
    # a count given from elsewhere cuts every ranking there too, right after that ranking's own row
    counted = detection_sweep(noisy.labels, probs, noisy.noise_mask, counts={"the truth's count": 7})
    assert len(counted) == len(rows) + len(LABEL_QUALITY_SCORES)
    extra = [r for r in counted if r["rule"].endswith(": the truth's count)")]
    assert [r["rule"].split(" ")[0] for r in extra] == [f"rank={m}" for m in LABEL_QUALITY_SCORES]
    assert counted.index(extra[0]) == len(FILTER_METHODS) + 1 and all(r["num_flagged"] == 7 for r in extra)
    assert extra[0]["precision"] == pytest.approx(noisy.noise_mask[np.argsort(given_prob, kind="stable")[:7]].mean())
    with pytest.raises(ValueError, match=r"must lie in \[0, "):
        detection_sweep(noisy.labels, probs, noisy.noise_mask, counts={"too many": truth.size + 1})


def test_manifest_relabels_confident_issues_and_removes_the_rest():
    truth, noisy, probs = synthetic_case()
    ids = np.arange(truth.size) * 3 + 1  # full-split ids differ from positions
    issues = find_label_issues(noisy.labels, probs)
    everything = manifest_from_issues(ids, noisy.labels, probs, issues, relabel_threshold=0.5)
    assert everything.num_remove + everything.num_relabel == issues.sum()
    pos = (everything.relabel_ids - 1) // 3
    assert (everything.relabel_to == truth[pos]).mean() > 0.95  # confident relabels restore the truth
    never = manifest_from_issues(ids, noisy.labels, probs, issues, relabel_threshold=1.0)
    assert never.num_relabel == 0 and never.num_remove == issues.sum()
    np.testing.assert_array_equal(never.remove, np.sort(ids[issues]))
    saturated = np.eye(probs.shape[1], dtype=np.float32)[probs.argmax(1)]  # float32 softmax can reach exactly 1
    assert manifest_from_issues(ids, noisy.labels, saturated, issues, relabel_threshold=1.0).num_relabel == 0
    assert manifest_from_issues(ids, noisy.labels, saturated, issues, relabel_threshold=0.99).num_relabel > 0


def test_confident_learning_config_is_validated():
    with pytest.raises(ValueError) as e:
        ConfidentLearningConfig(folds=1, relabel_threshold=0.0, filter_by="nope")
    for flag in ("--cl.folds", "--cl.relabel_threshold", "--cl.filter_by"):
        assert flag in str(e.value)


class _FoldStoppedAtSecond:
    """Stands in for ImageNetTrainer in the K-fold loop: a fixed linear model (seed 0); the second fold's fit()
    reports a stop signal, as SIGTERM mid-fold does."""

    fits = 0

    def __init__(self, cfg, data):
        Path(cfg.logging.output_dir).mkdir(parents=True, exist_ok=True)
        self.device, self.amp_dtype = torch.device("cpu"), None
        with torch.random.fork_rng():  # the same weights whatever ran before in this process
            torch.manual_seed(0)
            self.model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                             torch.nn.Linear(3, data.num_classes))

    def fit(self) -> dict:
        type(self).fits += 1
        return {"interrupted": type(self).fits == 2}

    def unwrapped_model(self) -> torch.nn.Module:
        return self.model


def test_a_fold_stopped_by_a_signal_is_not_scored_as_finished(tmp_path, monkeypatch):
    import core.trainer

    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _FoldStoppedAtSecond)
    data = ImageNetDataManager(DataConfig(image_size=32, val_image_size=32, num_workers=0, fraction=0.1,
                                          index_cache_dir=tmp_path / "cache"), seed=0)
    with pytest.raises(RunInterrupted, match="fold 2/3 was stopped"):
        out_of_sample_pred_probs(tiny_config(tmp_path), data, tmp_path / "cl", folds=3)
    assert (tmp_path / "cl" / "fold_0" / "pred_probs.npy").is_file()  # finished folds are kept for the rerun
    assert not (tmp_path / "cl" / "fold_1" / "pred_probs.npy").exists()  # the stopped one is not taken as done


class _FoldCounter(_FoldStoppedAtSecond):
    """The same stand-in, every fit() finishing."""

    def fit(self) -> dict:
        type(self).fits += 1
        return {"interrupted": False}


def test_saved_fold_probabilities_are_reused_only_under_the_settings_they_were_made_with(tmp_path, monkeypatch,
                                                                                           caplog):
    import core.trainer

    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _FoldCounter)
    monkeypatch.setattr(_FoldCounter, "fits", 0)
    data = ImageNetDataManager(DataConfig(image_size=32, val_image_size=32, num_workers=0, fraction=0.1,
                                          index_cache_dir=tmp_path / "cache"), seed=0)
    cfg = tiny_config(tmp_path, training={"resume": "auto"})
    first = out_of_sample_pred_probs(cfg, data, tmp_path / "cl", folds=2)
    assert _FoldCounter.fits == 2 and (tmp_path / "cl" / "fold_1" / "fold_settings.json").is_file()
    # the same settings (another output dir and worker count change nothing computed): reused, nothing trains
    same = tiny_config(tmp_path, training={"resume": "auto"}, data={"num_workers": 1},
                       logging={"output_dir": tmp_path / "elsewhere"})
    np.testing.assert_array_equal(out_of_sample_pred_probs(same, data, tmp_path / "cl", folds=2), first)
    assert _FoldCounter.fits == 2
    # another recipe, or other labels for the same samples, is refused instead of mixed in
    with pytest.raises(ValueError, match=r"fold_0 holds a fold model made with other settings "
                                         r"\(config/training/epochs: 2 -> 3\).*--logging.output_dir"):
        out_of_sample_pred_probs(tiny_config(tmp_path, training={"resume": "auto", "epochs": 3}), data,
                                 tmp_path / "cl", folds=2)
    relabelled = data.train_labels.copy()
    relabelled[0] = (relabelled[0] + 1) % data.num_classes
    with pytest.raises(ValueError, match="train_labels"):
        out_of_sample_pred_probs(cfg, data.with_train_subset(data.train_ids, relabelled), tmp_path / "cl", folds=2)
    assert _FoldCounter.fits == 2
    # probabilities saved before the settings record existed are still reused, with a warning
    (tmp_path / "cl" / "fold_0" / "fold_settings.json").unlink()
    with caplog.at_level("WARNING", logger="services.label_issues"):
        np.testing.assert_array_equal(out_of_sample_pred_probs(cfg, data, tmp_path / "cl", folds=2), first)
    assert "reusing it unchecked" in caplog.text and _FoldCounter.fits == 2
    # a fold stopped before scoring (its settings and checkpoints, no probabilities) is not resumed under others
    (tmp_path / "cl" / "fold_1" / "pred_probs.npy").unlink()
    with pytest.raises(ValueError, match="fold_1 holds a fold model made with other settings"):
        out_of_sample_pred_probs(tiny_config(tmp_path, training={"resume": "auto", "epochs": 3}), data,
                                 tmp_path / "cl", folds=2)
    assert _FoldCounter.fits == 2


def _noisy_sample_with_counted_folds(tmp_path, monkeypatch):
    """A fifth of the bundled sample at 32 px with 30 % symmetric noise (its labels the training labels), fold
    models replaced by :class:`_FoldCounter` (``_FoldCounter.fits`` counts them from 0)."""
    import core.trainer

    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _FoldCounter)
    monkeypatch.setattr(_FoldCounter, "fits", 0)
    data = ImageNetDataManager(DataConfig(image_size=32, val_image_size=32, num_workers=0, fraction=0.2,
                                          index_cache_dir=tmp_path / "cache"), seed=0)
    noisy = inject_symmetric_noise(data.train_labels, 0.3, data.num_classes, seed=0)
    return data.with_train_subset(data.train_ids, noisy.labels), noisy


def test_a_second_round_of_detection_trains_on_what_the_first_did_not_flag(tmp_path, monkeypatch):
    import json

    data, noisy = _noisy_sample_with_counted_folds(tmp_path, monkeypatch)
    cl = ConfidentLearningConfig(folds=2, rounds=2, filter_by="predicted_neq_given")
    res = detect_label_issues(tiny_config(tmp_path, training={"resume": "auto"}), data, tmp_path / "det", cl,
                              noise_mask=noisy.noise_mask, original_labels=noisy.original_labels)
    assert _FoldCounter.fits == 4  # K fold models per round
    det = tmp_path / "det"
    first = np.load(det / "pred_probs_round1.npy")
    np.testing.assert_array_equal(np.load(det / "pred_probs_round2.npy"), res.pred_probs)
    flagged_first = find_label_issues(data.train_labels, first, cl.filter_by)
    assert 0 < flagged_first.sum() < flagged_first.size
    fold_of = np.load(det / "round_2" / "folds.npy")
    np.testing.assert_array_equal(fold_of, np.load(det / "folds.npy"))  # the same folds in every round
    for k in range(2):
        kept = (fold_of != k) & ~flagged_first  # round 2 trains on its other folds less round 1's flags
        saved = json.loads((det / "round_2" / f"fold_{k}" / "fold_settings.json").read_text())
        assert saved["train_ids"] == array_digest(data.train_ids[kept])
        assert saved["train_labels"] == array_digest(data.train_labels[kept])
        np.testing.assert_array_equal(np.load(det / "round_2" / f"fold_{k}" / "scored_ids.npy"),
                                      data.train_ids[fold_of == k])  # flagged samples are scored again
    metrics = json.loads((det / "detection_metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert metrics["rounds"][0]["num_flagged"] == int(flagged_first.sum())
    assert metrics["rounds"][1]["num_flagged"] == int(res.issues.sum()) == metrics["num_flagged"]
    # compare_folds.py reads a later round, checked against what the round before did not flag
    from cleanlab.count import num_label_issues

    from experiments.label_noise_study.compare_folds import (detection_folds, detection_rounds,
                                                              previous_round_count)

    args = (data.train_ids, data.train_labels, fold_of, cl.filter_by)
    folds = detection_folds("r2", det / "round_2", *args)
    for k in range(2):
        np.testing.assert_array_equal(folds[k], res.pred_probs[fold_of == k])
    # round 2's rankings are also cut at round 1's estimate of the number of issues, on the folds compared
    everything = np.arange(fold_of.size)
    assert previous_round_count(detection_rounds("r1", det, *args), data.train_labels, fold_of, everything) == {}
    sel = np.flatnonzero(fold_of == 1)
    count = previous_round_count(detection_rounds("r2", det / "round_2", *args), data.train_labels, fold_of, sel)
    assert count == {"round 1's count": num_label_issues(data.train_labels[sel], first[sel])}
    n = count["round 1's count"]
    rows = detection_sweep(data.train_labels[sel], folds[1], noisy.noise_mask[sel], counts=count)
    row = next(r for r in rows if r["rule"] == f"rank=self_confidence (lowest {n}: round 1's count)")
    lowest = np.argsort(folds[1][np.arange(sel.size), data.train_labels[sel]], kind="stable")[:n]
    assert row["num_flagged"] == n and row["precision"] == pytest.approx(noisy.noise_mask[sel][lowest].mean())
    with pytest.raises(ValueError, match="made on other samples or labels"):  # checked under another rule's flags
        detection_folds("r2", det / "round_2", *args[:3], "both")
    (det / "fold_1" / "pred_probs.npy").unlink()
    with pytest.raises(ValueError, match="1 of 2 folds finished; round 2 trains on what round 1 did not flag"):
        detection_folds("r2", det / "round_2", *args)
    with pytest.raises(ValueError, match="--cl.rounds must be >= 1"):
        ConfidentLearningConfig(rounds=0)


class _SoftTargetRecorder(_FoldCounter):
    """The counting stand-in, recording what each fold model would train on: (train ids (N,), soft targets)."""

    seen: list = []

    def __init__(self, cfg, data):
        super().__init__(cfg, data)
        type(self).seen.append((data.train_ids.copy(), data.train_soft_targets))


def test_a_soft_round_keeps_every_sample_and_trains_the_flagged_on_the_last_rounds_probabilities(tmp_path,
                                                                                               monkeypatch):
    import json

    import core.trainer

    data, noisy = _noisy_sample_with_counted_folds(tmp_path, monkeypatch)
    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _SoftTargetRecorder)
    monkeypatch.setattr(_SoftTargetRecorder, "seen", [])
    cl = ConfidentLearningConfig(folds=2, rounds=2, round_targets="soft", filter_by="predicted_neq_given")
    cfg = tiny_config(tmp_path, training={"resume": "auto"})
    res = detect_label_issues(cfg, data, tmp_path / "det", cl, noise_mask=noisy.noise_mask,
                              original_labels=noisy.original_labels)
    det = tmp_path / "det"
    first = np.load(det / "pred_probs_round1.npy")
    flagged = find_label_issues(data.train_labels, first, cl.filter_by)
    assert 0 < flagged.sum() < flagged.size
    seen = _SoftTargetRecorder.seen
    assert len(seen) == 4 and seen[0][1] is None and seen[1][1] is None  # round 1 trains on the given labels
    fold_of = np.load(det / "round_2" / "folds.npy")
    for k, (ids, soft) in zip(range(2), seen[2:]):
        train = fold_of != k  # every sample of the other folds, flagged ones included
        np.testing.assert_array_equal(ids, data.train_ids[train])
        np.testing.assert_array_equal(soft.rows >= 0, flagged[train])
        np.testing.assert_array_equal(soft.probs, first[train & flagged])  # in training order
        saved = json.loads((det / "round_2" / f"fold_{k}" / "fold_settings.json").read_text())
        assert saved["train_ids"] == array_digest(data.train_ids[train])
        assert saved["soft_targets"]["num_soft"] == int((train & flagged).sum())
    np.testing.assert_array_equal(np.load(det / "pred_probs_round2.npy"), res.pred_probs)
    # the same call again reuses every fold; the same folder with the flagged removed instead is refused
    detect_label_issues(cfg, data, tmp_path / "det", cl, noise_mask=noisy.noise_mask)
    assert len(seen) == 4
    with pytest.raises(ValueError, match=r"round_2/fold_0 holds a fold model made with other settings"):
        detect_label_issues(cfg, data, tmp_path / "det", ConfidentLearningConfig(
            folds=2, rounds=2, filter_by="predicted_neq_given"))
    # other soft targets for the same flags and samples (round 1 rescored, its argmax unchanged) are refused too
    kept = np.load(det / "fold_1" / "pred_probs.npy")
    np.save(det / "fold_1" / "pred_probs.npy", (0.9 * kept + 0.1 / data.num_classes).astype(np.float32))
    with pytest.raises(ValueError, match=r"round_2/fold_0 holds a fold model made with other settings "
                                         r"\(soft_targets/digest"):
        detect_label_issues(cfg, data, tmp_path / "det", cl)
    np.save(det / "fold_1" / "pred_probs.npy", kept)
    assert len(seen) == 4
    # compare_folds.py reads the soft round without the round-1 flags' train mask
    from experiments.label_noise_study.compare_folds import detection_folds

    folds = detection_folds("soft", det / "round_2", data.train_ids, data.train_labels, fold_of, cl.filter_by)
    np.testing.assert_array_equal(folds[1], res.pred_probs[fold_of == 1])
    # the study does not reuse a result of rounds that removed the flags
    from services.noise_study import ExperimentSpec, StudyConfig, _fingerprint

    spec = ExperimentSpec("noise30_cleanlab", "30 % noise, cleanlab", 0.3, cleanlab=True)
    removed = ConfidentLearningConfig(folds=2, rounds=2)
    assert _fingerprint(cfg, spec, StudyConfig(), cl)["detection_rounds"] == [2, "soft"]
    assert _fingerprint(cfg, spec, StudyConfig(), removed)["detection_rounds"] == 2  # as saved before soft rounds
    with pytest.raises(ValueError, match="--cl.round_targets soft needs --cl.rounds >= 2"):
        ConfidentLearningConfig(round_targets="soft")
    with pytest.raises(ValueError, match="--cl.round_targets soft cannot train fold models with MixUp"):
        detect_label_issues(tiny_config(tmp_path, training={"mixup_alpha": 0.2}), data, tmp_path / "det2", cl)


def _fake_detection(det: Path, ids: np.ndarray, labels: np.ndarray, k: int, finished: list[int], seed: int = 0,
                    classes: int = 5):
    """A detection folder as services.label_issues leaves it: fold_f/ (scored ids, probabilities, settings digests)
    for the ``finished`` folds of ``k``; the probabilities are random, each row summing to one."""
    import json

    fold_of = stratified_folds(labels, k, 0)
    rng = np.random.default_rng(seed)
    for f in finished:
        fold_dir = det / f"fold_{f}"
        fold_dir.mkdir(parents=True)
        held = fold_of == f
        np.save(fold_dir / "scored_ids.npy", ids[held])
        np.save(fold_dir / "pred_probs.npy", rng.dirichlet(np.ones(classes), int(held.sum())).astype(np.float32))
        (fold_dir / "fold_settings.json").write_text(json.dumps(
            {"train_ids": array_digest(ids[~held]), "train_labels": array_digest(labels[~held])}))
    return fold_of


def test_fold_probes_with_another_k_compare_on_the_samples_both_scored(tmp_path):
    from experiments.label_noise_study.compare_folds import detection_fold_count, shared_samples

    labels = np.random.default_rng(0).integers(0, 5, 403)
    ids = np.arange(labels.size) + 1000
    fold_of_4 = _fake_detection(tmp_path / "k4", ids, labels, 4, [0, 1, 2, 3])
    fold_of_8 = _fake_detection(tmp_path / "k8", ids, labels, 8, [2], seed=1)
    assert [detection_fold_count(n, tmp_path / n, ids.size) for n in ("k4", "k8")] == [4, 8]
    sel, probs, counts, described = shared_samples({"k4": tmp_path / "k4", "k8": tmp_path / "k8"}, ids, labels, 0,
                                                   "prune_by_noise_rate")
    np.testing.assert_array_equal(sel, np.flatnonzero(fold_of_8 == 2))  # every sample of k8's fold 3: in some k4 fold
    assert described == "k4 folds [1, 2, 3, 4] of 4, k8 folds [3] of 8" and counts == {"k4": {}, "k8": {}}
    np.testing.assert_array_equal(probs["k8"], np.load(tmp_path / "k8" / "fold_2" / "pred_probs.npy"))
    for f in range(4):  # each k4 row is the probability its own fold model gave that sample
        in_f = fold_of_4[sel] == f
        scored = np.load(tmp_path / "k4" / f"fold_{f}" / "pred_probs.npy")
        np.testing.assert_array_equal(probs["k4"][in_f], scored[np.isin(np.flatnonzero(fold_of_4 == f), sel)])
    _fake_detection(tmp_path / "other", ids, labels, 8, [3])
    with pytest.raises(ValueError, match="no sample is scored by a finished fold of every detection"):
        shared_samples({"k8": tmp_path / "k8", "other": tmp_path / "other"}, ids, labels, 0, "prune_by_noise_rate")
    wrong = labels.copy()
    wrong[0] = (wrong[0] + 1) % 5  # another noise draw: the folds' training digests no longer match
    with pytest.raises(ValueError, match="made on other samples or labels"):
        shared_samples({"k4": tmp_path / "k4"}, ids, wrong, 0, "prune_by_noise_rate")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no finished fold"):
        shared_samples({"empty": tmp_path / "empty"}, ids, labels, 0, "prune_by_noise_rate")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        shared_samples({"typo": tmp_path / "k9"}, ids, labels, 0, "prune_by_noise_rate")


def test_aum_detection_flags_the_samples_whose_mean_margin_is_low_and_reuses_its_run(tmp_path, monkeypatch):
    import json

    import core.cli
    from core.dynamics import DYNAMICS_FILE, area_under_margin, load_dynamics
    from core.label_noise import ranking_metrics
    from services.label_issues import AUM_RUN

    data = ImageNetDataManager(DataConfig(image_size=32, val_image_size=32, num_workers=0, fraction=0.2,
                                          index_cache_dir=tmp_path / "cache"), seed=0)
    noisy = inject_symmetric_noise(data.train_labels, 0.3, data.num_classes, seed=0)
    data = data.with_train_subset(data.train_ids, noisy.labels)
    cfg = tiny_config(tmp_path, training={"resume": "auto", "epochs": 3})
    cl = ConfidentLearningConfig(scores="aum", aum_threshold=0.5)
    det = tmp_path / "det"
    res = detect_label_issues(cfg, data, det, cl, noise_mask=noisy.noise_mask, original_labels=noisy.original_labels)
    run = det / AUM_RUN  # one training run on every sample with its given label, margins recorded
    rec = load_dynamics(run / "logs" / DYNAMICS_FILE)
    np.testing.assert_array_equal(rec["labels"], noisy.labels)
    aum = np.load(det / "aum.npy")
    np.testing.assert_allclose(aum, area_under_margin(rec["margin"]))
    assert not np.isnan(aum).any()  # 3 shuffled epochs: every sample was trained on at least once
    np.testing.assert_array_equal(res.issues, aum < 0.5)
    assert 0 < res.issues.sum() < res.issues.size
    assert res.pred_probs.shape == (data.train_ids.size, data.num_classes)
    np.testing.assert_allclose(res.pred_probs.sum(1), 1.0, rtol=1e-5)
    metrics = json.loads((det / "detection_metrics.json").read_text())
    assert metrics["num_flagged"] == int(res.issues.sum()) and metrics["scores"] == "aum"
    assert metrics["aum_ranking"] == pytest.approx(ranking_metrics(-aum, noisy.noise_mask))
    assert "AUM below 0.5" in (det / "removal_list.txt").read_text().splitlines()[0]
    # the finished run is reused (nothing trains), and a run made with another recipe is refused
    monkeypatch.setattr(core.cli, "build_trainer", lambda *a, **k: pytest.fail("the AUM run trained again"))
    again = detect_label_issues(cfg, data, tmp_path / "det2", cl, folds_dir=det)
    np.testing.assert_array_equal(again.issues, res.issues)
    assert (tmp_path / "det2" / AUM_RUN).resolve() == run.resolve()  # the label review finds the run's model there
    from services.label_review.cams import CamRenderer
    from services.label_review.issues import load_issues

    issues = load_issues(tmp_path / "det2")
    cams = CamRenderer(issues)
    assert cams.available and issues.items
    assert cams.checkpoint_for(issues.items[0]).parent.resolve() == (run / "models").resolve()
    assert "in_sample_agreement_with_given_labels" in metrics  # the AUM run trained on what it scores
    assert not any(k.startswith("out_of_sample") for k in metrics)
    # a count cut on the same run: the 25 % lowest AUMs are flagged, whatever their sign (nothing trains)
    count_cl = ConfidentLearningConfig(scores="aum", aum_fraction=0.25)
    cut = detect_label_issues(cfg, data, tmp_path / "det3", count_cl, noise_mask=noisy.noise_mask, folds_dir=det)
    n = round(0.25 * aum.size)
    assert cut.issues.sum() == n
    assert aum[cut.issues].max() <= aum[~cut.issues].min()
    assert "the lowest 25 % of scored AUMs" in (tmp_path / "det3" / "removal_list.txt").read_text().splitlines()[0]
    assert json.loads((tmp_path / "det3" / "detection_metrics.json").read_text())["num_flagged"] == n
    with pytest.raises(ValueError, match=r"aum_run holds an AUM training run made with other settings "
                                         r"\(config/training/epochs: 3 -> 4\)"):
        detect_label_issues(tiny_config(tmp_path, training={"resume": "auto", "epochs": 4}), data, det, cl)
    with pytest.raises(ValueError, match="--cl.rounds > 1 needs --cl.scores k_fold"):
        ConfidentLearningConfig(scores="aum", rounds=2)
    with pytest.raises(ValueError, match="--cl.aum_threshold must be a finite number"):
        ConfidentLearningConfig(scores="aum", aum_threshold=float("nan"))
    with pytest.raises(ValueError, match=r"--cl.aum_fraction must be in \[0, 1\)"):
        ConfidentLearningConfig(scores="aum", aum_fraction=1.0)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=r"--cl.aum_fraction must be in \[0, 1\)"):
            ConfidentLearningConfig(scores="aum", aum_fraction=bad)
    with pytest.raises(ValueError, match="--cl.aum_fraction needs --cl.scores aum"):
        ConfidentLearningConfig(aum_fraction=0.2)
    with pytest.raises(ValueError, match="--cl.aum_fraction and --cl.aum_threshold are two rules"):
        ConfidentLearningConfig(scores="aum", aum_fraction=0.2, aum_threshold=1.0)


def test_lowest_flagged_cuts_a_ranking_at_a_count_never_scored_last():
    from core.label_noise import lowest_flagged

    wrongness = np.array([0.5, np.nan, 2.0, -1.0, 2.0, 0.1])
    np.testing.assert_array_equal(lowest_flagged(wrongness, 3), [True, False, True, False, True, False])
    np.testing.assert_array_equal(lowest_flagged(wrongness, 1), [False, False, True, False, False, False])  # tie: first
    with pytest.raises(ValueError, match=r"wrongness must be \(N,\), got shape \(2, 3\)"):
        lowest_flagged(wrongness.reshape(2, 3), 1)
    assert lowest_flagged(wrongness, 6)[1] and lowest_flagged(wrongness, 5).sum() == 5 and not lowest_flagged(
        wrongness, 5)[1]
    assert not lowest_flagged(wrongness, 0).any()
    with pytest.raises(ValueError, match=r"count 7 must lie in \[0, 6\]"):
        lowest_flagged(wrongness, 7)


def test_ranking_metrics_bound_what_a_threshold_on_a_ranking_reaches():
    from core.label_noise import ranking_metrics

    mask = np.array([True, True, False, True, False, False])
    perfect = ranking_metrics(mask.astype(float), mask)
    assert perfect == {"average_precision": 1.0, "precision_at_recall": 1.0, "recall_at_precision": 1.0,
                       "curve_meets_targets": True}
    # ranked T T F T F, NaN last: recall >= 0.8 needs all three flips (precision 3/4); precision >= 0.9 stops at 2/3
    ranked = np.array([6.0, 5, 4, 3, 2, np.nan])
    got = ranking_metrics(ranked, mask)
    assert got["precision_at_recall"] == pytest.approx(0.75) and got["recall_at_precision"] == pytest.approx(2 / 3)
    assert got["curve_meets_targets"] is False
    assert ranking_metrics(ranked, mask, target_recall=0.6)["curve_meets_targets"] is True  # 2 of 3 at precision 1
    assert ranking_metrics(np.zeros(3), np.zeros(3, bool))["curve_meets_targets"] is None
    with pytest.raises(ValueError, match="wrongness has shape"):
        ranking_metrics(np.zeros(3), np.zeros(4, bool))


def test_predict_proba_returns_rows_summing_to_one():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 6))
    ds = torch.utils.data.TensorDataset(torch.randn(10, 3, 4, 4), torch.zeros(10, dtype=torch.long))
    p = predict_proba(model, torch.utils.data.DataLoader(ds, batch_size=4), torch.device("cpu"))
    assert p.shape == (10, 6) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# fastdup wrapper: the decision and the manifest, without fastdup itself
# ----------------------------------------------------------------------------------------------------------------

def test_fastdup_findings_become_a_removal_manifest_the_main_library_reads(tmp_path):
    split = tmp_path / "train"
    files = ["n01/a.jpg", "n01/b.jpg", "n01/c.jpg", "n02/a.jpg", "n02/b.jpg"]
    for f in files:
        (split / f).parent.mkdir(parents=True, exist_ok=True)
        (split / f).write_bytes(b"x")
    entries = removal_entries(
        split,
        invalid=[str(split / "n02/b.jpg")],
        components=[(7, str(split / "n01/c.jpg")), (7, str(split / "n01/a.jpg")), (7, str(split / "n02/b.jpg")),
                    (9, "n02/a.jpg"), (9, "n01/b.jpg")],
        outliers=[str(split / "n01/a.jpg")])
    # component 7: n01/a.jpg is an outlier and n02/b.jpg broken, so n01/c.jpg is the copy kept;
    # component 9 keeps n01/b.jpg (first in sorted order)
    assert entries == [("n01/a.jpg", "outlier"), ("n02/a.jpg", "duplicate"), ("n02/b.jpg", "broken")]
    write_manifest(entries, tmp_path / "manifest", header="test")
    relpaths = np.array([f.encode() for f in files])
    m = read_manifest(tmp_path / "manifest", len(files), 2, relpaths=relpaths)
    np.testing.assert_array_equal(np.sort(m.remove), [0, 3, 4])
    with pytest.raises(ValueError, match="outside the split folder"):
        relative_to_split("/elsewhere/x.jpg", split)


def test_fastdup_script_says_how_to_install_it_when_missing(tmp_path):
    """In the main environment fastdup is absent: the script exits 2 with the venv commands."""
    try:
        import fastdup  # noqa: F401
        pytest.skip("fastdup is installed in this interpreter")
    except ImportError:
        pass
    (tmp_path / "train" / "n01").mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "services" / "fastdup_manifest.py"),
                           str(tmp_path / "train"), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert proc.returncode == 2
    assert "requirements-fastdup.txt" in proc.stderr


def test_ensemble_members_are_read_in_blocks_and_summed_to_numpys_mean_bit_for_bit(tmp_path, monkeypatch):
    import services.detection_ensemble as ens

    rng = np.random.default_rng(0)
    m, c = 1000, 7
    ids, labels = rng.permutation(5000)[:m], rng.integers(0, c, m)
    own = rng.dirichlet(np.full(c, 0.3), m).astype(np.float32)
    dirs, aligned = [], []
    for k in range(3):  # members in their own row order, one stored as float64
        probs = rng.dirichlet(np.full(c, 0.3), m).astype(np.float64 if k == 1 else np.float32)
        order = rng.permutation(m) if k else np.arange(m)
        dirs.append(tmp_path / f"m{k}")
        dirs[-1].mkdir()
        for name, arr in (("pred_probs", probs), ("train_ids", ids), ("given_labels", labels)):
            np.save(dirs[-1] / f"{name}.npy", arr[order])
        aligned.append(probs.astype(np.float32))
    monkeypatch.setattr(ens, "BLOCK_BYTES", 4 * c * 13)  # 13 rows a block: 77 blocks, the last one short
    members = ens.load_members(dirs, ids, labels)
    assert isinstance(members[1].probs, np.memmap) and members[0].pos is None and members[1].pos is not None
    for member, want in zip(members, aligned):
        np.testing.assert_array_equal(member.read(), want)
    mean = ens.ensemble_mean(own, members)
    np.testing.assert_array_equal(mean, np.mean([own, *aligned], axis=0, dtype=np.float32))  # the same bits
    assert mean.dtype == np.float32 and ens.ensemble_mean(own, []) is own
    read = ens._files_digest.cache_info().misses
    assert [m.digest for m in members] == ens.member_digests(dirs)  # hashed once: the files are not read again
    assert ens._files_digest.cache_info().misses == read
    passes = []  # checked again (the study, then its detection): the probabilities are not read a second time
    blocks = ens.Member.blocks
    monkeypatch.setattr(ens.Member, "blocks", lambda self: passes.append(self.path) or blocks(self))
    assert [m.content for m in ens.load_members(dirs, ids, labels)] == [m.content for m in members]
    assert passes == []
    ens.load_members(dirs, ids[::-1], labels[::-1])  # joined to the samples in another order: a new pass each
    assert passes == dirs
    monkeypatch.setattr(ens.Member, "blocks", blocks)
    again = tmp_path / "m1_reordered"  # the same detection saved in another row order: caught all the same
    again.mkdir()
    flip = np.arange(m)[::-1]
    for name in ("pred_probs", "train_ids", "given_labels"):
        np.save(again / f"{name}.npy", np.load(dirs[1] / f"{name}.npy")[flip])
    with pytest.raises(ValueError, match="lists the same detection twice"):
        ens.load_members([dirs[1], again], ids, labels)
    read = ens._files_digest.cache_info().misses
    ens.check_unchanged(members)  # unchanged files: accepted without reading them again
    assert ens._files_digest.cache_info().misses == read
    changed = np.load(dirs[2] / "pred_probs.npy")[::-1].copy()  # still probabilities, other bytes
    np.save(tmp_path / "changed.npy", changed)
    os.replace(tmp_path / "changed.npy", dirs[2] / "pred_probs.npy")  # as an atomic writer replaces a file
    assert ens.member_digests([dirs[2]]) != [members[2].digest]  # a replaced file is hashed again
    with pytest.raises(ValueError, match="m2 changed while the folds trained"):
        ens.check_unchanged(members)
    changed[-1] = -changed[-1]  # one row negative
    np.save(dirs[2] / "pred_probs.npy", changed)
    with pytest.raises(ValueError, match="rows are not probability vectors"):
        ens.open_member(dirs[2], ids, labels)


def test_an_ensemble_of_detections_averages_their_probabilities_before_cleanlab(tmp_path, monkeypatch):
    import dataclasses
    import json

    import shutil

    from services.detection_ensemble import ensemble_mean, load_members, member_probs

    data, noisy = _noisy_sample_with_counted_folds(tmp_path, monkeypatch)
    cfg = tiny_config(tmp_path, training={"resume": "auto"})
    cl = ConfidentLearningConfig(folds=2, filter_by="predicted_neq_given", relabel_threshold=0.5)
    alone = detect_label_issues(cfg, data, tmp_path / "alone", cl, noise_mask=noisy.noise_mask)
    assert _FoldCounter.fits == 2
    # a member that knows the truth (another seed's detection, here an oracle), its rows in another order
    ids, labels = data.train_ids, data.train_labels
    oracle = np.full((ids.size, data.num_classes), 0.02, dtype=np.float32)
    oracle[np.arange(ids.size), noisy.original_labels] = 1 - 0.02 * (data.num_classes - 1)
    member = tmp_path / "member"
    member.mkdir()
    order = np.random.default_rng(0).permutation(ids.size)
    for name, arr in (("pred_probs", oracle), ("train_ids", ids), ("given_labels", labels)):
        np.save(member / f"{name}.npy", arr[order])
    np.testing.assert_array_equal(member_probs(member, ids, labels), oracle)  # aligned by sample id
    both = detect_label_issues(cfg, data, tmp_path / "both", dataclasses.replace(cl, ensemble=(str(member),)),
                               noise_mask=noisy.noise_mask, original_labels=noisy.original_labels,
                               folds_dir=tmp_path / "alone")
    assert _FoldCounter.fits == 2  # the fold models are reused: an ensemble trains nothing more
    mean = (alone.pred_probs + oracle) / 2
    np.testing.assert_allclose(both.pred_probs, mean, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "both" / "pred_probs.npy"), mean, atol=1e-6)
    np.testing.assert_array_equal(both.issues, find_label_issues(labels, mean, cl.filter_by))
    assert both.metrics["precision"] > alone.metrics["precision"]  # the oracle member outvotes a weak fold model
    assert json.loads((tmp_path / "both" / "detection_metrics.json").read_text())["ensemble"] == [str(member)]
    header = (tmp_path / "both" / "removal_list.txt").read_text().splitlines()[0]  # the manifest says what flagged
    assert "out-of-sample probabilities, averaged with 1 more detection(s) (--cl.ensemble)" in header
    relabelled = np.isin(ids, both.manifest.relabel_ids)
    assert relabelled.sum() == both.manifest.num_relabel > 0
    np.testing.assert_array_equal(mean.argmax(1)[relabelled] == noisy.original_labels[relabelled], True)
    assert (tmp_path / "both" / "ensemble.json").is_file() and not (tmp_path / "alone" / "ensemble.json").exists()
    # refused before anything trains: the detection itself, the same member twice, an ensemble, an AUM detection,
    # another class count, files of other lengths, other samples, other labels, missing files
    with pytest.raises(ValueError, match="alone is this detection itself"):
        detect_label_issues(cfg, data, tmp_path / "self", dataclasses.replace(cl, ensemble=(str(tmp_path / "alone"),)),
                            folds_dir=tmp_path / "alone")
    shutil.copytree(member, tmp_path / "copy")
    with pytest.raises(ValueError, match="lists the same detection twice"):
        load_members([member, tmp_path / "copy"], ids, labels)
    with pytest.raises(ValueError, match="both is itself an ensemble"):
        member_probs(tmp_path / "both", ids, labels)
    (tmp_path / "copy" / "aum.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="is an AUM detection"):
        member_probs(tmp_path / "copy", ids, labels)
    with pytest.raises(ValueError, match=r"probabilities \(\d+, 10\), this detection's \(\d+, 9\)"):
        ensemble_mean(oracle[:, :-1], load_members([member], ids, labels))
    np.save(tmp_path / "copy" / "pred_probs.npy", oracle[1:])
    (tmp_path / "copy" / "aum.npy").unlink()
    with pytest.raises(ValueError, match=r"must be \(M, C\), \(M,\), \(M,\)"):
        member_probs(tmp_path / "copy", ids, labels)
    with pytest.raises(ValueError, match="scored other samples"):
        member_probs(member, ids[1:], labels[1:])
    other = labels.copy()
    other[0] = (other[0] + 1) % data.num_classes
    with pytest.raises(ValueError, match=r"checked other labels \(1 differ\)"):
        member_probs(member, ids, other)
    (member / "given_labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no given_labels.npy.*export_probs.py"):
        member_probs(member, ids, labels)
    with pytest.raises(ValueError, match="--cl.ensemble needs --cl.scores k_fold"):
        ConfidentLearningConfig(scores="aum", ensemble=(str(member),))


def test_a_later_round_trains_on_the_ensembles_estimate(tmp_path, monkeypatch):
    import dataclasses

    import core.trainer

    data, noisy = _noisy_sample_with_counted_folds(tmp_path, monkeypatch)
    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _SoftTargetRecorder)
    monkeypatch.setattr(_SoftTargetRecorder, "seen", [])
    ids, labels = data.train_ids, data.train_labels
    oracle = np.full((ids.size, data.num_classes), 0.02, dtype=np.float32)  # another detection: here it knows the truth
    oracle[np.arange(ids.size), noisy.original_labels] = 1 - 0.02 * (data.num_classes - 1)
    member = tmp_path / "member"
    member.mkdir()
    for name, arr in (("pred_probs", oracle), ("train_ids", ids), ("given_labels", labels)):
        np.save(member / f"{name}.npy", arr)
    cfg = tiny_config(tmp_path, training={"resume": "auto"})
    cl = ConfidentLearningConfig(folds=2, rounds=2, filter_by="predicted_neq_given", ensemble=(str(member),))
    for targets in ("remove", "soft"):
        det = tmp_path / targets
        detect_label_issues(cfg, data, det, dataclasses.replace(cl, round_targets=targets))
        mean = (np.load(det / "pred_probs_round1.npy") + oracle) / 2
        flagged = find_label_issues(labels, mean, cl.filter_by)
        assert flagged.sum() != find_label_issues(labels, np.load(det / "pred_probs_round1.npy"), cl.filter_by).sum()
        fold_of = np.load(det / "folds.npy")
        for k, (seen_ids, soft) in zip(range(2), _SoftTargetRecorder.seen[-2:]):
            train = (fold_of != k) & (True if targets == "soft" else ~flagged)
            np.testing.assert_array_equal(seen_ids, ids[train])
            if targets == "soft":
                np.testing.assert_array_equal(soft.rows >= 0, flagged[train])
                np.testing.assert_allclose(soft.probs, mean[train & flagged], atol=1e-6)
            else:
                assert soft is None

