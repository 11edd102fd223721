"""Evaluation: one forward loop over a loader (``predict``), and the loss/top-k summary built on it (``evaluate``)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import torch
import torch.nn as nn

from core.logger import progress_bar
from utils.metrics import topk_correct


def _move(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device, non_blocking=True)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: Optional[torch.device] = None,
            amp_dtype: Optional[torch.dtype] = None, hflip: bool = False,
            prepare: Optional[Callable[[torch.Tensor, torch.device], torch.Tensor]] = None,
            progress: bool = False, desc: str = "evaluating") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(logits, targets)`` per batch of ``loader``, in loader order, with ``model`` in eval mode under
    ``no_grad`` and autocast; the model's train/eval mode is put back when the loop ends (or is closed).

    The one evaluation forward loop of the project: the trainer's validation, label-issue scoring and the
    Grad-CAM analysis all go through it.

    Args:
        model: the classifier, on ``device``.
        loader: yields (images, targets (B,) int64).
        device: where the batches go (default: the device of the model's first parameter).
        amp_dtype: autocast dtype (None = fp32), as from :func:`core.step.resolve_amp`.
        hflip: average the logits of each image and its mirror image (FFCV's ``lr_tta``).
        prepare: ``(images, device) -> (B, 3, H, W) float`` on ``device``, e.g. a data manager's ``to_device``
            with the run's memory format; default: only moved.
        progress: a bar (titled ``desc``) over the batches.

    Yields:
        logits (B, C) float32 and targets (B,) int64, both on ``device``.
    """
    device = device if device is not None else next(model.parameters()).device
    prepare = prepare or _move
    was_training = model.training
    model.eval()
    try:
        for images, targets in progress_bar(loader, desc=desc, enabled=progress, unit="batch"):
            images = prepare(images, device)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                logits = model(images).float()
                if hflip:  # (B, C) logits of the mirror images, averaged in
                    logits = (logits + model(images.flip(3)).float()) / 2
            yield logits, targets
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, amp_dtype: Optional[torch.dtype] = None,
             hflip: bool = False, prepare: Optional[Callable[[torch.Tensor, torch.device], torch.Tensor]] = None,
             progress: bool = False, desc: str = "evaluating") -> dict[str, float]:
    """Mean cross-entropy (without label smoothing), top-1 and top-5 (%) of ``model`` over ``loader``; summed
    over all processes when a process group is initialised (each rank passes its own shard).

    Args: as :func:`predict`.

    Returns:
        {"loss", "top1", "top5"}; top-5 is top-min(5, C). An empty loader gives 0 for all three.
    """
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1, top-5, count
    for logits, targets in predict(model, loader, device, amp_dtype, hflip, prepare, progress, desc):
        totals[0] += nn.functional.cross_entropy(logits, targets, reduction="sum").double()
        totals[1:3] += topk_correct(logits, targets, (1, 5)).double()
        totals[3] += targets.shape[0]
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(totals)
    n = max(totals[3].item(), 1.0)
    return {"loss": totals[0].item() / n, "top1": 100 * totals[1].item() / n, "top5": 100 * totals[2].item() / n}
