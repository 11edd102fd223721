"""PNG plots of training curves, class distributions, confusion views and LR range tests (headless, Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import matplotlib
from matplotlib.ticker import MaxNLocator

# The helpers keep their old private names here: plots look ``_save`` up in this module (tests wrap it).
from utils.figures import first_synonym as _short
from utils.figures import new_figure as _new_figure
from utils.figures import save_figure as _save
# The image grids live in utils/image_grids.py; re-exported so that callers keep importing them from here.
from utils.image_grids import denormalize, plot_augmentation_preview, plot_sample_predictions

__all__ = [
    "denormalize",
    "load_metrics",
    "plot_augmentation_preview",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_lr_finder",
    "plot_most_confused",
    "plot_per_class_accuracy",
    "plot_sample_predictions",
    "plot_training_curves",
]

# A confusion-matrix heatmap stops being readable past this many classes.
MAX_HEATMAP_CLASSES = 50
MAX_ANNOTATED_CLASSES = 20
# Above this many epochs, curves are drawn as lines without markers.
_MAX_MARKED_EPOCHS = 30
# Up to this many epochs, the legends give each curve's last value and the axes start at 0.
_MAX_LABELLED_EPOCHS = 3


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
    label_smoothing: float = 0.0,
) -> Path:
    """Plot loss, accuracy and learning rate against epoch into one PNG (three panels).

    Panels: (1) train and val loss; (2) train top-1, val top-1 and val top-5 in percent;
    (3) learning rate, on a log axis when it spans more than 10x. When the records hold
    EMA metrics (``val_loss_ema``, ``val_top1_ema``, ``val_top5_ema``: the weights that
    choose ``best.pt`` when EMA is on) they are drawn beside the val curves, in red.
    Epochs whose record lacks a key (e.g. no evaluation that epoch) or holds NaN are
    skipped for that curve only. Points carry markers up to 30 epochs; with 3 epochs or
    fewer the legends give each curve's last value and the axes start at 0 (accuracy
    spans 0-100 %), so a 1-epoch run reads as numbers rather than a zoomed-in speck.

    Args:
        metrics: a `metrics.jsonl` path (see `load_metrics`) or the list of its records.
        out_path: where to write the PNG; parent folders are created.
        title: figure title, e.g. the run name.
        label_smoothing: the run's `--training.label_smoothing`; when > 0 the train loss
            is labelled as computed with it (it cannot reach 0 and is not comparable
            with the val loss, which is plain cross-entropy).

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
    few = len(records) <= _MAX_LABELLED_EPOCHS
    all_epochs = np.array([_as_float(m.get("epoch", i + 1)) for i, m in enumerate(records)])
    all_epochs = all_epochs[np.isfinite(all_epochs)]
    few = few and all_epochs.size > 0
    train_loss = f"train (with label smoothing {label_smoothing:g})" if label_smoothing > 0 else "train"

    fig = _new_figure((15.0, 4.6))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    panels = [
        (ax_loss, "Loss", "cross-entropy loss", "{:.3f}",
         [("train_loss", train_loss, "C0", "-", "o"), ("val_loss", "val", "C1", "-", "o"),
          ("val_loss_ema", "val (EMA weights)", "C3", "-", "D")]),
        (ax_acc, "Accuracy", "accuracy (%)", "{:.1f}",
         [("train_top1", "train top-1", "C0", "-", "o"), ("val_top1", "val top-1", "C1", "-", "o"),
          ("val_top5", "val top-5", "C1", "--", "s"), ("val_top1_ema", "val top-1 (EMA weights)", "C3", "-", "D"),
          ("val_top5_ema", "val top-5 (EMA weights)", "C3", "--", "D")]),
        (ax_lr, "Learning rate", "learning rate", "{:.3g}", [("lr", "lr", "C2", "-", "o")]),
    ]
    for ax, panel_title, ylabel, fmt, curves in panels:
        drawn = 0
        for key, label, color, style, mark in curves:
            x, y = _series(records, key)
            if x.size == 0:
                continue
            if few:  # a handful of points: the legend gives the last value, which a speck cannot show
                label = f"{label}: {fmt.format(y[-1])}"
            ax.plot(x, y, linestyle=style, color=color, marker=mark if show_markers else None,
                    markersize=7 if few else 4, label=label)
            drawn += 1
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn == 0:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                    color="0.5")
        elif len(curves) > 1 or few:
            ax.legend(loc="best", fontsize="small", title=f"epoch {int(all_epochs.max())}" if few else None,
                      title_fontsize="small")

    if all_epochs.size and np.ptp(all_epochs) < 2:
        # One or two epochs: the integer locator finds no ticks in so short a range.
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlim(all_epochs.min() - 0.5, all_epochs.max() + 1.5)  # room for the legend
            ax.set_xticks(np.unique(all_epochs))
    if few:  # from 0, so that a single point or two close ones do not fill the panel with noise
        ax_acc.set_ylim(0, 100)
        for ax in (ax_loss, ax_lr):
            top = ax.get_ylim()[1]
            ax.set_ylim(0, top * 1.15 if top > 0 else 1)

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
    `plot_most_confused`.

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
            f"{MAX_HEATMAP_CLASSES}); use the most-confused-pairs view instead: "
            "plot_most_confused(cm, class_names, out_path)"
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


# ---------------------------------------------------------------------------------------------------------------
# Most-confused pairs, per-class accuracy
# ---------------------------------------------------------------------------------------------------------------


def plot_most_confused(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str] | None,
    out_path: str | Path,
    top_n: int = 20,
    title: str | None = None,
) -> Path:
    """Horizontal bars of the `top_n` most-confused (true -> predicted) class pairs.

    The readable replacement for a heatmap at 1,000 classes: one bar per pair, labelled
    "true -> predicted", its length the image count, annotated with the share of the true
    class's images that went to that prediction. Pairs come from
    `utils.metrics.confused_pairs` (fastai's `most_confused` idea).

    Args:
        cm: (C, C) integer counts, rows = true class, columns = predicted class; any C.
        class_names: C names in class-index order, or None for the indices.
        out_path: where to write the PNG; parent folders are created.
        top_n: how many pairs at most (>= 1).
        title: figure title (default names the number of classes and images).

    Returns:
        `out_path` as a Path. A matrix without errors gives a figure saying so.

    Raises:
        ValueError: `cm` is not square, `top_n` < 1, or `class_names` has the wrong length.
    """
    from utils.metrics import confused_pairs

    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    mat = torch.as_tensor(np.asarray(cm) if not isinstance(cm, torch.Tensor) else cm).to(torch.int64)
    rows = confused_pairs(mat, class_names, top_n)
    n_cls, total = mat.shape[0], int(mat.sum())
    errors = total - int(mat.diagonal().sum())
    fig = _new_figure((10.0, max(3.0, 0.34 * len(rows) + 1.6)))
    ax = fig.subplots()
    if rows:
        labels = [f"{_short(r['true_name'])} \u2192 {_short(r['pred_name'])}" for r in rows]
        counts = [r["count"] for r in rows]
        y = np.arange(len(rows))
        bars = ax.barh(y, counts, color="C3", alpha=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()  # the most-confused pair on top
        ax.bar_label(bars, labels=[f"{r['count']:,} ({r['percent_of_true']:.0f} % of true)" for r in rows],
                     fontsize="x-small", padding=3)
        ax.set_xlim(0, max(counts) * 1.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("images of the true class predicted as the other")
        ax.grid(True, axis="x", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no confusions: every image was classified correctly", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
        ax.set_axis_off()
    shown = sum(r["count"] for r in rows)
    ax.set_title(title or (f"Top {len(rows)} confused pairs (true \u2192 predicted) of {n_cls:,} classes; "
                           f"{shown:,} of {errors:,} errors in {total:,} images"), fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_per_class_accuracy(
    rows: Sequence[Mapping[str, Any]],
    out_path: str | Path,
    title: str = "Per-class val top-1",
) -> Path:
    """Per-class accuracy (recall) from `utils.metrics.per_class_report` rows.

    Up to 50 classes: one horizontal bar per class, sorted worst first, with the mean drawn.
    More classes: the accuracies sorted against rank (no labels), with the worst and best
    five named in the subtitle.

    Raises:
        ValueError: no rows.
    """
    valid = [r for r in rows if not math.isnan(float(r["accuracy"]))]
    if not rows:
        raise ValueError("no per-class rows to plot")
    valid.sort(key=lambda r: float(r["accuracy"]))
    acc = np.array([float(r["accuracy"]) for r in valid])
    mean = float(acc.mean()) if acc.size else math.nan
    n = len(valid)
    if n <= MAX_HEATMAP_CLASSES:
        fig = _new_figure((8.5, max(3.0, 0.3 * n + 1.5)))
        ax = fig.subplots()
        y = np.arange(n)
        bars = ax.barh(y, acc, color=[("C3" if a < mean else "C0") for a in acc])
        ax.set_yticks(y)
        ax.set_yticklabels([f"{_short(r['name'])} ({r['support']})" for r in valid], fontsize="small")
        ax.invert_yaxis()  # worst class on top
        ax.bar_label(bars, labels=[f"{a:.0f}" for a in acc], fontsize="x-small", padding=2)
        ax.axvline(mean, color="0.3", linestyle="--", linewidth=1, label=f"mean of classes {mean:.1f} %")
        ax.set_xlim(0, 108)
        ax.set_xlabel("top-1 (%) (images of the class in brackets)")
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(True, axis="x", alpha=0.3)
        sub = ""
    else:
        fig = _new_figure((9.0, 4.8))
        ax = fig.subplots()
        ax.plot(np.arange(n), acc, color="C0")
        ax.axhline(mean, color="C1", linestyle="--", linewidth=1, label=f"mean of classes {mean:.1f} %")
        ax.set_xlabel("class rank (worst first)")
        ax.set_ylabel("top-1 (%)")
        ax.set_ylim(0, 102)
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(True, alpha=0.3)
        sub = ("\nworst: " + ", ".join(_short(r["name"], 16) for r in valid[:5])
               + " | best: " + ", ".join(_short(r["name"], 16) for r in valid[-5:]))
    ax.set_title(f"{title} ({n} classes){sub}", fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)


# ---------------------------------------------------------------------------------------------------------------
# LR range test
# ---------------------------------------------------------------------------------------------------------------


def plot_lr_finder(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    out_path: str | Path,
    suggestions: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Loss against learning rate (log axis) of an LR range test, suggestions marked.

    Draws the raw per-step loss (thin, pale) and its smoothed curve (bold); each entry of
    `suggestions` (label -> LR) gets a vertical line and a dot on the smoothed curve. The
    y-axis is cut a little above the first smoothed loss, so a divergent tail does not
    flatten the informative part.

    Args:
        lrs: (N,) learning rates tried, increasing.
        losses, smoothed: (N,) raw and smoothed training loss at each step.
        suggestions: e.g. {"steepest descent": 3e-2, "min loss / 10": 1e-2}.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: empty or unequal-length series.
    """
    x, raw, sm = (np.asarray(v, dtype=np.float64) for v in (lrs, losses, smoothed))
    if x.size == 0 or not (x.size == raw.size == sm.size):
        raise ValueError(f"lrs, losses and smoothed must be non-empty and of equal length, got "
                         f"{x.size}, {raw.size}, {sm.size}")
    fig = _new_figure((8.0, 5.0))
    ax = fig.subplots()
    ax.plot(x, raw, color="C0", alpha=0.3, linewidth=1, label="loss per step")
    ax.plot(x, sm, color="C0", linewidth=2, label="smoothed loss")
    for i, (label, lr) in enumerate((suggestions or {}).items()):
        if lr is None or not math.isfinite(lr):
            continue
        color = ("C3", "C2", "C1", "C4")[i % 4]
        y = float(np.interp(np.log(lr), np.log(x), sm))
        ax.axvline(lr, color=color, linestyle="--", linewidth=1)
        ax.plot([lr], [y], "o", color=color, markersize=8, label=f"{label}: {lr:.2e}")
    ax.set_xscale("log")
    finite = sm[np.isfinite(sm)]
    if finite.size:
        lo = float(finite.min())
        hi = float(finite[: max(1, finite.size // 10)].max())
        span = max(hi - lo, 1e-3)
        ax.set_ylim(lo - 0.1 * span, hi + 0.35 * span)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title or f"LR range test ({x.size} steps, {x[0]:.1e} to {x[-1]:.1e})", fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)


def series_styles(n: int) -> list[tuple[Any, str]]:
    """(colour, marker) for ``n`` lines of one plot: matplotlib's 10 default colours up to 10 lines; beyond, tab20's
    20 colours (pairs of a dark and a light shade, so runs listed in seed pairs share a hue), and after each 20 lines
    another of 4 markers, so no two of up to 80 lines look alike (beyond 80 the styles repeat)."""
    palette: list[Any] = [f"C{i}" for i in range(10)] if n <= 10 else list(matplotlib.colormaps["tab20"].colors)
    return [(palette[i % len(palette)], "os^D"[i // len(palette) % 4]) for i in range(n)]


def plot_time_to_accuracy(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    out_path: str | Path,
    targets: Sequence[float] = (),
    title: str | None = None,
) -> Path:
    """Val top-1 against wall-clock time, one line per run (FFCV's and airbench's way of comparing recipes).

    Args:
        series: label -> (wall times in s from process start, top-1 in % at those times); a run evaluated
            only at its end is one point.
        targets: top-1 levels (%) drawn as dashed horizontal lines.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: no series, or a series whose two sequences differ in length or are empty.
    """
    if not series:
        raise ValueError("plot_time_to_accuracy needs at least one series")
    fig = _new_figure((8.0, 5.0))
    ax = fig.subplots()
    for (label, (times, top1)), (color, marker) in zip(series.items(), series_styles(len(series))):
        t, a = np.asarray(times, dtype=np.float64) / 60, np.asarray(top1, dtype=np.float64)
        if t.size == 0 or t.size != a.size:
            raise ValueError(f"series {label!r}: {t.size} times and {a.size} accuracies")
        ax.plot(t, a, marker=marker, markersize=4 if t.size > 1 else 8, linewidth=1.5, color=color, label=label)
    for level in targets:
        ax.axhline(level, color="0.5", linestyle="--", linewidth=1)
        ax.annotate(f"{level:g} %", (1.0, level), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", fontsize="small", color="0.35")
    ax.set_xlabel("wall-clock time from process start (minutes)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.25)
    ax.legend(loc="lower right", fontsize="small")  # the curves rise to the upper right; early points sit left
    ax.set_title(title or "Time to accuracy", fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)


def plot_noise_study(rows: list[dict[str, Any]], out_path: Path, title: str = "Label-noise study") -> Path:
    """Horizontal bar chart of val top-1 per experiment, colour by cleaning, the clean run as a dashed line; rows
    run with several seeds get their mean, an error bar of half the range and 'n seeds' in the label. The axis
    starts 10 points below the lowest bar (rounded down to 10) so that differences of a few points show. ``rows``
    are :func:`services.noise_study.run_study`'s (description, top1, noise_rate, cleaning, seeds, top1_spread)."""
    seeds = [len(str(r.get("seeds", "")).split()) for r in rows]
    names = [r["description"] + (f" ({n} seeds)" if n > 1 else "") for r, n in zip(rows, seeds)]
    top1 = np.array([r["top1"] for r in rows], dtype=float)
    spread = np.array([r.get("top1_spread", 0.0) if n > 1 else 0.0 for r, n in zip(rows, seeds)], dtype=float)
    colours = ["C2" if r["noise_rate"] == 0 else "C3" if r["cleaning"] == "none" else
               "C0" if r["cleaning"].startswith("cleanlab") else "C1" for r in rows]
    fig = _new_figure((8.0, 0.5 * len(rows) + 1.8))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    bars = ax.barh(y, top1, color=colours, xerr=np.where(np.array(seeds) > 1, spread, np.nan),  # NaN: no bar
                   error_kw={"capsize": 3, "elinewidth": 1})
    ax.bar_label(bars, labels=[f"{v:.1f} %" for v in top1], label_type="center", color="white", fontsize="small",
                 fontweight="bold")
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    if rows and rows[0]["noise_rate"] == 0:
        ax.axvline(top1[0], color="C2", linestyle="--", linewidth=1)
    low = max(0.0, 10 * np.floor((np.nanmin(top1) - 10) / 10)) if top1.size else 0.0
    ax.set_xlim(low, min(100.0, 10 * np.ceil((np.nanmax(top1 + spread) + 3) / 10)) if top1.size else 100)
    ax.set_xlabel("val top-1 (%)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return _save(fig, out_path)
