"""Labels from elsewhere: a Noisy-Imagenette-style CSV (relative path → WNID) becomes a relabel manifest, and
``--data.cleaning_manifest`` then trains on exactly the CSV's labels (services/import_labels.py)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from core.config import BUNDLED_SAMPLE_ROOT, DataConfig
from core.data.index import scan_image_folder
from core.data.manager import ImageNetDataManager
from core.label_noise import RELABEL_FILE
from services.import_labels import main, read_label_csv


@pytest.fixture
def noisy_csv(tmp_path, monkeypatch):
    """The bundled sample's train and val files in Noisy Imagenette's format: every 4th training label moved to
    the next class (noisy_labels_25), noisy_labels_0 equal to the folders, val rows flagged is_valid."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the converter's index cache
    train = scan_image_folder(BUNDLED_SAMPLE_ROOT / "train", tmp_path / "cache")
    val = scan_image_folder(BUNDLED_SAMPLE_ROOT / "val", tmp_path / "cache")
    classes = train.classes
    noisy = train.labels.copy()
    noisy[::4] = (noisy[::4] + 1) % len(classes)
    path = tmp_path / "noisy_imagenette.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "noisy_labels_0", "noisy_labels_25", "is_valid"])
        for rel, y, z in zip(train.relpaths, train.labels, noisy):
            w.writerow([f"train/{os.fsdecode(rel)}", classes[y], classes[z], "False"])
        for rel, y in zip(val.relpaths, val.labels):
            w.writerow([f"val/{os.fsdecode(rel)}", classes[y], classes[y], "True"])
    return path, train, noisy


def test_csv_labels_reach_training_through_the_manifest(noisy_csv, tmp_path):
    path, train, noisy = noisy_csv
    out = tmp_path / "manifest"
    assert main(["--csv", str(path), "--label_column", "noisy_labels_25", "--out", str(out),
                 "--data.root", str(BUNDLED_SAMPLE_ROOT)]) == 0
    mapping = json.loads((out / RELABEL_FILE).read_text())
    assert len(mapping) == int((noisy != train.labels).sum()) == (len(train) + 3) // 4  # only changed labels
    assert all(not p.startswith("train/") for p in mapping)
    data = ImageNetDataManager(DataConfig(root=BUNDLED_SAMPLE_ROOT, cleaning_manifest=out,
                                          index_cache_dir=tmp_path / "cache"), seed=0)
    assert len(data.train_ids) == len(train)  # nothing removed
    np.testing.assert_array_equal(data.train_labels, noisy[data.train_ids])
    assert data.manifest_report.num_relabelled == len(mapping)


def test_clean_column_gives_an_empty_map_and_val_rows_are_skipped(noisy_csv, tmp_path):
    path, train, _ = noisy_csv
    labels = read_label_csv(path, "noisy_labels_0", progress=False)
    assert labels.num_other_split == labels.num_rows - len(train) > 0
    assert len(labels.relpaths) == len(train) and not labels.changed.any()
    out = tmp_path / "m0"
    assert main(["--csv", str(path), "--label_column", "noisy_labels_0", "--out", str(out)]) == 0
    assert json.loads((out / RELABEL_FILE).read_text()) == {}
    assert main(["--csv", str(path), "--label_column", "noisy_labels_0", "--out", str(out), "--all_rows"]) == 0
    assert len(json.loads((out / RELABEL_FILE).read_text())) == len(train)


@pytest.mark.parametrize("edit, column, match", [
    (None, "noisy_labels_9", "no column 'noisy_labels_9' \\(columns: path, noisy_labels_0"),
    (lambda rows: rows[1].__setitem__(2, "n99999999"), "noisy_labels_25", "unknown class label.*n99999999"),
    (lambda rows: rows[1].__setitem__(0, "train/n01440764/missing.JPEG"), "noisy_labels_25",
     "path\\(s\\) not in the split.*missing.JPEG"),
    (lambda rows: rows.append(rows[1][:2] + ["n03000684", "False"]), "noisy_labels_25", "listed twice"),
])
def test_bad_csv_is_one_clear_error_and_writes_nothing(noisy_csv, tmp_path, capsys, edit, column, match):
    path, _, _ = noisy_csv
    rows = list(csv.reader(open(path, newline="")))
    if edit is not None:
        edit(rows)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    out = tmp_path / "bad"
    assert main(["--csv", str(path), "--label_column", column, "--out", str(out),
                 "--data.root", str(BUNDLED_SAMPLE_ROOT)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1  # one line (the progress bars share stderr)
    err = errors[0]
    assert __import__("re").search(match, err), err
    assert not out.exists()
