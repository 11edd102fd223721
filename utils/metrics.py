"""Classification metrics: top-k counts, a device-side confusion matrix, per-class reports."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "ConfusionMatrix",
    "confused_pairs",
    "format_per_class_table",
    "most_confused",
    "per_class_accuracy",
    "per_class_report",
    "topk_correct",
    "write_per_class_csv",
]


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be (N,) with N = {logits.shape[0]}, got shape {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices, got dtype {targets.dtype}")


def topk_correct(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> torch.Tensor:
    """Count the samples whose target class is among the k highest logits, for each k.

    Args:
        logits: (N, C) float scores (logits or probabilities; only their order matters).
        targets: (N,) int64 class indices in [0, C).
        ks: the k values, each >= 1. A k larger than C is clamped to C, so with 3 classes
            "top-5" is top-3 and every sample counts as correct.

    Returns:
        (len(ks),) int64 tensor on `logits.device`, in the order of `ks`. Nothing is copied
        to the host, so this does not synchronise with the GPU; call `.tolist()` once per
        epoch, not per batch.

    Ties between equal logits are broken by `torch.topk`'s order, which is unspecified.
    Definition as in the PyTorch ImageNet example's `accuracy()` (pytorch/examples).

    Raises:
        ValueError: wrong shapes, empty `ks` or a k < 1.
        TypeError: `targets` is not an integer tensor.
    """
    _check_logits_targets(logits, targets)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of integers >= 1, got {ks}")
    num_classes = logits.shape[1]
    maxk = min(max(ks), num_classes)
    pred = logits.topk(maxk, dim=1).indices  # (N, maxk), best first
    hit = pred.eq(targets.to(pred.device).unsqueeze(1))  # (N, maxk) bool, <= one True per row
    # Cumulative "hit within the first j" per row; column k-1 answers top-k.
    hit_within = hit.cumsum(dim=1).clamp_(max=1)  # (N, maxk) int64
    return torch.stack([hit_within[:, min(k, num_classes) - 1].sum() for k in ks])


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class, in percent, from a confusion matrix.

    Args:
        cm: (C, C) integer counts, rows = true class, columns = predicted class.

    Returns:
        (C,) float32 tensor on `cm.device`: 100 * cm[i, i] / cm[i, :].sum(); NaN for a
        class with no samples.

    Raises:
        ValueError: `cm` is not square.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {tuple(cm.shape)}")
    support = cm.sum(dim=1).to(torch.float32)
    return 100.0 * cm.diagonal().to(torch.float32) / support  # 0 / 0 -> NaN


def most_confused(cm: torch.Tensor, k: int = 10) -> list[tuple[int, int, int]]:
    """The `k` most frequent off-diagonal (true, predicted) pairs of a confusion matrix.

    Args:
        cm: (C, C) integer counts, rows = true class, columns = predicted class.
        k: how many pairs to return at most (>= 0).

    Returns:
        [(true_class, predicted_class, count), ...] sorted by count, largest first; ties
        in (true, predicted) order. Pairs with a count of 0 are left out. Runs on the CPU
        (one copy of `cm`); the idea follows fastai's `ClassificationInterpretation`.

    Raises:
        ValueError: `cm` is not square or `k` < 0.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {tuple(cm.shape)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    num_classes = cm.shape[0]
    off = cm.detach().to("cpu", torch.int64).clone()
    off.fill_diagonal_(0)
    flat = off.flatten()
    idx = flat.nonzero().squeeze(1)  # flat index order == (true, pred) lexicographic
    counts = flat[idx]
    order = torch.sort(counts, descending=True, stable=True).indices[:k]
    return [
        (int(i) // num_classes, int(i) % num_classes, int(c))
        for i, c in zip(idx[order].tolist(), counts[order].tolist())
    ]


def per_class_report(cm: torch.Tensor, class_names: Sequence[str]) -> list[dict]:
    """One row per class: {class_index, name, support, correct, accuracy}.

    Args:
        cm: (C, C) integer counts, rows = true class, columns = predicted class.
        class_names: C names, in class-index order (e.g. `ImageFolder.classes` or the
            synset names of `LOC_synset_mapping.txt`).

    Returns:
        C dicts; `support` and `correct` are image counts, `accuracy` is per-class recall
        in percent (float NaN when `support` is 0).

    Raises:
        ValueError: `cm` is not square or `class_names` has the wrong length.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {tuple(cm.shape)}")
    if len(class_names) != cm.shape[0]:
        raise ValueError(f"got {len(class_names)} class names for {cm.shape[0]} classes")
    cm_cpu = cm.detach().cpu()
    support = cm_cpu.sum(dim=1).tolist()
    correct = cm_cpu.diagonal().tolist()
    acc = per_class_accuracy(cm_cpu).tolist()
    return [
        {
            "class_index": i,
            "name": str(class_names[i]),
            "support": int(support[i]),
            "correct": int(correct[i]),
            "accuracy": float(acc[i]),
        }
        for i in range(cm.shape[0])
    ]


def confused_pairs(cm: torch.Tensor, class_names: Sequence[str] | None = None, k: int = 20) -> list[dict]:
    """The `k` most-confused (true, predicted) pairs as table rows: the view that replaces a
    heatmap when there are too many classes to draw one (ImageNet-1k: 1,000,000 cells).

    Args:
        cm: (C, C) integer counts, rows = true class, columns = predicted class.
        class_names: C names in class-index order, or None for the indices.
        k: how many pairs at most (>= 0).

    Returns:
        Rows sorted as `most_confused` (count, largest first): {"true", "pred", "true_name",
        "pred_name", "count", "true_support" (images of the true class), "percent_of_true"
        (count / true_support, in percent)}.

    Raises:
        ValueError: `cm` is not square, `k` < 0, or `class_names` has the wrong length.
    """
    pairs = most_confused(cm, k)
    n = cm.shape[0]
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"got {len(names)} class names for {n} classes")
    support = cm.detach().to("cpu", torch.int64).sum(dim=1).tolist()
    return [
        {
            "true": t, "pred": p, "true_name": names[t], "pred_name": names[p], "count": c,
            "true_support": int(support[t]), "percent_of_true": 100.0 * c / support[t],
        }
        for t, p, c in pairs
    ]


_SORT_KEYS = ("class_index", "accuracy", "support", "name")


def _sorted_rows(rows: Sequence[dict], sort_by: str, descending: bool) -> list[dict]:
    if sort_by not in _SORT_KEYS:
        raise ValueError(f"unknown sort_by {sort_by!r}; choose one of: {', '.join(_SORT_KEYS)}")

    def key(r: dict):
        v = r[sort_by]
        if sort_by == "accuracy":  # classes without samples (NaN) go last either way
            return (math.isnan(v) != descending, v if not math.isnan(v) else 0.0)
        return v

    return sorted(rows, key=key, reverse=descending)


def format_per_class_table(
    rows: Sequence[dict], sort_by: str = "accuracy", descending: bool = False,
    max_rows: int | None = None,
) -> str:
    """A Markdown table of `per_class_report` rows, worst classes first by default.

    Args:
        rows: output of `per_class_report` (optionally with a "wnid" key per row).
        sort_by: "accuracy", "class_index", "support" or "name".
        descending: sort order; ties keep the class-index order.
        max_rows: keep the first this many rows after sorting (None = all; ImageNet-1k
            gives 1,000 rows, which is fine in a file and long on a screen).

    Returns:
        The table as one string (header, separator, one line per class).

    Raises:
        ValueError: unknown `sort_by`.
    """
    ordered = _sorted_rows(rows, sort_by, descending)
    if max_rows is not None:
        ordered = ordered[:max_rows]
    has_wnid = any("wnid" in r for r in ordered)
    head = ["class", *(["WNID"] if has_wnid else []), "name", "images", "correct", "top-1 (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h in ("images", "correct", "top-1 (%)",
                                                                              "class") else "---" for h in head) + "|"]
    for r in ordered:
        acc = "-" if math.isnan(r["accuracy"]) else f"{r['accuracy']:.1f}"
        cells = [str(r["class_index"]), *([str(r.get("wnid", ""))] if has_wnid else []),
                 str(r["name"]).replace("|", "/"), str(r["support"]), str(r["correct"]), acc]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_per_class_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write `per_class_report` rows (in the given order) to a CSV file and return its path.

    Columns: class_index, [wnid,] name, support, correct, accuracy (percent, empty when the
    class has no samples). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_wnid = any("wnid" in r for r in rows)
    cols = ["class_index", *(["wnid"] if has_wnid else []), "name", "support", "correct", "accuracy"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            acc = "" if math.isnan(r["accuracy"]) else f"{r['accuracy']:.4f}"
            w.writerow([*(r.get(c, "") for c in cols[:-1]), acc])
    return path


class ConfusionMatrix:
    """A (C, C) int64 confusion matrix accumulated on the device, batch by batch.

    Rows are the true class, columns the predicted class: `compute()[t, p]` counts images
    of class t predicted as p. Each `update` is one `torch.bincount(targets * C + preds)`
    (the torchvision reference scripts' `ConfusionMatrix` uses the same trick).

    Args:
        num_classes: C >= 1.
        device: where the matrix lives; the inputs of `update` are moved there.

    Raises:
        ValueError: `num_classes` < 1.
    """

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = torch.zeros(
            (self.num_classes, self.num_classes), dtype=torch.int64, device=device
        )

    @property
    def device(self) -> torch.device:
        """The device the counts live on."""
        return self.matrix.device

    @torch.no_grad()
    def update(self, preds_or_logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch.

        Args:
            preds_or_logits: (N,) integer predicted classes, or (N, C) scores (argmax taken).
            targets: (N,) integer true classes.

        Raises:
            ValueError: wrong shapes, or a class index outside [0, C). The range check
                reads one bool on the host; `torch.bincount` syncs on CUDA anyway.
            TypeError: (N,) predictions or targets that are not integers.
        """
        c = self.num_classes
        if preds_or_logits.ndim == 2:
            if preds_or_logits.shape[1] != c:
                raise ValueError(
                    f"logits must be (N, {c}), got shape {tuple(preds_or_logits.shape)}"
                )
            preds = preds_or_logits.argmax(dim=1)
        elif preds_or_logits.ndim == 1:
            preds = preds_or_logits
        else:
            raise ValueError(
                f"expected (N,) predictions or (N, C) logits, got {tuple(preds_or_logits.shape)}"
            )
        if targets.ndim != 1 or targets.shape[0] != preds.shape[0]:
            raise ValueError(
                f"targets must be (N,) with N = {preds.shape[0]}, got {tuple(targets.shape)}"
            )
        for name, t in (("predictions", preds), ("targets", targets)):
            if t.dtype.is_floating_point or t.dtype == torch.bool:
                raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
        preds = preds.to(self.device, torch.int64)
        targets = targets.to(self.device, torch.int64)
        in_range = (targets >= 0) & (targets < c) & (preds >= 0) & (preds < c)
        if not bool(in_range.all()):
            raise ValueError(f"class indices must lie in [0, {c}); got values outside it")
        counts = torch.bincount(targets * c + preds, minlength=c * c)  # (C*C,)
        self.matrix += counts.view(c, c)

    def compute(self) -> torch.Tensor:
        """(C, C) int64 counts so far (a copy), rows = true, columns = predicted."""
        return self.matrix.clone()

    def reset(self) -> None:
        """Zero the counts (e.g. at the start of each evaluation)."""
        self.matrix.zero_()

    def per_class_accuracy(self) -> torch.Tensor:
        """(C,) float32 per-class recall in percent; NaN for classes with no samples."""
        return per_class_accuracy(self.matrix)

    def most_confused(self, k: int = 10) -> list[tuple[int, int, int]]:
        """The `k` largest off-diagonal cells as (true, predicted, count); see `most_confused`."""
        return most_confused(self.matrix, k)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, device={self.device})"
