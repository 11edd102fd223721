"""What the Area Under the Margin of a recorded training run finds among known wrong labels: per window of epochs,
at a threshold, at a count, and averaged with other label-quality rankings (issue 13).

The record is a run's ``logs/dynamics.npz`` (``--training.record_dynamics``, :mod:`core.dynamics`); the truth is
the study's noise mask. Every figure is vectorised over the N samples (1.28 M take seconds).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from scipy.stats import rankdata

from core.dynamics import area_under_margin
from core.label_noise import detection_metrics, lowest_flagged, nan_ranked_last, ranking_metrics

SWEEP_COLUMNS = ("rule", "num_flagged", "precision", "recall", "f1", "average_precision", "precision_at_recall",
                 "recall_at_precision", "curve_meets_targets")
NO_CURVE = {"average_precision": float("nan"), "precision_at_recall": float("nan"),
            "recall_at_precision": float("nan"), "curve_meets_targets": None}
"""The curve fields of a row that scores a flagged set, not a ranking."""


def sweep_row(rule: str, flagged: np.ndarray, noise_mask: np.ndarray, curve: Optional[dict] = None) -> dict:
    """One row of :data:`SWEEP_COLUMNS`: ``flagged`` (N,) bool scored against ``noise_mask`` (N,) bool
    (:func:`core.label_noise.detection_metrics`) with a ranking's ``curve`` (:func:`ranking_metrics`; default
    :data:`NO_CURVE`)."""
    d = detection_metrics(flagged, noise_mask)
    return {"rule": rule, **{k: d[k] for k in ("num_flagged", "precision", "recall", "f1")}, **(curve or NO_CURVE)}
"""The columns of an :func:`aum_sweep` table (:func:`services.detection_sweep.write_sweep_table`)."""


def rank_fraction(wrongness: np.ndarray) -> np.ndarray:
    """(N,) float64 in (0, 1]: each sample's rank in ``wrongness`` (N,) divided by N, ties averaged, NaN ranked
    lowest (never scored = not suspected). Puts rankings on different scales (AUM in logits, a probability) on one
    scale, so that their mean is a rank-average ensemble."""
    w = nan_ranked_last(wrongness)
    return rankdata(w) / max(w.size, 1)


def aum_sweep(margin: np.ndarray, noise_mask: np.ndarray, windows: Sequence[tuple[int, int]],
              threshold: float = 0.0, count: Optional[int] = None,
              others: Optional[Mapping[str, np.ndarray]] = None, target_precision: float = 0.9,
              target_recall: float = 0.8) -> list[dict]:
    """Score AUM rankings of a recorded run against the truth.

    For each window (first, last) of 0-based epochs, inclusive, the AUM over it (:func:`area_under_margin`) is
    scored as a rule (AUM < ``threshold``) and, with ``count``, as its ``count`` lowest samples; every row also
    carries the ranking's whole precision-recall curve figures (:func:`core.label_noise.ranking_metrics`, which
    pick the threshold with the truth: a bound, not a rule). Each ranking of ``others`` is scored likewise (its
    curve, and at ``count``), and so is the rank average (:func:`rank_fraction`) of the first window's AUM with it.

    Args:
        margin: (E, N) float margins (NaN where a sample was not trained on).
        noise_mask: (N,) bool, True where the given label is wrong.
        windows: (first, last) epoch pairs, 0 <= first <= last < E.
        threshold: the AUM rule's threshold, in logits.
        count: a number of samples to flag from each ranking (e.g. cleanlab's estimate of the number of issues).
        others: {name: (N,) wrongness}, higher = more likely wrong (e.g. minus K-fold self-confidence).

    Returns:
        One dict per row, with the keys of :data:`SWEEP_COLUMNS`; a curve field is NaN (None) on a row that is
        the same ranking's threshold or count.

    Raises:
        ValueError: shapes disagree, a window is outside the record, or ``count`` is outside [0, N].
    """
    z = np.asarray(margin, dtype=np.float32)
    m = np.asarray(noise_mask, dtype=bool)
    others = dict(others or {})
    if z.ndim != 2 or z.shape[1] != m.size or any(np.shape(w) != m.shape for w in others.values()):
        raise ValueError(f"margin {z.shape} must be (E, N) and noise_mask and others (N,), N = {m.size}")
    bad = [w for w in windows if not 0 <= w[0] <= w[1] < z.shape[0]]
    if bad or not windows:
        raise ValueError(f"windows {list(windows)} must be non-empty (first, last) epochs in [0, {z.shape[0]})")
    if count is not None and not 0 <= count <= m.size:
        raise ValueError(f"count {count} must lie in [0, {m.size}]")
    nan = float("nan")
    rows: list[dict] = []
    aums = {}
    for first, last in windows:
        name = f"AUM epochs {first + 1}-{last + 1}"
        aum = area_under_margin(z, first, last)
        aums[name] = -aum
        rows.append(sweep_row(f"{name} < {threshold:g}", aum < threshold, m,
                              ranking_metrics(-aum, m, target_precision, target_recall)))
        if count is not None:
            rows.append(sweep_row(f"{name} (lowest {count})", lowest_flagged(-aum, count), m))
    first_aum_name, first_aum = next(iter(aums.items()))
    for name, wrongness in others.items():
        mixed = {name: np.asarray(wrongness, dtype=np.float64),
                 f"mean rank of {first_aum_name} and {name}": rank_fraction(first_aum) + rank_fraction(wrongness)}
        for label, w in mixed.items():
            curve = ranking_metrics(w, m, target_precision, target_recall)
            if count is None:
                rows.append({"rule": label, "num_flagged": nan, "precision": nan, "recall": nan, "f1": nan, **curve})
            else:
                rows.append(sweep_row(f"{label} (lowest {count})", lowest_flagged(w, count), m, curve))
    return rows
