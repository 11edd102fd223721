"""PNG plots of training curves, class distributions and confusion matrices (headless, Agg)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

logger = logging.getLogger(__name__)

__all__ = [
    "load_metrics",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_training_curves",
]

DPI = 120
# A confusion-matrix heatmap stops being readable past this many classes.
MAX_HEATMAP_CLASSES = 50
MAX_ANNOTATED_CLASSES = 20
# Above this many epochs, curves are drawn as lines without markers.
_MAX_MARKED_EPOCHS = 30


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # A bare Figure on an Agg canvas: no pyplot state, no GUI backend, nothing to close.
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_path: str | Path) -> Path:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    logger.info("wrote %s", out)
    return out


def load_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a trainer's `metrics.jsonl`: one JSON object per line, one line per epoch.

    Expected keys (written by the trainer): "epoch" (int, 1-based), "train_loss",
    "train_top1" (%), "val_loss", "val_top1" (%), "val_top5" (%), "lr",
    "images_per_sec", "epoch_time_s", optionally "peak_gpu_mem_mb". Lines of epochs
    without evaluation lack the val keys; the records are returned as written, blank
    lines skipped.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a line is not a JSON object (the line number is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            records.append(rec)
    return records


def _as_float(value: Any) -> float:
    """A metric value as float; None, missing or non-numeric become NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _series(metrics: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of `key`, keeping only epochs where the value is finite."""
    epochs = np.array([_as_float(m.get("epoch", i + 1)) for i, m in enumerate(metrics)])
    values = np.array([_as_float(m.get(key)) for m in metrics])
    keep = np.isfinite(epochs) & np.isfinite(values)
    return epochs[keep], values[keep]


def plot_training_curves(
    metrics: str | Path | Sequence[Mapping[str, Any]],
    out_path: str | Path,
    title: str | None = None,
) -> Path:
    """Plot loss, accuracy and learning rate against epoch into one PNG (three panels).

    Panels: (1) train and val loss; (2) train top-1, val top-1 and val top-5 in percent;
    (3) learning rate, on a log axis when it spans more than 10x. Epochs whose record
    lacks a key (e.g. no evaluation that epoch) or holds NaN are skipped for that curve
    only. Points carry markers up to 30 epochs, so a single epoch is still visible.

    Args:
        metrics: a `metrics.jsonl` path (see `load_metrics`) or the list of its records.
        out_path: where to write the PNG; parent folders are created.
        title: figure title, e.g. the run name.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: `metrics` holds no records.
        FileNotFoundError: as `load_metrics`.
    """
    records = load_metrics(metrics) if isinstance(metrics, (str, Path)) else list(metrics)
    if not records:
        raise ValueError("no metrics records to plot")
    show_markers = len(records) <= _MAX_MARKED_EPOCHS

    fig = _new_figure((15.0, 4.6))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    panels = [
        (ax_loss, "Loss", "cross-entropy loss",
         [("train_loss", "train", "C0", "-", "o"), ("val_loss", "val", "C1", "-", "o")]),
        (ax_acc, "Accuracy", "accuracy (%)",
         [("train_top1", "train top-1", "C0", "-", "o"), ("val_top1", "val top-1", "C1", "-", "o"),
          ("val_top5", "val top-5", "C1", "--", "s")]),
        (ax_lr, "Learning rate", "learning rate", [("lr", "lr", "C2", "-", "o")]),
    ]
    for ax, panel_title, ylabel, curves in panels:
        drawn = 0
        for key, label, color, style, mark in curves:
            x, y = _series(records, key)
            if x.size == 0:
                continue
            ax.plot(x, y, linestyle=style, color=color, marker=mark if show_markers else None,
                    markersize=4, label=label)
            drawn += 1
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn == 0:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                    color="0.5")
        elif len(curves) > 1:
            ax.legend(loc="best", fontsize="small")

    all_epochs = np.array([_as_float(m.get("epoch", i + 1)) for i, m in enumerate(records)])
    all_epochs = all_epochs[np.isfinite(all_epochs)]
    if all_epochs.size and np.ptp(all_epochs) < 2:
        # One or two epochs: the integer locator finds no ticks in so short a range.
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlim(all_epochs.min() - 0.5, all_epochs.max() + 0.5)
            ax.set_xticks(np.unique(all_epochs))

    _, lr = _series(records, "lr")
    lr = lr[lr > 0]
    if lr.size and lr.max() / lr.min() > 10:
        ax_lr.set_yscale("log")
    else:
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_class_distribution(
    counts: Mapping[str, int] | Sequence[int],
    out_path: str | Path,
    title: str = "Images per class",
) -> Path:
    """Bar chart of the number of images per class, e.g. to check a stratified subset.

    Up to 50 classes: one labelled bar per class in the given order (labels rotated,
    counts written on the bars up to 20 classes). More classes (e.g. all 1000 of
    ImageNet-1k): the counts sorted in decreasing order against rank, without class
    labels, with the mean drawn as a line and min / median / max in the subtitle.

    Args:
        counts: class name -> image count, or counts in class-index order.
        out_path: where to write the PNG; parent folders are created.
        title: figure title.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: `counts` is empty or holds a negative count.
    """
    if isinstance(counts, Mapping):
        names = [str(k) for k in counts]
        values = np.array([int(v) for v in counts.values()])
    else:
        values = np.array([int(v) for v in counts])
        names = [str(i) for i in range(len(values))]
    if values.size == 0:
        raise ValueError("no class counts to plot")
    if (values < 0).any():
        raise ValueError("class counts must be >= 0")
    n = values.size
    subtitle = (f"{n} classes, {values.sum():,} images; per class min {values.min():,}, "
                f"median {int(np.median(values)):,}, max {values.max():,}")

    if n <= MAX_HEATMAP_CLASSES:
        fig = _new_figure((max(6.0, 0.32 * n + 2.5), 4.8))
        ax = fig.subplots()
        bars = ax.bar(np.arange(n), values, color="C0")
        ax.set_xticks(np.arange(n))
        ax.set_xticklabels(names, rotation=45 if n <= 20 else 70, ha="right",
                           rotation_mode="anchor", fontsize="small" if n > 20 else "medium")
        ax.set_xlim(-0.6, n - 0.4)
        if n <= MAX_ANNOTATED_CLASSES:
            ax.bar_label(bars, fontsize="x-small", padding=2)
            ax.margins(y=0.1)
        ax.set_xlabel("class")
    else:
        fig = _new_figure((9.0, 4.8))
        ax = fig.subplots()
        ordered = np.sort(values)[::-1]
        ax.fill_between(np.arange(n), ordered, step="mid", alpha=0.35, color="C0")
        ax.step(np.arange(n), ordered, where="mid", color="C0", linewidth=1.2)
        ax.axhline(values.mean(), color="C1", linestyle="--", linewidth=1,
                   label=f"mean {values.mean():,.1f}")
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel("class rank (sorted by count)")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(f"{title}\n{subtitle}", fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str] | None,
    out_path: str | Path,
    normalize: bool = True,
) -> Path:
    """Heatmap of a confusion matrix, rows = true class, columns = predicted class.

    Meant for up to 50 classes (e.g. Imagenette or a small subset); each cell shows its
    value when there are at most 20 classes. For more classes (ImageNet-1k) a heatmap
    is unreadable: use a most-confused-pairs view instead, built on
    `utils.metrics.most_confused(cm, k)`. A plot of that view is planned and not written yet.

    Args:
        cm: (C, C) integer counts, as from `utils.metrics.ConfusionMatrix.compute()`.
        class_names: C names in class-index order, or None for the indices.
        out_path: where to write the PNG; parent folders are created.
        normalize: if True, show each row as percent of that true class (recall on the
            diagonal; rows without samples are left blank); else raw counts.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: `cm` is not square, has more than 50 classes, or `class_names` has
            the wrong length.
    """
    mat = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C), got shape {mat.shape}")
    n = mat.shape[0]
    if n > MAX_HEATMAP_CLASSES:
        raise ValueError(
            f"{n} classes are too many for a confusion-matrix heatmap (max "
            f"{MAX_HEATMAP_CLASSES}); use a most-confused-pairs view instead, from "
            "utils.metrics.most_confused(cm, k)"
        )
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"got {len(names)} class names for {n} classes")

    mat = mat.astype(np.float64)
    if normalize:
        support = mat.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shown = 100.0 * mat / support  # rows without samples -> NaN (blank)
        vmax, cbar_label, cell_fmt = 100.0, "% of true class", "{:.0f}"
    else:
        shown = mat
        vmax = max(float(mat.max()), 1.0)
        cbar_label, cell_fmt = "images", "{:.0f}"

    # ~0.4 in per cell leaves room for the numbers; without them 0.25 in keeps labels legible.
    side = max(5.5, 0.42 * n + 3.0) if n <= MAX_ANNOTATED_CLASSES else 0.25 * n + 4.0
    fig = _new_figure((side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0.0, vmax=vmax,
                   interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(cbar_label)
    ticks = np.arange(n)
    small = "x-small" if n > 20 else "small"
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels(names, rotation=45 if n <= 20 else 90, ha="right",
                       rotation_mode="anchor", fontsize=small)
    ax.set_yticklabels(names, fontsize=small)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(mat.sum())
    acc = 100.0 * np.trace(mat) / total if total else math.nan
    ax.set_title(f"Confusion matrix ({'row-normalised' if normalize else 'counts'}); "
                 f"{total:,} images, accuracy {acc:.1f} %", fontsize="medium")
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                v = shown[i, j]
                if not np.isfinite(v) or (mat[i, j] == 0 and i != j):
                    continue  # keep empty off-diagonal cells clean
                ax.text(j, i, cell_fmt.format(v), ha="center", va="center",
                        fontsize="small" if n <= 12 else "x-small",
                        color="white" if v > 0.55 * vmax else "black")
    fig.tight_layout()
    return _save(fig, out_path)
