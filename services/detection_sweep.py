"""How well label-issue rules and rankings find known wrong labels (issue 13's detection targets), and the tables
the study's comparison scripts write from them; a sibling of :mod:`services.aum_sweep` and
:mod:`services.datalab_sweep`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from core.label_noise import detection_metrics, ranking_metrics
from services.label_issues import FILTER_METHODS, find_label_issues

LABEL_QUALITY_SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
"""The ``method`` values of ``cleanlab.rank.get_label_quality_scores`` (cleanlab 2.6-2.9)."""


def detection_sweep(labels: np.ndarray, pred_probs: np.ndarray, noise_mask: np.ndarray,
                    target_precision: float = 0.9, target_recall: float = 0.8,
                    counts: Mapping[str, int] | None = None) -> list[dict]:
    """How well each cleanlab rule and each label-quality ranking finds the known wrong labels.

    Every ``filter_by`` of :data:`FILTER_METHODS` is scored on the set it flags. Every ranking of
    :data:`LABEL_QUALITY_SCORES` (lowest score = most likely wrong) flags its ``n`` lowest samples, ``n`` being
    cleanlab's estimate of the number of issues (``cleanlab.count.num_label_issues``, from the confident joint),
    and is also scored on its whole precision-recall curve (``sklearn.metrics.precision_recall_curve``): average
    precision, the best precision at recall >= ``target_recall``, the best recall at precision >=
    ``target_precision``, and whether any threshold reaches both targets (issue 13: 0.9 and 0.8 at 20 %
    symmetric noise). The curve figures choose the threshold with the truth, so they bound what a rule on that
    ranking could reach; they are not a rule. Vectorised: 1.28 M samples take seconds per rule.

    Args:
        labels: (M,) int given labels in [0, C).
        pred_probs: (M, C) out-of-sample probabilities.
        noise_mask: (M,) bool, True where the given label is wrong (the truth; never shown to the rules).
        counts: {name: n}, further numbers of samples each ranking flags (0 <= n <= M).

    Returns:
        One dict per rule: {"rule", "num_flagged", "precision", "recall", "f1", "meets_targets",
        "average_precision", "precision_at_recall", "recall_at_precision", "curve_meets_targets"}; a filter's
        curve fields, and a ``counts`` row's, are NaN (and curve_meets_targets None).

    Raises:
        ValueError: shapes disagree, or a count is outside [0, M].
    """
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(pred_probs, dtype=np.float32)
    m = np.asarray(noise_mask, dtype=bool)
    if m.shape != y.shape or probs.shape[:1] != y.shape:
        raise ValueError(f"labels {y.shape}, pred_probs {probs.shape} and noise_mask {m.shape} must share M")
    counts = dict(counts or {})
    if any(not 0 <= n <= y.size for n in counts.values()):
        raise ValueError(f"counts {counts} must lie in [0, {y.size}] (the number of samples scored)")
    nan = float("nan")

    def scored(rule: str, flagged: np.ndarray) -> dict:
        d = detection_metrics(flagged, m)
        return {"rule": rule, "num_flagged": d["num_flagged"], "precision": d["precision"], "recall": d["recall"],
                "f1": d["f1"], "meets_targets": d["precision"] >= target_precision and d["recall"] >= target_recall,
                "average_precision": nan, "precision_at_recall": nan, "recall_at_precision": nan,
                "curve_meets_targets": None}

    rows = [scored(f"filter_by={method}", find_label_issues(y, probs, method)) for method in FILTER_METHODS]
    n_issues = int(num_label_issues(y, probs))
    for method in LABEL_QUALITY_SCORES:
        wrongness = -get_label_quality_scores(y, probs, method=method)
        order = np.argsort(-wrongness, kind="stable")

        def lowest(n: int) -> np.ndarray:
            flagged = np.zeros(y.size, dtype=bool)
            flagged[order[:n]] = True
            return flagged

        row = scored(f"rank={method} (lowest {n_issues})", lowest(n_issues))
        row.update(ranking_metrics(wrongness, m, target_precision, target_recall))
        rows.append(row)
        rows += [scored(f"rank={method} (lowest {n}: {name})", lowest(n)) for name, n in counts.items()]
    return rows


SWEEP_NOTE = ("Rank rows flag the lowest-scored samples, as many as cleanlab estimates are wrong; their curve columns "
              "pick the threshold with the truth (a bound, not a rule).")
"""What the curve columns of a :func:`detection_sweep` table mean, for its readers."""


def write_sweep_table(out_dir: Path, stem: str, rows: list[dict], columns: Sequence[str], title: str,
                      notes: Sequence[str] = ()) -> str:
    """Write :func:`detection_sweep` rows (with any leading columns of the caller's) as ``out_dir/stem.csv`` and a
    markdown table ``out_dir/stem.md`` under ``# title``, ``notes`` and :data:`SWEEP_NOTE`; floats to 3 decimals,
    NaN and None as '-'. Returns the markdown. Keys of a row outside ``columns`` are left out."""
    out_dir = Path(out_dir)
    with open(out_dir / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def fmt(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [f"# {title}\n", " ".join([*notes, SWEEP_NOTE]) + "\n",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out_dir / f"{stem}.md").write_text(text)
    return text
