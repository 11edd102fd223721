"""A training set held on the training device as uint8, with RandomResizedCrop and flip done there, in batches.

For subsets that fit in device memory (phase 1's 20 % of ILSVRC2012 at 128 px is 256,233 x 128 x 128 x 3 bytes =
12.6 GB) every image is decoded once, resized and stored; afterwards an epoch reads no file and decodes no JPEG.
The DataLoader workers only draw crop boxes (a few numbers per image); the main process gathers the images on the
device and crops, resizes and flips the whole batch with ``torchvision.ops.roi_align``. FFCV and DALI remove the
loader bottleneck the same way (decoded or device-resident data, augmentation in batches).

What is cached: each training image resized so its short side is ``S = --data.device_cache_size`` (area
interpolation), then centre-cropped to S x S. RandomResizedCrop draws its box on that S x S image with the same
generator calls as the plain pipeline (:func:`core.data.transforms.draw_crop_and_flip`), and the bilinear resize of
``roi_align(aligned=True, sampling_ratio=1)`` samples the same points as ``cv2.resize``; so for the same seeds the
batches equal the plain pipeline's on the cached images, within float rounding (tested). The difference from the
plain path is the centre square: the parts of a non-square photo outside it are never seen.

Only RandomResizedCrop and the horizontal flip run on the device: colour jitter, RandAugment/TrivialAugment, random
erasing and reduced-size decoding are refused with a clear error (config validation).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Optional

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.config import DataConfig
from core.data.dataset import ImageClassificationDataset, worker_init
from core.data.rng import sample_seed
from core.data.sampler import EpochSampler
from core.data.transforms import build_train_transform, draw_crop_and_flip, scaled_mean_std
from core.logger import progress_bar

log = logging.getLogger(__name__)


def cache_side(cfg: DataConfig) -> int:
    """S, the side (px) of the cached squares: ``device_cache_size``, or 0 → the largest training crop side."""
    if cfg.device_cache_size > 0:
        return cfg.device_cache_size
    return max(cfg.image_size, cfg.start_image_size if cfg.progressive_resizing else 0)


def cache_transform(side: int) -> A.Compose:
    """Short side → ``side`` (area interpolation, as FFCV resizes), centre crop ``side`` x ``side`` → uint8 array."""
    return A.Compose([A.SmallestMaxSize(max_size=side, interpolation=cv2.INTER_AREA),
                      A.CenterCrop(height=side, width=side)])


def build_device_cache(data: Any, device: torch.device, side: int,
                       batch_size: int = 256) -> torch.Tensor:
    """Decode every image of the training subset of ``data`` (a :class:`core.data.manager.ImageNetDataManager`)
    once into an (N, side, side, 3) uint8 tensor on ``device``.

    Decoding runs in ``--data.num_workers`` workers with the usual corrupt-image handling (a bad file is replaced
    by another image of its class and listed). Position i of the result is position i of the training subset.
    A progress bar counts the images unless ``data.progress`` is off (``--logging.progress_bar false``).

    Raises:
        RuntimeError: not enough free device memory, naming the size needed and the ways out.
    """
    n = len(data.train_ids)
    need = n * side * side * 3
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need > 0.8 * free:
            raise RuntimeError(
                f"--data.device_cache needs {need / 2**30:.1f} GiB for {n:,} images at {side} px but only "
                f"{free / 2**30:.1f} GiB of {device} is free (80 % of it may be used); lower "
                f"--data.device_cache_size, train on a smaller --data.fraction, or set --data.device_cache false")
    ds = ImageClassificationDataset(data.train_reader, data.train_ids, data.train_labels,
                                    lambda _r: cache_transform(side), side, data.seed, data.bad_images_file)
    workers = data.cfg.num_workers
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=worker_init if workers else None)
    cache = torch.empty((n, side, side, 3), dtype=torch.uint8, device=device)
    log.info("decoding %d training images into a %.2f GiB uint8 cache on %s (%d px squares)", n, need / 2**30,
             device, side)
    start = 0
    with progress_bar(total=n, desc=f"device cache ({side} px)", enabled=data.progress, unit="img") as bar:
        for images, _ in loader:
            cache[start:start + images.shape[0]].copy_(images, non_blocking=True)
            start += images.shape[0]
            bar.update(images.shape[0])
    return cache


class CropParams(Dataset):
    """Key ``(position, epoch, resolution)`` → (int64 [position, x_min, y_min, x_max, y_max, flip, resolution],
    label): the crop box and flip the plain pipeline would draw for this sample on an S x S image."""

    def __init__(self, cfg: DataConfig, labels: np.ndarray, side: int, seed: int):
        self.cfg, self.labels, self.side, self.seed = cfg, labels, side, seed
        self._pipelines: dict[int, A.Compose] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        position, epoch, resolution = key
        if resolution not in self._pipelines:
            self._pipelines[resolution] = build_train_transform(self.cfg, resolution)
        box, flip = draw_crop_and_flip(self._pipelines[resolution], sample_seed(self.seed, epoch, position),
                                       (self.side, self.side))
        return torch.tensor([position, *box, int(flip), resolution]), int(self.labels[position])


def crop_flip_normalize(cache: torch.Tensor, params: torch.Tensor, resolution: int, mean: tuple[float, ...],
                        std: tuple[float, ...], memory_format: torch.memory_format = torch.contiguous_format
                        ) -> torch.Tensor:
    """RandomResizedCrop + flip + Normalize of a batch, on the cache's device.

    Args:
        cache: (N, S, S, 3) uint8.
        params: (B, 7) int64 rows from :class:`CropParams`, on the cache's device.
        resolution: output side r (px).
        mean, std: per-channel statistics of [0, 1] pixels.

    Returns:
        (B, 3, r, r) float32, normalised.
    """
    from torchvision.ops import roi_align

    images = cache[params[:, 0]].permute(0, 3, 1, 2).to(torch.float32, memory_format=memory_format)
    b = params.shape[0]
    boxes = torch.cat([torch.arange(b, device=cache.device, dtype=torch.float32)[:, None],
                       params[:, 1:5].to(torch.float32)], dim=1)
    # aligned=True, one sample per output pixel: the points cv2.resize(INTER_LINEAR) samples on the crop
    out = roi_align(images, boxes, output_size=(resolution, resolution), spatial_scale=1.0, sampling_ratio=1,
                    aligned=True)
    out = torch.where(params[:, 5].bool()[:, None, None, None], out.flip(-1), out)
    m, s = scaled_mean_std(cache.device, tuple(mean), tuple(std))
    return out.sub_(m).div_(s).contiguous(memory_format=memory_format)


class DeviceCachedLoader:
    """Drop-in for the DataLoader of :func:`core.data.loaders.train_loader` when ``--data.device_cache`` is on.

    Iterating yields (images (B, 3, r, r) float32, normalised, on the cache's device; labels (B,) int64), one
    micro-batch per :class:`EpochSampler` block, so shuffling, resume mid-epoch and DDP sharding are those of the
    plain loader. ``sampler`` is that sampler.
    """

    def __init__(self, cache: torch.Tensor, params_loader: DataLoader, mean: tuple[float, ...],
                 std: tuple[float, ...]):
        self.cache, self.params_loader, self.mean, self.std = cache, params_loader, mean, std
        self.sampler: EpochSampler = params_loader.sampler

    def __len__(self) -> int:
        return len(self.params_loader)

    @property
    def _iterator(self) -> Any:  # ImageNetTrainer.close shuts the workers down through this
        return getattr(self.params_loader, "_iterator", None)

    @_iterator.setter
    def _iterator(self, value: Any) -> None:
        self.params_loader._iterator = value

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for params, labels in self.params_loader:
            resolution = int(params[0, 6])
            params = params.to(self.cache.device, non_blocking=True)
            yield crop_flip_normalize(self.cache, params, resolution, self.mean, self.std), labels


def device_cached_loader(data: Any, batch_size: int, grad_accum_steps: int,
                         resolution_fn: Callable[[int], int], num_replicas: int, rank: int,
                         device: Optional[torch.device]) -> DeviceCachedLoader:
    """Build (or reuse: one per manager, device, side and subset, kept by ``data.device_cache``) the cache of
    ``data`` (a :class:`core.data.manager.ImageNetDataManager`), then the loader over it."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    side = cache_side(data.cfg)
    key = (str(device), side, hash(data.train_ids.tobytes()))
    cache = data.device_cache(key, lambda: build_device_cache(data, device, side))
    sampler = EpochSampler(len(data.train_ids), batch_size, grad_accum_steps, data.seed, resolution_fn,
                           num_replicas, rank)
    params = CropParams(data.cfg, data.train_labels, side, data.seed)
    workers = min(data.cfg.num_workers, 2)  # a few Python draws per image: two workers keep far ahead
    kw: dict[str, Any] = {"num_workers": workers}
    if workers:
        kw.update(persistent_workers=data.cfg.persistent_workers, prefetch_factor=max(4, data.cfg.prefetch_factor),
                  worker_init_fn=worker_init)
    loader = DataLoader(params, batch_size=batch_size, sampler=sampler, drop_last=True, **kw)
    return DeviceCachedLoader(cache, loader, tuple(data.cfg.mean), tuple(data.cfg.std))
