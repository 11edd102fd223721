"""``label_issues.csv``: one row per sample a detection flagged, written by :mod:`services.label_issues` and read by
the label review (:mod:`services.label_review.issues`), both through the names here.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.data.manager import ImageNetDataManager

ISSUES_FILE = "label_issues.csv"
COLUMNS = ("sample_id", "path", "given", "given_class", "predicted", "predicted_class", "confidence")
"""Columns of label_issues.csv that the review reads; the file has one more, 'action' (:data:`ACTIONS`)."""
ACTIONS = ("relabel", "remove")
"""The last column of label_issues.csv: what the detection's manifest does with the sample."""


def write_issue_table(path: Path, data: "ImageNetDataManager", probs: np.ndarray, issues: np.ndarray,
                      relabel_ids: np.ndarray) -> None:
    """Write ``label_issues.csv`` (:data:`COLUMNS` plus 'action'): one row per flagged sample of ``data``'s training
    set, in training order, with its given and most probable class (names as ``data.classes``) and that class's
    probability.

    Args:
        path: the CSV to write.
        data: the training set scored (``train_ids`` (M,), ``train_labels`` (M,), ``train_index.relpaths``).
        probs: (M, C) out-of-sample probabilities, row i for ``data.train_ids[i]``.
        issues: (M,) bool, the flagged samples.
        relabel_ids: sample ids the manifest relabels; the other flagged samples are removed.
    """
    relabelled = set(np.asarray(relabel_ids).tolist())
    relpaths = data.train_index.relpaths
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, "action"])
        for i in np.flatnonzero(issues).tolist():  # only the flagged samples: a few percent of the set
            sid = int(data.train_ids[i])
            given, pred = int(data.train_labels[i]), int(probs[i].argmax())
            w.writerow([sid, os.fsdecode(relpaths[sid]) if relpaths is not None else "", given,
                        data.classes[given], pred, data.classes[pred], f"{probs[i, pred]:.4f}",
                        ACTIONS[0] if sid in relabelled else ACTIONS[1]])
