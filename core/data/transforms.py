"""Image pipelines: the training pipeline (one builder), its crop drawn ahead for reduced-size decoding and the
device cache, the evaluation pipeline, and moving a batch to the device normalised."""

from __future__ import annotations

import functools
from typing import Any, Callable, Union

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from core.config import DataConfig
from core.data.decode import REDUCTIONS
from core.data.rng import sample_generators
from core.preprocessing import PreprocessingSpec


def seed_pipeline(pipeline: Union[A.Compose, "TrainTransform"], seed: int) -> None:
    """Seed an Albumentations pipeline (or :class:`TrainTransform`) for one sample: its transforms get one fresh
    pair of :func:`core.data.rng.sample_generators` (``set_random_state``). The draws are a pure function of
    ``seed``."""
    if isinstance(pipeline, TrainTransform):
        pipeline.set_random_seed(seed)
        return
    pipeline.set_random_state(*sample_generators(seed))


def _crop_flip_jitter(cfg: DataConfig, resolution: int) -> list[Any]:
    """The uint8 part of the training pipeline: RandomResizedCrop, HorizontalFlip, ColorJitter."""
    ops: list[Any] = [A.RandomResizedCrop(size=(resolution, resolution), scale=(cfg.min_scale, 1.0),
                                          interpolation=cv2.INTER_LINEAR)]
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        ops.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
    return ops


def build_train_transform(cfg: DataConfig, resolution: int) -> Union[A.Compose, "TrainTransform"]:
    """The training pipeline for ``resolution`` px: the one builder the loader, reduced-size decoding and the
    device cache all use.

    RandomResizedCrop(resolution, scale=(min_scale, 1)), HorizontalFlip and ColorJitter on the uint8 image, then:

    - with RandAugment/TrivialAugment or random erasing on, a :class:`TrainTransform` (the torchvision policy,
      Normalize and RandomErasing follow);
    - otherwise a plain Albumentations pipeline ending with Normalize(mean, std) + ToTensorV2 → (3, resolution,
      resolution) float32; with ``cfg.normalize_on_device``, the (resolution, resolution, 3) uint8 array itself
      (the dataset makes it a tensor; batches are (B, H, W, 3), which :func:`to_device` turns into normalised
      (B, 3, H, W) float32 on the device).

    RandomResizedCrop with scale (0.08, 1) and ratio (3/4, 4/3) is Szegedy et al. 2015 (Inception), the
    standard ImageNet recipe of torchvision's references.
    """
    if cfg.auto_augment != "none" or cfg.random_erasing > 0:
        return TrainTransform(cfg, resolution)
    tail = [] if cfg.normalize_on_device else [A.Normalize(mean=cfg.mean, std=cfg.std, max_pixel_value=255.0),
                                               ToTensorV2()]
    return A.Compose(_crop_flip_jitter(cfg, resolution) + tail)


def build_eval_crop(cfg: DataConfig, resolution: int) -> A.Compose:
    """The evaluation's geometry alone: uint8 (H, W, 3) → (resolution, resolution, 3) uint8, the short side resized
    to the spec's ``resize_size`` (``round(resolution / val_crop_ratio)``, bilinear), then the centre square. What
    the network sees at evaluation, for display (Grad-CAM, the label review) and dataset statistics."""
    resize = PreprocessingSpec.from_data_config(cfg, resolution).resize_size
    return A.Compose([A.SmallestMaxSize(max_size=resize, interpolation=cv2.INTER_LINEAR),
                      A.CenterCrop(height=resolution, width=resolution)])


def build_eval_transform(cfg: DataConfig, resolution: int) -> A.Compose:
    """Evaluation pipeline: :func:`build_eval_crop`, Normalize, ToTensorV2 → (3, resolution, resolution) float32
    (torchvision's resize-256/crop-224 at 0.875)."""
    return A.Compose([*build_eval_crop(cfg, resolution).transforms,
                      A.Normalize(mean=cfg.mean, std=cfg.std, max_pixel_value=255.0), ToTensorV2()])


class TrainTransform:
    """The training pipeline when a torchvision policy is on: Albumentations crop/flip/jitter on the uint8 image,
    then RandAugment or TrivialAugmentWide (torchvision, on a uint8 (3, H, W) tensor), Normalize, and
    RandomErasing on the normalised tensor (as timm and torchvision's references order them).

    With ``cfg.normalize_on_device`` the output stays uint8, (r, r, 3) like the plain pipeline's, and
    RandomErasing fills with the mean colour rounded to uint8, which Normalize later maps to (about) 0, the value
    the float path fills with.

    torchvision's transforms draw from torch's global RNG; each call runs inside ``torch.random.fork_rng`` seeded
    from :meth:`set_random_seed`, so a sample's augmentation stays a pure function of its seed.

    Call as ``tf(image=hwc_uint8)["image"]`` → (3, r, r) float32 ((r, r, 3) uint8 with ``normalize_on_device``),
    like an Albumentations pipeline.
    """

    def __init__(self, cfg: DataConfig, resolution: int):
        from torchvision.transforms import v2

        self.geometric = A.Compose(_crop_flip_jitter(cfg, resolution))
        if cfg.auto_augment == "randaugment":
            self.policy = v2.RandAugment(cfg.randaugment_num_ops, cfg.randaugment_magnitude)
        elif cfg.auto_augment == "trivialaugment":
            self.policy = v2.TrivialAugmentWide()
        else:
            self.policy = None
        self.normalize = not cfg.normalize_on_device
        self.mean = torch.tensor(cfg.mean).view(3, 1, 1) * 255
        self.std = torch.tensor(cfg.std).view(3, 1, 1) * 255
        # value 0 on a normalised image = the dataset mean colour
        fill: Any = 0 if self.normalize else [round(255 * m) for m in cfg.mean]
        self.erase = v2.RandomErasing(p=cfg.random_erasing, value=fill) if cfg.random_erasing > 0 else None
        self._seed = 0

    def set_random_seed(self, seed: int) -> None:
        seed_pipeline(self.geometric, seed)
        self._seed = seed

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return self.finish(self.geometric(image=image)["image"])

    def finish(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """The steps after the Albumentations part, on its (r, r, 3) uint8 output."""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seed)
            if self.policy is not None:
                x = self.policy(x)  # uint8 in, uint8 out
            if self.normalize:
                x = (x.float() - self.mean) / self.std
            if self.erase is not None:
                x = self.erase(x)
        return {"image": x.contiguous() if self.normalize else x.permute(1, 2, 0).contiguous()}


def crop_with_reduced_decode(pipeline: Union[A.Compose, TrainTransform], seed: int, shape: tuple[int, int],
                             read: Callable[[int], np.ndarray]) -> torch.Tensor:
    """Run a training pipeline whose first step is ``A.RandomResizedCrop``, decoding the image at the smallest
    DCT scale (1/8, 1/4, 1/2 or 1) that still holds its crop at the output size or more.

    The crop box is drawn from the header ``shape`` with the same generator calls, in the same order, as the
    pipeline itself makes on the full image (Compose's own draw, then the crop's), so the crop, flip and jitter
    are the ones the full decode gets; the box is mapped onto the reduced image with an exact affine warp
    (bilinear, as the crop's resize). Only the pixels differ, by the DCT down-scaling (tested within tolerance).
    FFCV and DALI decode at reduced size for the same reason: at 128 px most ImageNet crops need no full decode.

    Args:
        pipeline: from :func:`build_train_transform`; it is seeded here with ``seed``.
        shape: (height, width) of the full image, from :func:`image_shape`.
        read: reduction (1, 2, 4 or 8) → decoded (h, w, 3) uint8 RGB array.

    Returns:
        what the pipeline returns: (3, r, r) float32, or (r, r, 3) uint8 with ``normalize_on_device``.
    """
    compose = pipeline.geometric if isinstance(pipeline, TrainTransform) else pipeline
    seed_pipeline(pipeline, seed)
    crop, rest = compose.transforms[0], compose.transforms[1:]
    x_min, y_min, x_max, y_max = _draw_crop(compose, shape)
    out_h, out_w = crop.size
    reduction = next((f for f in REDUCTIONS if x_max - x_min >= f * out_w and y_max - y_min >= f * out_h), 1)
    image = read(reduction)
    if image.shape[:2] == tuple(shape[:2]):  # decoded whole: exactly what the pipeline itself does
        cropped = crop.apply(image, crop_coords=(x_min, y_min, x_max, y_max))
    else:
        sy, sx = image.shape[0] / shape[0], image.shape[1] / shape[1]
        # output pixel (u, v) samples full-image point x_min + (u + 0.5) * crop_w / out_w - 0.5 (cv2.resize's
        # half-pixel centres), which lies at (x + 0.5) * sx - 0.5 on the reduced image
        ax, ay = (x_max - x_min) / out_w * sx, (y_max - y_min) / out_h * sy
        m = np.array([[ax, 0.0, (x_min + 0.5 * (x_max - x_min) / out_w) * sx - 0.5],
                      [0.0, ay, (y_min + 0.5 * (y_max - y_min) / out_h) * sy - 0.5]])
        cropped = cv2.warpAffine(image, m, (out_w, out_h), flags=crop.interpolation | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    data = {"image": cropped}
    for t in rest:  # each transform on its own: a nested Compose would add its own draw
        data = t(**data)
    return pipeline.finish(data["image"])["image"] if isinstance(pipeline, TrainTransform) else data["image"]


def _draw_crop(compose: A.Compose, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    # the generator calls Compose.__call__ makes up to and including RandomResizedCrop's box, in that order
    crop = compose.transforms[0]
    if not isinstance(crop, A.RandomResizedCrop):
        raise TypeError(f"the pipeline must start with RandomResizedCrop, not {type(crop).__name__}")
    compose.py_random.random()  # Compose.__call__ draws once (its own p) before running its transforms
    crop.should_apply()
    return tuple(crop.get_params_dependent_on_data({"shape": shape}, {})["crop_coords"])


def draw_crop_and_flip(pipeline: A.Compose, seed: int, shape: tuple[int, int]
                       ) -> tuple[tuple[int, int, int, int], bool]:
    """The RandomResizedCrop box (x_min, y_min, x_max, y_max) in pixels and the flip decision that the plain
    pipeline of :func:`build_train_transform` draws for ``seed`` on an image of ``shape`` (height, width), without
    touching pixels: the same generator calls in the same order as running the pipeline.

    Raises:
        TypeError: the pipeline does not start with RandomResizedCrop (optionally followed by HorizontalFlip).
    """
    seed_pipeline(pipeline, seed)
    box = _draw_crop(pipeline, shape)
    flip = pipeline.transforms[1] if len(pipeline.transforms) > 1 else None
    if not isinstance(flip, A.HorizontalFlip):
        return box, False
    return box, bool(flip.should_apply())


def to_device(images: torch.Tensor, device: torch.device, mean: tuple[float, float, float],
              std: tuple[float, float, float], memory_format: torch.memory_format = torch.preserve_format
              ) -> torch.Tensor:
    """A batch from a loader → normalised (B, 3, H, W) float32 on ``device``.

    Args:
        images: (B, 3, H, W) float32 (already normalised: only moved), or (B, H, W, 3) uint8 (``normalize_on_device``:
            copied as uint8, 4x fewer bytes, then ``(x - 255 * mean) / (255 * std)`` on the device).
        mean, std: per-channel statistics of [0, 1] pixels.
        memory_format: of the result; ``preserve_format`` means contiguous (B, 3, H, W).

    Raises:
        ValueError: a uint8 batch that is not (B, H, W, 3).
    """
    fmt = torch.contiguous_format if memory_format == torch.preserve_format else memory_format
    images = images.to(device, non_blocking=True)
    if images.dtype != torch.uint8:
        return images.contiguous(memory_format=fmt)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"a uint8 batch must be (B, H, W, 3), got {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=fmt)
    m, s = scaled_mean_std(images.device, tuple(mean), tuple(std))
    return x.sub_(m).div_(s)


@functools.lru_cache(maxsize=16)
def scaled_mean_std(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 1, 1) float32 ``255 * mean`` and ``255 * std`` on ``device``, made once per device: a fresh small
    tensor per batch would be a blocking host-to-GPU copy every step."""
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
            torch.tensor(std, device=device).view(1, 3, 1, 1) * 255)
