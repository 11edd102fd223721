"""Noise injection, simulated cleaning, cleaning manifests and detection metrics (core/label_noise.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time

import numpy as np
import pytest
from scipy.stats import chisquare

from core.label_noise import (RELABEL_FILE, REMOVAL_FILE, CleaningManifest, apply_manifest, apply_manifest_to,
                              detection_metrics, exact_count, inject_pair_noise, inject_symmetric_noise,
                              labels_digest, load_manifest, read_manifest, resolve_class_labels, resolve_sample_ids,
                              simulate_cleaning, write_training_labels)


def balanced_labels(n: int, num_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Symmetric noise
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,num_classes,rate", [(600, 10, 0.2), (600, 10, 0.4), (1001, 7, 0.5), (37, 2, 0.25),
                                                 (5000, 1000, 0.8), (10, 3, 0.0), (10, 3, 1.0)])
def test_symmetric_noise_flips_exactly_round_rate_n(n, num_classes, rate):
    y = balanced_labels(n, num_classes)
    noisy = inject_symmetric_noise(y, rate, num_classes, seed=0)
    assert noisy.num_flipped == round(rate * n) == exact_count(rate, n)
    # the mask is exactly where labels changed: no flipped label equals its original
    np.testing.assert_array_equal(noisy.noise_mask, noisy.labels != y)
    assert not np.any(noisy.labels[noisy.noise_mask] == y[noisy.noise_mask])
    np.testing.assert_array_equal(noisy.original_labels, y)
    assert noisy.labels.dtype == np.int64 and noisy.labels.min() >= 0 and noisy.labels.max() < num_classes


def test_symmetric_noise_is_seeded_and_leaves_the_input_alone():
    y = balanced_labels(1000, 10)
    before = y.copy()
    a = inject_symmetric_noise(y, 0.3, 10, seed=5)
    b = inject_symmetric_noise(y, 0.3, 10, seed=5)
    c = inject_symmetric_noise(y, 0.3, 10, seed=6)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    np.testing.assert_array_equal(y, before)


def test_symmetric_flips_are_uniform_over_the_other_classes():
    """For every original class, the new labels spread evenly over the other C-1 classes (chi-square, fixed seed),
    and the flipped samples are spread over classes in proportion to their size."""
    num_classes, n = 10, 100_000
    y = balanced_labels(n, num_classes)
    noisy = inject_symmetric_noise(y, 0.4, num_classes, seed=123)
    m = noisy.noise_mask
    for c in range(num_classes):
        new = noisy.labels[m & (y == c)]
        counts = np.bincount(new, minlength=num_classes)
        assert counts[c] == 0
        others = np.delete(counts, c)
        assert chisquare(others).pvalue > 1e-3, (c, others)
    per_class = np.bincount(y[m], minlength=num_classes)  # classes are equal-sized: flips should be too
    assert chisquare(per_class).pvalue > 1e-3, per_class


def test_symmetric_noise_on_imagenet_size_is_vectorised():
    y = np.repeat(np.arange(1000), 1282)[:1_281_167]
    start = time.process_time()
    noisy = inject_symmetric_noise(y, 0.4, 1000, seed=0)
    cleaned = simulate_cleaning(noisy, 0.6, seed=0)
    elapsed = time.process_time() - start  # CPU time of this process: robust to other jobs on a shared machine
    assert noisy.num_flipped == round(0.4 * 1_281_167)
    assert cleaned.num_restored == round(0.6 * noisy.num_flipped)
    assert elapsed < 2.0, f"{elapsed:.2f} s of CPU for 1,281,167 labels"


@pytest.mark.parametrize("kwargs,match", [
    (dict(rate=1.5), "noise rate"), (dict(rate=-0.1), "noise rate"),
    (dict(labels=np.array([0, 3])), r"\[0, 3\)"), (dict(labels=np.array([[0, 1]])), "1-D"),
    (dict(labels=np.array([0.0, 1.0])), "integers"),
])
def test_symmetric_noise_rejects_bad_input(kwargs, match):
    args = dict(labels=np.array([0, 1, 2]), rate=0.5, num_classes=3, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        inject_symmetric_noise(**args)


def test_symmetric_noise_needs_two_classes():
    with pytest.raises(ValueError, match="2 classes"):
        inject_symmetric_noise(np.zeros(10, dtype=np.int64), 0.5, 1, seed=0)


# ----------------------------------------------------------------------------------------------------------------
# Pair (asymmetric) noise
# ----------------------------------------------------------------------------------------------------------------

def test_pair_noise_flips_each_class_to_its_partner():
    y = balanced_labels(1000, 5)
    noisy = inject_pair_noise(y, 0.3, 5, seed=0)
    assert noisy.num_flipped == 300
    m = noisy.noise_mask
    np.testing.assert_array_equal(noisy.labels[m], (y[m] + 1) % 5)
    np.testing.assert_array_equal(noisy.labels[~m], y[~m])


def test_pair_noise_with_a_mapping_only_touches_mapped_classes():
    y = balanced_labels(1000, 5)
    noisy = inject_pair_noise(y, 0.2, 5, seed=0, pairs={0: 3, 3: 0})
    m = noisy.noise_mask
    assert noisy.num_flipped == 200
    assert set(np.unique(y[m]).tolist()) <= {0, 3}
    np.testing.assert_array_equal(noisy.labels[m], np.where(y[m] == 0, 3, 0))
    with pytest.raises(ValueError, match="only 400 samples"):
        inject_pair_noise(y, 0.5, 5, seed=0, pairs={0: 3, 3: 0})
    with pytest.raises(ValueError, match="partner"):
        inject_pair_noise(y, 0.1, 5, seed=0, pairs={0: 7})


# ----------------------------------------------------------------------------------------------------------------
# Simulated cleaning
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("noise,detection", [(0.2, 0.8), (0.4, 0.6), (0.3, 0.0), (0.3, 1.0), (0.0, 0.5)])
def test_simulated_cleaning_restores_exactly_round_rate_flips(noise, detection):
    y = balanced_labels(777, 10)
    noisy = inject_symmetric_noise(y, noise, 10, seed=3)
    cleaned = simulate_cleaning(noisy, detection, seed=4)
    assert cleaned.num_restored == round(detection * noisy.num_flipped)
    assert cleaned.num_noisy == noisy.num_flipped - cleaned.num_restored
    # restored samples were flipped and are now correct; the rest is untouched
    assert not np.any(cleaned.restored_mask & ~noisy.noise_mask)
    np.testing.assert_array_equal(cleaned.labels[cleaned.restored_mask], y[cleaned.restored_mask])
    keep = ~cleaned.restored_mask
    np.testing.assert_array_equal(cleaned.labels[keep], noisy.labels[keep])
    np.testing.assert_array_equal(cleaned.noise_mask, cleaned.labels != y)
    with pytest.raises(ValueError, match="detection rate"):
        simulate_cleaning(noisy, 1.2, seed=0)


# ----------------------------------------------------------------------------------------------------------------
# Manifests
# ----------------------------------------------------------------------------------------------------------------

RELPATHS = np.array([os.fsencode(p) for p in ["a/1.jpg", "a/2.jpg", "b/1.jpg", "b/2.jpg", "c/1.jpg", "c/22.jpg"]])
CLASS_TO_IDX = {"n01": 0, "n02": 1, "n03": 2}


def test_manifest_round_trip(tmp_path):
    m = CleaningManifest(remove=np.array([4, 1]), relabel_ids=np.array([5, 0]), relabel_to=np.array([0, 2]))
    removal, relabel = m.write(tmp_path, header="made by a test\nsecond line")
    assert removal.read_text().splitlines() == ["# made by a test", "# second line", "1", "4"]
    assert json.loads(relabel.read_text()) == {"0": 2, "5": 0}
    back = read_manifest(tmp_path, num_samples=6, num_classes=3)
    np.testing.assert_array_equal(back.remove, [1, 4])
    np.testing.assert_array_equal(back.relabel_ids, [0, 5])
    np.testing.assert_array_equal(back.relabel_to, [2, 0])

    ids = np.arange(6)
    labels = np.array([0, 0, 1, 1, 2, 2])
    kept, new, report = apply_manifest(ids, labels, back, num_classes=3)
    np.testing.assert_array_equal(kept, [0, 2, 3, 5])
    np.testing.assert_array_equal(new, [2, 1, 1, 0])
    assert (report.num_before, report.num_removed, report.num_relabelled, report.num_after) == (6, 2, 2, 4)
    assert report.num_relabel_unchanged == 0


def test_manifest_accepts_relative_paths_and_wnids(tmp_path):
    (tmp_path / REMOVAL_FILE).write_text("# comment\n\nb/2.jpg\n./c/1.jpg\n0\n")
    (tmp_path / RELABEL_FILE).write_text(json.dumps({"c\\22.jpg": "n01", "2": 1, "a/2.jpg": "2"}))
    m = read_manifest(tmp_path, 6, 3, relpaths=RELPATHS, class_to_idx=CLASS_TO_IDX)
    np.testing.assert_array_equal(m.remove, [3, 4, 0])
    np.testing.assert_array_equal(m.relabel_ids, [5, 2, 1])
    np.testing.assert_array_equal(m.relabel_to, [0, 1, 2])
    _, _, report = apply_manifest(np.arange(6), np.array([0, 0, 1, 1, 2, 2]), m, 3)
    assert report.num_relabel_unchanged == 1  # sample 2 already had class 1


def test_only_one_manifest_file_is_enough(tmp_path):
    (tmp_path / REMOVAL_FILE).write_text("3\n")
    m = read_manifest(tmp_path, 6, 3)
    assert m.num_remove == 1 and m.num_relabel == 0
    with pytest.raises(FileNotFoundError, match="no cleaning manifest"):
        read_manifest(tmp_path / "missing", 6, 3)


@pytest.mark.parametrize("removal,relabel,match", [
    ("6\n", None, r"unknown sample id.*\[0, 6\)"),
    ("-1\n", None, "not in the split"),  # not digits: read as a path, and no such path
    ("a/3.jpg\n", None, r"not in the split.*a/3.jpg"),
    ("a/very/long/path/that/cannot/exist.jpg\n", None, "not in the split"),
    (None, {"1": 3}, r"outside \[0, 3\)"),
    (None, {"1": -1}, r"outside \[0, 3\)"),
    (None, {"1": "n99"}, "unknown class label"),
    (None, {"1": 1.5}, "unknown class label"),
    (None, {"9": 1}, "unknown sample id"),
    ("1\n1\n", None, "appear twice"),
    ("1\n", {"1": 0}, "both removed and relabelled"),
    ("1\n", {"a/2.jpg": 0}, "both removed and relabelled"),  # same sample by id and by path
    (None, "[1, 2]", "JSON object"),
    (None, "{not json", "not valid JSON"),
    (None, '{"1": 0, "1": 2}', "duplicated key"),
])
def test_manifest_errors_name_the_problem(tmp_path, removal, relabel, match):
    if removal is not None:
        (tmp_path / REMOVAL_FILE).write_text(removal)
    if relabel is not None:
        (tmp_path / RELABEL_FILE).write_text(relabel if isinstance(relabel, str) else json.dumps(relabel))
    with pytest.raises(ValueError, match=match):
        read_manifest(tmp_path, 6, 3, relpaths=RELPATHS, class_to_idx=CLASS_TO_IDX)


def test_paths_are_refused_without_a_file_index():
    with pytest.raises(ValueError, match="no file paths"):
        resolve_sample_ids(["a/1.jpg"], 6, relpaths=None)
    np.testing.assert_array_equal(resolve_sample_ids([3, "4", " 5 "], 6), [3, 4, 5])
    np.testing.assert_array_equal(resolve_class_labels([0, "1", "n03"], 3, CLASS_TO_IDX), [0, 1, 2])


def test_applying_a_manifest_never_drops_unknown_ids_silently():
    m = CleaningManifest(remove=np.array([7]), relabel_ids=np.zeros(0), relabel_to=np.zeros(0))
    with pytest.raises(ValueError, match="not in the training set"):
        apply_manifest(np.array([1, 5, 9]), np.array([0, 1, 2]), m, 3)
    m = CleaningManifest(remove=np.zeros(0), relabel_ids=np.array([5]), relabel_to=np.array([4]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        apply_manifest(np.array([1, 5, 9]), np.array([0, 1, 2]), m, 3)


def test_apply_keeps_the_order_of_an_unsorted_subset():
    m = CleaningManifest(remove=np.array([5]), relabel_ids=np.array([9]), relabel_to=np.array([0]))
    ids, labels, _ = apply_manifest(np.array([9, 1, 5, 3]), np.array([2, 1, 1, 0]), m, 3)
    np.testing.assert_array_equal(ids, [9, 1, 3])
    np.testing.assert_array_equal(labels, [0, 1, 0])


def test_manifest_on_a_data_manager(tmp_path):
    """End to end on the bundled sample's file index: WNIDs, paths and ids resolve; the manager is updated."""
    from core.config import DataConfig
    from core.data.manager import ImageNetDataManager

    data = ImageNetDataManager(DataConfig(fraction=0.5, index_cache_dir=tmp_path / "cache"), seed=0)
    ids = data.train_ids
    path_of_second = os.fsdecode(data.train_index.relpaths[ids[1]])
    (tmp_path / REMOVAL_FILE).write_text(f"{ids[0]}\n{path_of_second}\n")
    (tmp_path / RELABEL_FILE).write_text(json.dumps({str(ids[2]): data.classes[9], str(ids[3]): 4}))
    manifest = load_manifest(tmp_path, data)
    before = len(data.train_ids)
    report = apply_manifest_to(data, manifest)
    assert (report.num_removed, report.num_relabelled) == (2, 2)
    assert len(data.train_ids) == before - 2
    np.testing.assert_array_equal(data.train_ids[:2], ids[2:4])
    np.testing.assert_array_equal(data.train_labels[:2], [9, 4])



def test_cleaning_manifest_flag_cleans_the_training_set(tmp_path):
    """--data.cleaning_manifest: the manager trains on the cleaned set, the class distribution counts it, and an
    entry outside the training subset is a one-line error naming the flag (nothing dropped silently)."""
    from core.config import DataConfig
    from core.data.manager import ImageNetDataManager

    full = ImageNetDataManager(DataConfig(index_cache_dir=tmp_path / "cache"), seed=0)
    rel = [os.fsdecode(full.train_index.relpaths[i]) for i in full.train_ids[:3]]
    man = tmp_path / "manifest"
    man.mkdir()
    (man / REMOVAL_FILE).write_text(f"{rel[0]}\n{rel[1]}\n")
    (man / RELABEL_FILE).write_text(json.dumps({rel[2]: full.classes[7]}))
    data = ImageNetDataManager(DataConfig(index_cache_dir=tmp_path / "cache", cleaning_manifest=man), seed=0,
                               run_dir=tmp_path / "run")
    data.write_class_distribution(tmp_path / "run")
    assert len(data.train_ids) == len(full.train_ids) - 2
    assert data.train_labels[0] == 7 and data.train_ids[0] == full.train_ids[2]
    assert data.manifest_report.as_dict()["num_removed"] == 2
    with open(tmp_path / "run" / "class_distribution.csv", newline="") as f:
        assert sum(int(row["subset_images"]) for row in csv.DictReader(f)) == len(full.train_ids) - 2
    half = ImageNetDataManager(DataConfig(index_cache_dir=tmp_path / "cache", fraction=0.5), seed=0)
    outside = np.setdiff1d(full.train_ids, half.train_ids)[0]
    (man / REMOVAL_FILE).write_text(os.fsdecode(full.train_index.relpaths[outside]) + "\n")
    with pytest.raises(ValueError, match="--data.cleaning_manifest .*are not in the training set"):
        ImageNetDataManager(dataclasses.replace(half.cfg, cleaning_manifest=man), seed=0)

def test_manifest_on_imagenet_size_is_vectorised(tmp_path):
    n, rng = 1_281_167, np.random.default_rng(0)
    picked = rng.choice(n, 200_000, replace=False)
    m = CleaningManifest(remove=picked[:100_000], relabel_ids=picked[100_000:],
                         relabel_to=rng.integers(0, 1000, 100_000))
    m.write(tmp_path)
    labels = np.repeat(np.arange(1000), 1282)[:n]
    start = time.process_time()
    back = read_manifest(tmp_path, n, 1000)
    ids, new, report = apply_manifest(np.arange(n), labels, back, 1000)
    elapsed = time.process_time() - start
    assert (report.num_removed, report.num_relabelled, ids.size) == (100_000, 100_000, n - 100_000)
    assert elapsed < 3.0, f"{elapsed:.2f} s of CPU to read and apply 200,000 manifest entries"


# ----------------------------------------------------------------------------------------------------------------
# Detection metrics and the label record
# ----------------------------------------------------------------------------------------------------------------

def test_detection_metrics_on_a_known_case():
    noise = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    flagged = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    m = detection_metrics(flagged, noise)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 5)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    m = detection_metrics(np.array([1, 0, 0, 0], dtype=bool), np.array([1, 1, 0, 0], dtype=bool))
    assert (m["precision"], m["recall"]) == (1.0, 0.5) and m["f1"] == pytest.approx(2 / 3)
    nothing = detection_metrics(np.zeros(4, dtype=bool), np.zeros(4, dtype=bool))
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        detection_metrics(np.zeros(3, dtype=bool), np.zeros(4, dtype=bool))


def test_detection_metrics_per_class_match_scikit_learn():
    """Per-class precision/recall/F1 (grouped by the given label) equal scikit-learn's binary scores on each
    class's samples, and the per-class counts add up to the overall ones."""
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 3000)
    noisy = inject_symmetric_noise(truth, 0.2, 6, seed=0)
    # num_classes=7 below: class 6 exists but holds no sample
    flagged = noisy.noise_mask ^ (rng.random(3000) < 0.1)  # a detector that errs on 10 % of the samples
    m = detection_metrics(flagged, noisy.noise_mask, noisy.labels, num_classes=7)
    assert len(m["per_class"]) == 7
    for row in m["per_class"][:6]:
        mine = noisy.labels == row["class"]
        p, r, f1, _ = precision_recall_fscore_support(noisy.noise_mask[mine], flagged[mine], average="binary",
                                                      zero_division=0)
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, r, f1))
        assert row["support"] == mine.sum() and row["num_noisy"] == noisy.noise_mask[mine].sum()
    assert m["per_class"][6] == {"class": 6, "support": 0, "num_noisy": 0, "num_flagged": 0, "tp": 0, "fp": 0,
                                 "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    for key in ("tp", "fp", "fn", "num_flagged", "num_noisy"):
        assert sum(row[key] for row in m["per_class"]) == m[key]
    with pytest.raises(ValueError, match="classes must lie"):
        detection_metrics(flagged, noisy.noise_mask, noisy.labels, num_classes=3)


def test_write_training_labels_records_what_a_run_trains_on(tmp_path):
    ids, labels = np.array([3, 5, 8]), np.array([1, 0, 2])
    path = write_training_labels(tmp_path, ids, labels, noise_mask=np.array([True, False, False]), noise_rate=0.2,
                                 noise_seed=np.int64(7), manifest=tmp_path)
    info = json.loads(path.read_text())
    assert info["num_samples"] == 3 and info["num_wrong_labels"] == 1 and info["noise_seed"] == 7
    assert info["digest"] == labels_digest(ids, labels) != labels_digest(ids, labels[::-1])
    np.testing.assert_array_equal(np.load(tmp_path / "train_ids.npy"), ids)
    np.testing.assert_array_equal(np.load(tmp_path / "train_labels.npy"), labels)
