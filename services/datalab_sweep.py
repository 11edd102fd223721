"""Label issues from cleanlab's ``Datalab`` scored against known flips (issue 13): out-of-sample probabilities with a
model's embeddings beside them, and the embeddings alone.

cleanlab's ``LabelIssueManager`` decides label issues from ``pred_probs`` when it has them (confident learning:
``CleanLearning.find_label_issues``, ``prune_by_noise_rate``; label score = self-confidence) and uses the features
only without them, through a k-nearest-neighbour classifier's out-of-sample probabilities (:func:`knn_pred_probs`
computes those here, robust to duplicate images). What the features add
beside ``pred_probs`` are other issue types: outliers, near duplicates, non-IID order. :func:`datalab_sweep`
measures both, and whether dropping the flags Datalab also calls outliers (atypical images, the hard clean ones the
study's cleaning removes) raises precision. Used by ``experiments/label_noise_study/compare_datalab.py``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from core.label_noise import lowest_flagged, ranking_metrics
from core.logger import progress_bar
from services.aum_sweep import rank_fraction, sweep_row
from services.label_issues import find_label_issues

@torch.no_grad()
def embeddings(model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = True,
               desc: str = "embedding") -> np.ndarray:
    """Global-average-pooled ``layer4`` features (the input of the classifier) of every image of ``loader``.

    Args:
        model: a :class:`core.model.ResNet` (``forward_features``), put in eval mode here.
        loader: yields (images (B, 3, H, W), labels); its order is kept.

    Returns:
        (N, D) float32, D = ``model.feature_dim`` (512 for ResNet-18/34, 2048 for ResNet-50 and deeper).
    """
    model.eval()
    out = [model.forward_features(x.to(device)).mean((2, 3)).float().cpu()
           for x, _ in progress_bar(loader, desc=desc, enabled=progress, unit="batch")]
    return torch.cat(out).numpy()


def knn_pred_probs(features: np.ndarray, labels: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """(N, C) out-of-sample probabilities from the labels of each sample's ``k`` nearest other samples (euclidean,
    as cleanlab's ``LabelIssueManager`` without ``pred_probs``). cleanlab fits k + 1 neighbours and subtracts the
    sample's own label, assuming the sample is its own nearest neighbour; with duplicate images (identical
    features: Imagenette has some) it is not always, the subtraction goes negative and Datalab drops the label
    issues. Here the sample itself is removed by index (or, when a duplicate displaced it, the farthest neighbour).
    """
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features, return_distance=False)
    own = idx == np.arange(len(idx))[:, None]
    own[~own.any(1), -1] = True  # the sample itself fell out of its k + 1 (duplicates): drop the farthest
    others = idx[~own].reshape(len(idx), k)
    probs = np.zeros((len(idx), num_classes))
    np.add.at(probs, (np.repeat(np.arange(len(idx)), k), labels[others].ravel()), 1.0 / k)
    return probs


def _label_and_outlier_issues(labels: np.ndarray, pred_probs: np.ndarray, features: Optional[np.ndarray], k: int):
    """Datalab's label issues (and, with ``features``, its outliers): the issues DataFrames by issue type.

    Raises:
        RuntimeError: Datalab could not compute an issue type (it logs the cause and carries on otherwise).
    """
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    types = {"label": {}} if features is None else {"label": {}, "outlier": {"k": k}}
    lab.find_issues(pred_probs=pred_probs, features=features, issue_types=types)
    found = set(lab.issue_summary["issue_type"])
    if found != set(types):
        raise RuntimeError(f"Datalab found no {sorted(set(types) - found)} issues (its log above says why)")
    return {t: lab.get_issues(t) for t in types}


def datalab_sweep(labels: np.ndarray, noise_mask: np.ndarray, pred_probs: np.ndarray, features: np.ndarray,
                  k: int = 10, target_precision: float = 0.9, target_recall: float = 0.8) -> tuple[list[dict], dict]:
    """Score Datalab's label issues against the truth: with ``pred_probs`` (features beside), with the features
    alone (kNN), the first without the samples Datalab calls outliers, and the two label scores rank-averaged (cut
    at the first's count). Curve columns (``ranking_metrics``) pick the threshold with the truth: a bound.

    Args:
        labels: (N,) int given (noisy) labels.
        noise_mask: (N,) bool, True where the label is wrong (scoring only).
        pred_probs: (N, C) out-of-sample probabilities.
        features: (N, D) float embeddings of the same samples.
        k: neighbours of the features-only label issues and of the outlier score (cleanlab's default 10).

    Returns:
        (rows with ``services.aum_sweep.SWEEP_COLUMNS``, notes): notes holds "same_as_prune_by_noise_rate"
        (whether the first row's flags are cleanlab's ``find_label_issues(..., 'prune_by_noise_rate')``) and the
        outlier count.

    Raises:
        ValueError: shapes that do not agree.
    """
    y, m = np.asarray(labels), np.asarray(noise_mask, dtype=bool)
    x, p = np.asarray(features, dtype=np.float32), np.asarray(pred_probs, dtype=np.float32)
    if not (y.shape == m.shape == (p.shape[0],) == (x.shape[0],)) or p.ndim != 2 or x.ndim != 2:
        raise ValueError(f"labels {y.shape}, noise_mask {m.shape}, pred_probs {p.shape} and features {x.shape} "
                         f"must be (N,), (N,), (N, C) and (N, D)")

    def row(rule: str, flagged: np.ndarray, wrongness: Optional[np.ndarray]) -> dict:
        curve = None if wrongness is None else ranking_metrics(wrongness, m, target_precision, target_recall)
        return sweep_row(rule, flagged, m, curve)

    both = _label_and_outlier_issues(y, p, x, k)
    label = both["label"]
    flagged, score = label["is_label_issue"].to_numpy(bool), label["label_score"].to_numpy(np.float64)
    outlier = both["outlier"]["is_outlier_issue"].to_numpy(bool)
    knn = _label_and_outlier_issues(y, knn_pred_probs(x, y, k, p.shape[1]), None, k)["label"]
    knn_flagged, knn_score = knn["is_label_issue"].to_numpy(bool), knn["label_score"].to_numpy(np.float64)
    mixed = rank_fraction(-score) + rank_fraction(-knn_score)
    lowest = lowest_flagged(mixed, int(flagged.sum()))
    rows = [row("Datalab label issues (pred_probs, features beside)", flagged, -score),
            row("the same without Datalab's outliers", flagged & ~outlier, None),
            row(f"Datalab label issues from the features alone (kNN, k = {k})", knn_flagged, -knn_score),
            row(f"mean rank of both label scores (lowest {int(flagged.sum())})", lowest, mixed)]
    same = bool(np.array_equal(flagged, find_label_issues(y, p, "prune_by_noise_rate")))
    notes = {"same_as_prune_by_noise_rate": same, "outliers": int(outlier.sum()),
             "flips_among_outliers": int((outlier & m).sum())}
    return rows, notes
