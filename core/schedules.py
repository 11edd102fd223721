"""Schedules as small pure functions of the step or epoch, side by side as FFCV keeps them: LR and resolution."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.config import DataConfig, TrainingConfig


def lr_at(step: int, cfg: TrainingConfig, steps_per_epoch: int, world_size: int = 1) -> float:
    """Learning rate of optimizer step ``step`` (0-based) for the 'cosine', 'linear' and 'step' schedules.

    Linear warmup from peak/warmup_steps to the peak LR (``cfg.peak_lr(world_size)``) over ``warmup_epochs``
    (Goyal et al. 2017), then cosine decay to ``min_lr`` at the last step (Loshchilov & Hutter 2017, SGDR
    without restarts), linear decay to ``min_lr`` (FFCV's ``get_cyclic_lr``, the triangular schedule of its
    ImageNet recipes), or a x``step_gamma`` decay every ``step_epochs`` (He et al. 2016). 'onecycle' uses
    torch's OneCycleLR instead.
    """
    peak = cfg.peak_lr(world_size)
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.scheduler == "step":
        return peak * cfg.step_gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if cfg.scheduler == "linear":
        return peak + (cfg.min_lr - peak) * progress
    return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, steps_per_epoch: int,
                    world_size: int = 1):
    """A scheduler stepped once per optimizer step (after ``optimizer.step()``); the optimizer's LR must be
    ``cfg.peak_lr(world_size)``."""
    peak = cfg.peak_lr(world_size)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, total_steps=cfg.epochs * steps_per_epoch,
            pct_start=max(cfg.warmup_epochs / cfg.epochs, 0.3) if cfg.warmup_epochs else 0.3,
            cycle_momentum=cfg.optimizer == "sgd" and cfg.momentum > 0)

    def factor(step: int) -> float:  # a plain function: LambdaLR then keeps no state for it in state_dict()
        return lr_at(step, cfg, steps_per_epoch, world_size) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resolution_at(epoch: int, cfg: DataConfig) -> int:
    """Training crop side (px) of 0-based ``epoch``.

    Without progressive resizing: ``image_size``. With it: ``start_image_size`` until ``ramp_start_epoch``, a
    linear ramp to ``image_size`` at ``ramp_end_epoch``, rounded to a multiple of ``resolution_step`` (FFCV's
    ``get_resolution``, which rounds to 32 px).
    """
    if not cfg.progressive_resizing:
        return cfg.image_size
    lo, hi = cfg.start_image_size, cfg.image_size
    if cfg.ramp_end_epoch == cfg.ramp_start_epoch:
        res = hi if epoch >= cfg.ramp_end_epoch else lo
    else:
        res = float(np.interp(epoch, [cfg.ramp_start_epoch, cfg.ramp_end_epoch], [lo, hi]))
    step = cfg.resolution_step
    return max(step, int(round(res / step)) * step)
