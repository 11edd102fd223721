"""PNG image grids (headless, Agg): sample images with true/predicted names, and augmentation previews."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from utils.figures import first_synonym, new_figure, save_figure

__all__ = ["denormalize", "plot_augmentation_preview", "plot_sample_predictions"]


def denormalize(
    image: torch.Tensor | np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """Undo Normalize for viewing: (3, H, W) float (normalised) -> (H, W, 3) uint8 RGB.

    Computes clip((x * std + mean) * 255, 0, 255) per channel, so colour jitter that pushed
    pixels outside [0, 1] is clipped as a screen would show it.

    Raises:
        ValueError: not a (3, H, W) array.
    """
    x = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) normalised image, got shape {x.shape}")
    x = x * np.asarray(std, np.float32)[:, None, None] + np.asarray(mean, np.float32)[:, None, None]
    return np.clip(np.rint(x.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def _as_uint8_hwc(image: torch.Tensor | np.ndarray, mean: Sequence[float] | None,
                  std: Sequence[float] | None) -> np.ndarray:
    if isinstance(image, torch.Tensor) or (np.asarray(image).ndim == 3 and np.asarray(image).shape[0] == 3
                                           and np.asarray(image).dtype != np.uint8):
        if mean is None or std is None:
            raise ValueError("normalised (3, H, W) images need `mean` and `std` to be shown")
        return denormalize(image, mean, std)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB or a normalised (3, H, W) tensor, got "
                         f"{arr.shape} {arr.dtype}")
    return arr


def plot_sample_predictions(
    images: Sequence[torch.Tensor | np.ndarray],
    true_names: Sequence[str],
    out_path: str | Path,
    pred_names: Sequence[str] | None = None,
    confidences: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    ncols: int = 6,
    title: str | None = None,
    captions: Sequence[str] | None = None,
) -> Path:
    """A grid of images captioned with the true name and, when given, the predicted name and
    its softmax confidence; right predictions in green, wrong ones in red.

    Without `pred_names` it is a plain labelled sample grid (data exploration).

    Args:
        images: N images, each (H, W, 3) uint8 RGB or a normalised (3, H, W) tensor (then
            `mean`/`std` are needed to undo Normalize).
        true_names, pred_names: N class names each.
        confidences: N probabilities in [0, 1] of the predicted class.
        ncols: images per row.
        captions: N texts replacing the generated captions (the colour still says right or wrong).

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: no images, or lists of different lengths.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    for label, seq in (("true_names", true_names), ("pred_names", pred_names), ("confidences", confidences),
                       ("captions", captions)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{label} has {len(seq)} entries for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure((2.3 * ncols, 2.85 * nrows + (0.4 if title else 0.0)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(_as_uint8_hwc(images[i], mean, std), interpolation="bilinear")
        lines = [f"true: {first_synonym(true_names[i], 22)}"]
        color = "black"
        if pred_names is not None:
            conf = f" ({100 * confidences[i]:.0f} %)" if confidences is not None else ""
            lines.append(f"pred: {first_synonym(pred_names[i], 18)}{conf}")
            color = "#1a7f37" if pred_names[i] == true_names[i] else "#cf222e"
        if captions is not None:
            lines = [captions[i]]
        ax.set_title("\n".join(lines), fontsize="small", color=color, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_path)


def plot_augmentation_preview(
    originals: Sequence[np.ndarray],
    augmented: Sequence[Sequence[torch.Tensor | np.ndarray]],
    out_path: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    row_titles: Sequence[str] | None = None,
    title: str = "Training augmentation",
) -> Path:
    """One row per image: the original beside several augmented versions, de-normalised.

    Args:
        originals: R images, (H, W, 3) uint8 RGB as decoded (any size; shown as is).
        augmented: R lists of the training pipeline's outputs, normalised (3, r, r) tensors.
        mean, std: the Normalize statistics of the pipeline (`cfg.data.mean` / `cfg.data.std`).
        row_titles: R labels (e.g. class names) written over the originals.

    Returns:
        `out_path` as a Path.

    Raises:
        ValueError: no rows, rows of different lengths, or `row_titles` of the wrong length.
    """
    if not originals or len(originals) != len(augmented):
        raise ValueError(f"need one list of augmented images per original, got {len(originals)} originals and "
                         f"{len(augmented)} lists")
    k = len(augmented[0])
    if k == 0 or any(len(a) != k for a in augmented):
        raise ValueError("every original needs the same, non-zero number of augmented versions")
    if row_titles is not None and len(row_titles) != len(originals):
        raise ValueError(f"{len(row_titles)} row titles for {len(originals)} rows")
    rows = len(originals)
    fig = new_figure((2.1 * (k + 1) + 0.3, 2.25 * rows + 0.5))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    for r in range(rows):
        ax = axes[r, 0]
        ax.imshow(_as_uint8_hwc(originals[r], None, None))
        h, w = np.asarray(originals[r]).shape[:2]
        ax.set_title(f"original {w}x{h}", fontsize="small", fontweight="bold")
        if row_titles is not None:
            ax.set_ylabel(first_synonym(row_titles[r], 20), fontsize="medium", fontweight="bold")
        for j, aug in enumerate(augmented[r]):
            img = _as_uint8_hwc(aug, mean, std)
            axes[r, j + 1].imshow(img, interpolation="nearest")
            axes[r, j + 1].set_title(f"augmented {j + 1} ({img.shape[1]} px)", fontsize="small")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_path)
