"""Loaders: picks the DataLoader over decoded files or the device-cached loader, for training and validation."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch.utils.data import DataLoader

from core.config import DataConfig
from core.data.dataset import worker_init
from core.data.device_cache import DeviceCachedLoader, device_cached_loader
from core.data.sampler import EpochSampler
from core.schedules import resolution_at


def loader_kwargs(cfg: DataConfig) -> dict[str, Any]:
    """DataLoader settings from ``--data``: workers, pinned memory (CUDA only), persistent workers, prefetching."""
    kw: dict[str, Any] = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory and torch.cuda.is_available()}
    if cfg.num_workers > 0:
        kw.update(persistent_workers=cfg.persistent_workers, prefetch_factor=cfg.prefetch_factor,
                  worker_init_fn=worker_init)
    return kw


def train_loader(data: Any, batch_size: int, grad_accum_steps: int = 1,
                 resolution_fn: Optional[Callable[[int], int]] = None, num_replicas: int = 1, rank: int = 0,
                 device: Optional[torch.device] = None) -> Union[DataLoader, DeviceCachedLoader]:
    """A loader over the training subset of ``data`` (a :class:`core.data.manager.ImageNetDataManager`) driven by
    an :class:`EpochSampler` (``loader.sampler``): call ``loader.sampler.set_epoch(epoch, start_micro_batch)``
    before iterating each epoch.

    Yields (images (B, 3, r, r) float32, or (B, r, r, 3) uint8 with ``normalize_on_device``; pass them
    through the manager's ``to_device``), labels (B,) int64). With ``--data.device_cache`` it is a
    :class:`DeviceCachedLoader` whose images are already normalised on ``device`` (default CPU), its cache built on
    first use. ``resolution_fn``: epoch → crop side (px), default :func:`core.schedules.resolution_at`.
    """
    resolution_fn = resolution_fn or (lambda epoch: resolution_at(epoch, data.cfg))
    if data.cfg.device_cache:
        return device_cached_loader(data, batch_size, grad_accum_steps, resolution_fn, num_replicas, rank, device)
    sampler = EpochSampler(len(data.train_ids), batch_size, grad_accum_steps, data.seed, resolution_fn,
                           num_replicas, rank)
    return DataLoader(data.train_dataset(), batch_size=batch_size, sampler=sampler, drop_last=True,
                      **loader_kwargs(data.cfg))


def val_loader(data: Any, batch_size: int, num_replicas: int = 1, rank: int = 0) -> DataLoader:
    """A loader over the validation subset of ``data`` (a :class:`core.data.manager.ImageNetDataManager`) in fixed
    order; under DDP each rank takes every ``num_replicas``-th sample (no padding, so no sample is counted twice).

    Yields (images (B, 3, r, r) float32, labels (B,) int64).
    """
    ds = data.val_dataset()
    indices = list(range(rank, len(ds), num_replicas))
    return DataLoader(torch.utils.data.Subset(ds, indices), batch_size=batch_size, shuffle=False,
                      **loader_kwargs(data.cfg))
