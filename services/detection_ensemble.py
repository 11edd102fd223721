"""An ensemble of label-issue detections: the out-of-sample probabilities of several finished K-fold detections of
the same samples and labels (other training seeds, fold recipes or rounds), averaged before cleanlab finds issues.

Each member's probability for a sample comes from a fold model that did not train on it, so their mean is still
out of sample. Averaging the predicted probabilities of several models is the ensemble cleanlab's documentation
recommends for label-quality scores (``cleanlab.rank.get_label_quality_ensemble_scores`` averages the members'
scores; averaging ``pred_probs`` as here keeps every ``filter_by`` rule usable). Issue 13 measured it on
Imagenette at 20 % noise: the mean of three 4-fold detections ranks the flips at average precision 0.904 against
0.886-0.899 for each alone (``experiments/label_noise_study/results/imagenette_b15_rounds/README.md``).

A member is a detection folder as :func:`services.label_issues.detect_label_issues` writes it: ``pred_probs.npy``
(M, C), ``train_ids.npy`` (M,) and ``given_labels.npy`` (M,). ``experiments/label_noise_study/export_probs.py``
writes these three files for a kept detection that holds only its ``fold_k/`` files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

MEMBER_FILES = ("pred_probs.npy", "train_ids.npy", "given_labels.npy")


def member_probs(det_dir: str | Path, train_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M, C) float32 out-of-sample probabilities of detection ``det_dir`` for the samples ``train_ids`` (M,), in
    that order, checked against the given ``labels`` (M,) it must have scored.

    Raises:
        FileNotFoundError: a file of :data:`MEMBER_FILES` is missing from ``det_dir``.
        ValueError: the member scored other samples, checked other labels, or holds rows that are not
            probability vectors.
    """
    det_dir = Path(det_dir)
    missing = [f for f in MEMBER_FILES if not (det_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"--cl.ensemble {det_dir}: no {', '.join(missing)}; give a finished detection/ "
                                f"folder, or write them for a kept one with "
                                f"experiments/label_noise_study/export_probs.py")
    probs, ids, given = (np.load(det_dir / f) for f in MEMBER_FILES)
    train_ids, labels = np.asarray(train_ids), np.asarray(labels)
    pos = np.arange(ids.size)
    if not np.array_equal(ids, train_ids):  # the same samples in another order: align by id
        by_id, by_train = np.argsort(ids, kind="stable"), np.argsort(train_ids, kind="stable")
        if ids.size != train_ids.size or not np.array_equal(ids[by_id], train_ids[by_train]):
            raise ValueError(f"--cl.ensemble {det_dir} scored other samples ({ids.size} ids) than this detection "
                             f"({train_ids.size}); give a detection of the same training set")
        pos[by_train] = by_id
    if not np.array_equal(given[pos], labels):
        raise ValueError(f"--cl.ensemble {det_dir} checked other labels ({int((given[pos] != labels).sum())} "
                         f"differ); give a detection of the same noisy labels (noise rate and seed)")
    probs = probs[pos].astype(np.float32)
    if probs.ndim != 2 or not np.isfinite(probs).all() or np.abs(probs.sum(1) - 1).max() > 1e-3:
        raise ValueError(f"--cl.ensemble {det_dir}: pred_probs.npy {probs.shape} is not (M, C) probabilities")
    return probs


def ensemble_probs(own: np.ndarray, members: Sequence[str | Path], train_ids: np.ndarray,
                   labels: np.ndarray) -> np.ndarray:
    """(M, C) float32 mean of this detection's probabilities ``own`` (M, C) and each member's
    (:func:`member_probs`), every model weighted equally; ``own`` unchanged when there are no members.

    Raises:
        ValueError: as :func:`member_probs`, or a member with another number of classes.
    """
    if not members:
        return own
    stack = [np.asarray(own, dtype=np.float32)]
    for m in members:
        p = member_probs(m, train_ids, labels)
        if p.shape != stack[0].shape:
            raise ValueError(f"--cl.ensemble {m}: probabilities {p.shape}, this detection's {stack[0].shape}")
        stack.append(p)
    return np.mean(stack, axis=0, dtype=np.float32)


def member_digests(members: Sequence[str | Path]) -> list[str]:
    """SHA-256 hex digest of each member's ``pred_probs.npy`` bytes, in order: what the study's row fingerprint
    records, so that a finished row is not reused with other members (wherever their folders lie).

    Raises:
        FileNotFoundError: a member has no ``pred_probs.npy``.
    """
    out = []
    for m in members:
        path = Path(m) / MEMBER_FILES[0]
        if not path.is_file():
            raise FileNotFoundError(f"--cl.ensemble {m}: no {MEMBER_FILES[0]}; give a finished detection/ folder")
        out.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return out
