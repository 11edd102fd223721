"""ImageNet-style data: file indexes, class mapping, stratified subsets, Albumentations pipelines and loaders."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from core.config import BUNDLED_SAMPLE_ROOT, DataConfig
from core.label_noise import ManifestReport, apply_manifest, read_manifest
from core.logger import progress_bar
from core.prepare import (read_class_names, reorganize_tiny_imagenet_val, short_class_names,  # noqa: F401
                          sort_imagenet_val)

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File suffixes read as images (torchvision's ImageFolder list), compared case-insensitively."""

INDEX_FORMAT_VERSION = 1

# OpenCV's own thread pool does not survive fork(): a DataLoader worker forked after the pool has run hangs in
# its first parallel call (or in cv2.setNumThreads). Parallelism comes from the workers, so the pool is turned off
# here, in the parent, before any worker exists (the setting Albumentations recommends for PyTorch loaders).
cv2.setNumThreads(0)
MAX_REPLACEMENT_TRIES = 16


# ----------------------------------------------------------------------------------------------------------------
# File index of one split: classes, relative paths and labels, cached so a 1.28M-image tree is scanned once.
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class SplitIndex:
    """The sorted sample list of one split.

    Attributes:
        classes: class identifiers in index order (WNIDs for ImageNet folders), sorted.
        labels: (N,) int64 class index of every sample. Sample id i is the i-th entry of the list sorted by
            (class, relative path): stable across machines and runs.
        relpaths: (N,) fixed-width bytes (``os.fsencode``) paths relative to the split folder, or None for
            Hugging Face sources. Fixed-width NumPy bytes, not a Python list: 1.28M Python strings would be
            copied page by page into every forked worker as their refcounts change.
    """

    classes: list[str]
    labels: np.ndarray
    relpaths: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet-imagenet"


def _folder_fingerprint(split_dir: Path, class_dirs: list[os.DirEntry]) -> str:
    # Adding or removing a file changes its parent folder's mtime; one stat per class folder (1,000 for
    # ImageNet) detects a changed tree without listing 1.28M files. Changes in nested sub-folders
    # (Tiny ImageNet's train/<wnid>/images/) are caught through those folders' own mtimes.
    h = hashlib.sha1(f"v{INDEX_FORMAT_VERSION}|{split_dir.resolve()}".encode())
    for entry in class_dirs:
        h.update(f"{entry.name}:{entry.stat().st_mtime_ns};".encode())
        for sub in os.scandir(entry.path):
            if sub.is_dir():
                h.update(f"{sub.name}:{sub.stat().st_mtime_ns};".encode())
    return h.hexdigest()


def scan_image_folder(split_dir: Path, cache_dir: Optional[Path] = None, progress: bool = True) -> SplitIndex:
    """Index ``split_dir/<class>/**/<image>`` without opening any image, caching the result.

    Classes are the sorted sub-folder names; files within a class are sorted by relative path. The index is
    cached as ``<cache_dir>/index-<hash>.npz`` and reused while no class folder changed. ``progress``: a bar over
    the class folders while scanning (a first scan of ILSVRC2012's 1.28M files takes minutes on a network disk).

    Raises:
        FileNotFoundError: ``split_dir`` does not exist, has no class folders, or a class folder has no images.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split folder not found: {split_dir} (expected <root>/<split>/<wnid>/<image>; "
                                f"set --data.root and --data.train_split/--data.val_split)")
    class_dirs = sorted((e for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")),
                        key=lambda e: e.name)
    if not class_dirs:
        hint = ""
        if any(p.suffix.lower() in IMG_EXTENSIONS for p in list(split_dir.iterdir())[:50]):
            hint = (" It holds images directly: an ILSVRC2012 val folder must be sorted first "
                    "(python -m core.prepare sort-val VAL_DIR LABELS_FILE).")
        raise FileNotFoundError(f"no class folders in {split_dir}.{hint}")
    fingerprint = _folder_fingerprint(split_dir, class_dirs)
    cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    cache_file = cache_dir / f"index-{hashlib.sha1(str(split_dir.resolve()).encode()).hexdigest()[:16]}.npz"
    if cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fingerprint:
                    return SplitIndex(classes=[str(c) for c in z["classes"]], labels=z["labels"],
                                      relpaths=z["relpaths"])
        except (OSError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable index cache %s (%s)", cache_file, e)

    classes, relpaths, counts = [], [], []
    for entry in progress_bar(class_dirs, desc=f"indexing {split_dir.name}", enabled=progress, unit="class"):
        files = []
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, split_dir)
            files.extend(os.path.join(rel_dir, f) for f in filenames if f.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"class folder {entry.path} holds no images ({', '.join(IMG_EXTENSIONS)}); "
                                    f"remove it or add its images")
        files.sort()
        classes.append(entry.name)
        relpaths.extend(files)
        counts.append(len(files))
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
    index = SplitIndex(classes=classes, labels=labels, relpaths=np.array([os.fsencode(p) for p in relpaths]))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")  # DDP ranks may write the same cache at once
        np.savez(tmp, fingerprint=np.array(fingerprint), classes=np.array(classes), labels=labels,
                 relpaths=index.relpaths)
        os.replace(tmp, cache_file)
    except OSError as e:  # a read-only home is not a reason to stop training
        log.warning("could not cache the file index in %s (%s); set --data.index_cache_dir", cache_dir, e)
    log.info("indexed %s: %d images in %d classes", split_dir, len(index), len(classes))
    return index


# ----------------------------------------------------------------------------------------------------------------
# Label operations: vectorised NumPy over the label array, no image decoded.
# ----------------------------------------------------------------------------------------------------------------

def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified random subset: ``max(1, round(fraction * n_c))`` samples of every class c.

    Vectorised (one permutation, one stable sort): 1,281,167 labels take well under a second.

    Args:
        labels: (N,) int class labels.
        fraction: share of every class kept, in (0, 1].
        seed: seed of the draw.

    Returns:
        (M,) int64 sorted indices into ``labels``.

    Raises:
        ValueError: fraction outside (0, 1] or negative labels.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    if labels.min() < 0:
        raise ValueError("labels must be >= 0")
    if fraction == 1:
        return np.arange(labels.size, dtype=np.int64)
    counts = np.bincount(labels)
    keep = np.where(counts > 0, np.maximum(1, np.rint(counts * fraction)), 0).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(labels.size)
    order = perm[np.argsort(labels[perm], kind="stable")]  # grouped by class, random within class
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_in_class = np.arange(labels.size) - starts[labels[order]]
    return np.sort(order[rank_in_class < keep[labels[order]]]).astype(np.int64)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes,) int64 number of samples of each class."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.int64)


def _cached_subset(labels: np.ndarray, fraction: float, seed: int, cache_dir: Path, tag: str) -> np.ndarray:
    """:func:`stratified_subset`, cached to ``cache_dir`` keyed by the labels, fraction and seed."""
    if fraction == 1:
        return np.arange(labels.size, dtype=np.int64)
    key = hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    key.update(f"|{fraction!r}|{seed}|{tag}".encode())
    path = Path(cache_dir) / f"subset-{key.hexdigest()[:16]}.npy"
    if path.is_file():
        idx = np.load(path, allow_pickle=False)
        log.info("reusing cached stratified subset %s (%d images)", path, idx.size)
        return idx
    idx = stratified_subset(labels, fraction, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, idx)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not cache subset indices in %s (%s)", path.parent, e)
    return idx


# ----------------------------------------------------------------------------------------------------------------
# Decoding and augmentation
# ----------------------------------------------------------------------------------------------------------------

_CV2_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 converts to RGB inside the decoder
_CV2_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
              8: cv2.IMREAD_REDUCED_COLOR_8}
REDUCTIONS = tuple(sorted(_CV2_FLAGS, reverse=True))
"""JPEG DCT scaling factors libjpeg decodes natively (OpenCV's IMREAD_REDUCED_*, Pillow's draft mode), largest first."""


def _read_bytes(source: Union[str, Path, bytes]) -> bytes:
    """The file's bytes (bytes are passed through)."""
    if isinstance(source, (bytes, bytearray)):
        return source
    with open(source, "rb") as f:
        return f.read()


def _is_whole_jpeg(data: bytes) -> bool:
    # SOI at the start and EOI at the end: a JPEG that was written completely. Anything else (other formats,
    # truncated files, trailing bytes) goes to Pillow, which decodes or raises.
    return data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"


def decode_image(source: Union[str, Path, bytes], decoder: str = "pil", reduction: int = 1) -> np.ndarray:
    """Decode an image file (or its bytes) to an (H, W, 3) uint8 RGB array.

    Grayscale, CMYK, RGBA, palette and 16-bit images are converted to RGB (alpha is dropped, as
    torchvision's ImageFolder does). EXIF orientation is ignored by both decoders, as ImageFolder does.

    Args:
        source: a file path or the file's bytes.
        decoder: 'pil' (Pillow), or 'opencv' (``cv2.imdecode`` for whole JPEGs, Pillow for anything else).
        reduction: 1, 2, 4 or 8: decode a JPEG at about 1/reduction of each side (libjpeg DCT scaling: the output
            side is ceil(side / reduction)); other formats are decoded whole. Compare the output shape with
            :func:`image_shape` for the scale actually used.

    Raises:
        OSError / PIL.UnidentifiedImageError / ValueError: unreadable, truncated, empty or not an image.
    """
    if reduction not in _CV2_FLAGS:
        raise ValueError(f"reduction must be one of {sorted(_CV2_FLAGS)}, got {reduction}")
    if decoder == "opencv":
        data = _read_bytes(source)
        if _is_whole_jpeg(data):
            flags = _CV2_FLAGS[reduction] | cv2.IMREAD_IGNORE_ORIENTATION
            if _CV2_RGB is not None:  # replaces the IMREAD_COLOR bit (BGR); the two cannot be combined
                flags = (flags & ~cv2.IMREAD_COLOR) | _CV2_RGB
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if arr is None:
                raise ValueError("OpenCV could not decode this JPEG")
            return arr if _CV2_RGB is not None else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        source = data
    elif decoder != "pil":
        raise ValueError(f"decoder must be 'pil' or 'opencv', got {decoder!r}")
    src = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with Image.open(src) as im:
        if reduction > 1 and im.format == "JPEG":
            im.draft("RGB", (-(-im.width // reduction), -(-im.height // reduction)))
        im.load()  # decodes fully: a truncated JPEG raises here, not later inside a transform
        if im.mode != "RGB":
            im = im.convert("RGB")
        arr = np.asarray(im)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"decoded to an unexpected shape {arr.shape}")
    return arr


def image_shape(source: Union[str, Path, bytes]) -> tuple[int, int]:
    """(height, width) in pixels of an image file or its bytes, read from the header only (no decoding).

    Raises:
        OSError / PIL.UnidentifiedImageError: not a readable image.
    """
    if isinstance(source, (bytes, bytearray)):
        shape = _jpeg_shape(source)
        if shape is not None:
            return shape
        source = io.BytesIO(source)
    with Image.open(source) as im:
        return im.height, im.width


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame (not DHT, JPG, DAC)


def _jpeg_shape(data: bytes) -> Optional[tuple[int, int]]:
    """(height, width) from a JPEG's start-of-frame segment (ITU T.81, B.2.2), or None when ``data`` is not a JPEG
    or its markers do not parse (the caller then asks Pillow). About 5 us, against about 70 us for Pillow."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            h, w = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            return (h, w) if h > 0 and w > 0 else None
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def seed_pipeline(pipeline: Union[A.Compose, "TrainTransform"], seed: int) -> None:
    """Seed an Albumentations pipeline (or :class:`TrainTransform`) for one sample: its transforms share one
    :class:`SampleGenerators` (``set_random_state``, done once), reseeded here. The draws are a pure function of
    ``seed``."""
    if isinstance(pipeline, TrainTransform):
        pipeline.set_random_seed(seed)
        return
    generators = getattr(pipeline, "_sample_generators", None)
    if generators is None:
        generators = SampleGenerators()
        pipeline.set_random_state(generators.numpy, generators.python)
        pipeline._sample_generators = generators
    generators.reseed(seed)


def build_train_transform(cfg: DataConfig, resolution: int) -> A.Compose:
    """Training pipeline: RandomResizedCrop(resolution, scale=(min_scale, 1)), HorizontalFlip, ColorJitter, then
    Normalize(mean, std) + ToTensorV2 → (3, resolution, resolution) float32; with ``cfg.normalize_on_device``,
    the (resolution, resolution, 3) uint8 array itself (the dataset makes it a tensor; batches are (B, H, W, 3),
    which :func:`to_device` turns into normalised (B, 3, H, W) float32 on the device).

    RandomResizedCrop with scale (0.08, 1) and ratio (3/4, 4/3) is Szegedy et al. 2015 (Inception), the
    standard ImageNet recipe of torchvision's references.
    """
    tail = [] if cfg.normalize_on_device else [A.Normalize(mean=cfg.mean, std=cfg.std, max_pixel_value=255.0),
                                               ToTensorV2()]
    return A.Compose(_crop_flip_jitter(cfg, resolution) + tail)


def _crop_flip_jitter(cfg: DataConfig, resolution: int) -> list[Any]:
    """The uint8 part of the training pipeline, shared by both training pipelines."""
    ops: list[Any] = [A.RandomResizedCrop(size=(resolution, resolution), scale=(cfg.min_scale, 1.0),
                                          interpolation=cv2.INTER_LINEAR)]
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        ops.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
    return ops


def build_eval_transform(cfg: DataConfig, resolution: int) -> A.Compose:
    """Evaluation pipeline: resize the short side to ``round(resolution / val_crop_ratio)``, CenterCrop,
    Normalize, ToTensorV2 → (3, resolution, resolution) float32 (torchvision's resize-256/crop-224 at 0.875)."""
    resize = int(round(resolution / cfg.val_crop_ratio))
    return A.Compose([A.SmallestMaxSize(max_size=resize, interpolation=cv2.INTER_LINEAR),
                      A.CenterCrop(height=resolution, width=resolution),
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
        pipeline: from :func:`make_train_transform`; it is seeded here with ``seed``.
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
    """The RandomResizedCrop box (x_min, y_min, x_max, y_max) in pixels and the flip decision that
    :func:`build_train_transform`'s pipeline draws for ``seed`` on an image of ``shape`` (height, width), without
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


def make_train_transform(cfg: DataConfig, resolution: int) -> Union[A.Compose, TrainTransform]:
    """The training pipeline for ``resolution`` px: plain Albumentations (:func:`build_train_transform`), or
    :class:`TrainTransform` when RandAugment/TrivialAugment or random erasing is on."""
    if cfg.auto_augment != "none" or cfg.random_erasing > 0:
        return TrainTransform(cfg, resolution)
    return build_train_transform(cfg, resolution)


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


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective mix of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int, attempt: int = 0) -> int:
    """63-bit seed of one sample's augmentation, a pure function of (seed, epoch, index, attempt), so the
    same sample gets the same crop whatever the worker count or the order of loading.

    Chained SplitMix64 mixing, about 2 us (``np.random.SeedSequence`` takes about 40 us per sample in a worker).
    """
    h = 0
    for v in (seed, epoch, index, attempt):
        h = _splitmix64(h ^ (v & _MASK64))
    return h >> 1


class SampleGenerators:
    """One NumPy and one Python generator, shared by all transforms of a pipeline and reseeded for every sample.

    Reseeding sets the PCG64 state and re-seeds ``random.Random`` in place (about 6 us), where new generators per
    transform (``Compose.set_random_seed``) cost about 200 us per sample.
    """

    _PCG64_INCREMENT = 0xDA3E39CB94B95BDB4A1B1D2E3C4F5A6B | 1  # any odd 128-bit constant selects a stream

    def __init__(self) -> None:
        self.bit_generator = np.random.PCG64(0)
        self.numpy = np.random.Generator(self.bit_generator)
        self.python = random.Random()

    def reseed(self, seed: int) -> None:
        """Make both generators a pure function of ``seed`` (any int)."""
        seed &= _MASK64
        self.python.seed(seed)
        state = (_splitmix64(seed) << 64) | _splitmix64(seed ^ 0x5851F42D4C957F2D)
        self.bit_generator.state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                                    "state": {"state": state, "inc": self._PCG64_INCREMENT}}


# ----------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------

class ImageReader:
    """Reads sample ``i`` of a split as an (H, W, 3) uint8 RGB array; ``describe(i)`` names it for reports.

    ``decoder`` is :func:`decode_image`'s ('pil' or 'opencv'; the manager sets it from ``--data.decoder``);
    ``source(i)`` is the file path or bytes :func:`decode_image` reads.
    """

    decoder: str = "pil"

    def source(self, i: int) -> Union[str, bytes]:
        raise NotImplementedError

    def read(self, i: int) -> np.ndarray:
        return decode_image(self.source(i), self.decoder)

    def describe(self, i: int) -> str:
        raise NotImplementedError


class FolderReader(ImageReader):
    """Images of an ImageFolder split, addressed by the split's :class:`SplitIndex` relative paths."""

    def __init__(self, split_dir: Path, relpaths: np.ndarray):
        self.split_dir = str(split_dir)
        self.relpaths = relpaths

    def source(self, i: int) -> str:
        return os.path.join(self.split_dir, os.fsdecode(self.relpaths[i]))

    def describe(self, i: int) -> str:
        return self.source(i)


class HFReader(ImageReader):
    """Images of a Hugging Face ``datasets`` split, decoded by :func:`decode_image` from the stored bytes."""

    def __init__(self, ds: Any, image_column: str, name: str):
        from datasets import Image as HFImage

        self.ds = ds.cast_column(image_column, HFImage(decode=False))
        self.image_column = image_column
        self.name = name

    def source(self, i: int) -> Union[str, bytes]:
        item = self.ds[int(i)][self.image_column]
        if item.get("bytes") is not None:
            return item["bytes"]
        if item.get("path"):
            return item["path"]
        raise ValueError("row holds neither image bytes nor a path")

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


def _as_tensor(image: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    # a uint8 (r, r, 3) array from a pipeline without ToTensorV2 (normalize_on_device) becomes a tensor without a
    # copy; batches of them stack with plain memcpy (a (3, r, r) permuted view would need a strided gather)
    return torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image


class ImageClassificationDataset(Dataset):
    """(image, label) samples of one split or stratified subset.

    ``__getitem__`` takes either a plain position (evaluation: deterministic transform at ``resolution``) or a
    ``(position, epoch, resolution)`` key from :class:`EpochSampler` (training: augmentation seeded by
    :func:`sample_seed`, crop size chosen per epoch for progressive resizing).

    A sample that cannot be decoded is logged, appended to ``bad_images_file`` (JSON lines), and replaced by
    another sample of the same class, so an epoch never stops on a corrupt file.

    Args:
        reader: where images come from (indexed by full-split sample id).
        sample_ids: (M,) int64 full-split ids of the samples in this dataset (the subset).
        labels: (M,) int64 labels used for training (may differ from the folder's for noise studies).
        transform_factory: resolution (px) → Albumentations pipeline giving a (3, r, r) float tensor.
        resolution: crop size (px) for plain-position access.
        seed: augmentation seed.
        bad_images_file: where corrupt files are listed (None = log only).
        reduced_decode: training keys decode through :func:`crop_with_reduced_decode` (the transform must start
            with RandomResizedCrop).

    Returns (per item): image (3, r, r) float32 tensor ((r, r, 3) uint8 from a pipeline that leaves
    normalisation to the device), label int.
    """

    def __init__(self, reader: ImageReader, sample_ids: np.ndarray, labels: np.ndarray,
                 transform_factory: Callable[[int], A.Compose], resolution: int, seed: int = 0,
                 bad_images_file: Optional[Path] = None, reduced_decode: bool = False):
        if len(sample_ids) != len(labels):
            raise ValueError(f"{len(sample_ids)} sample ids but {len(labels)} labels")
        self.reader = reader
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform_factory = transform_factory
        self.resolution = resolution
        self.seed = seed
        self.bad_images_file = Path(bad_images_file) if bad_images_file else None
        self.reduced_decode = reduced_decode
        self._transforms: dict[int, A.Compose] = {}
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.labels.max(initial=-1) + 2))
        self._by_class = (order, bounds)  # positions of class c: order[bounds[c]:bounds[c + 1]]

    def __len__(self) -> int:
        return int(self.sample_ids.shape[0])

    def transform(self, resolution: int) -> A.Compose:
        """The pipeline for ``resolution`` px, built once per resolution and per worker."""
        if resolution not in self._transforms:
            self._transforms[resolution] = self.transform_factory(resolution)
        return self._transforms[resolution]

    def __getitem__(self, key: Union[int, tuple[int, int, int]]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            position, epoch, resolution = key
        else:
            position, epoch, resolution = int(key), 0, self.resolution
        label = int(self.labels[position])
        tf = self.transform(resolution)
        for attempt in range(MAX_REPLACEMENT_TRIES):
            current = position
            if attempt:  # a seeded pick of another sample of the same class
                order, bounds = self._by_class
                same = order[bounds[label]:bounds[label + 1]]
                current = int(same[np.random.default_rng(sample_seed(self.seed, epoch, position, attempt))
                                   .integers(len(same))])
            sid = int(self.sample_ids[current])
            try:
                if self.reduced_decode and isinstance(key, tuple):
                    source = _read_bytes(self.reader.source(sid))  # read once: the header, then the decode
                    out = crop_with_reduced_decode(
                        tf, sample_seed(self.seed, epoch, position), image_shape(source),
                        lambda f: decode_image(source, self.reader.decoder, f))
                    return _as_tensor(out), label
                image = self.reader.read(sid)
            except Exception as e:  # PIL raises OSError, UnidentifiedImageError, ValueError, DecompressionBombError
                self._report_bad(sid, e)
                continue
            seed_pipeline(tf, sample_seed(self.seed, epoch, position))
            return _as_tensor(tf(image=image)["image"]), label
        raise RuntimeError(f"{MAX_REPLACEMENT_TRIES} images of class {label} in a row could not be decoded "
                           f"(last: {self.reader.describe(sid)}); check the data folder for damaged files")

    def _report_bad(self, sample_id: int, error: Exception) -> None:
        where = self.reader.describe(sample_id)
        log.warning("skipping unreadable image %s (%s: %s); using another image of the same class",
                    where, type(error).__name__, error)
        if self.bad_images_file is not None:
            line = json.dumps({"sample_id": sample_id, "path": where, "error": f"{type(error).__name__}: {error}"})
            # O_APPEND writes of one short line are atomic on POSIX: workers can share the file.
            fd = os.open(self.bad_images_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------

class EpochSampler(Sampler):
    """Yields ``(position, epoch, resolution)`` keys for one epoch of training, deterministically.

    The order is a permutation seeded by (seed, epoch). Under DDP the order is cut into consecutive blocks of
    ``batch_size`` and micro-batch m of rank r is block ``m * num_replicas + r``: N processes with batch B see
    exactly the micro-batches of one process with batch B and accumulation N, so the two runs can be compared
    step for step. Each epoch is truncated to whole optimizer steps, so every epoch ends on an accumulation
    boundary. ``set_epoch(epoch, start_micro_batch)`` resumes mid-epoch:
    the batches already trained are skipped, not re-drawn.

    Args:
        num_samples: dataset length.
        batch_size: micro-batch size per process.
        grad_accum_steps: micro-batches per optimizer step.
        seed: shuffling seed.
        resolution_at: epoch → training crop size (px); progressive resizing plugs in here.
        num_replicas, rank: DDP world size and this process's rank.
        shuffle: False gives the identity order (for tests).

    Raises:
        ValueError: the dataset is too small for one optimizer step.
    """

    def __init__(self, num_samples: int, batch_size: int, grad_accum_steps: int, seed: int,
                 resolution_at: Callable[[int], int], num_replicas: int = 1, rank: int = 0, shuffle: bool = True):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.resolution_at, self.num_replicas, self.rank, self.shuffle = resolution_at, num_replicas, rank, shuffle
        per_rank = num_samples // num_replicas
        self.micro_batches_per_epoch = (per_rank // batch_size) // grad_accum_steps * grad_accum_steps
        if self.micro_batches_per_epoch == 0:
            raise ValueError(
                f"{num_samples} training images give no full optimizer step with --training.batch_size "
                f"{batch_size} x --training.grad_accum_steps {grad_accum_steps} x {num_replicas} process(es); "
                f"lower the batch size or the accumulation, or use more data (--data.fraction)")
        self.epoch, self.start_micro_batch = 0, 0

    def set_epoch(self, epoch: int, start_micro_batch: int = 0) -> None:
        """Select the epoch, skipping its first ``start_micro_batch`` micro-batches (mid-epoch resume)."""
        if not 0 <= start_micro_batch <= self.micro_batches_per_epoch:
            raise ValueError(f"start_micro_batch {start_micro_batch} outside [0, {self.micro_batches_per_epoch}]")
        self.epoch, self.start_micro_batch = epoch, start_micro_batch

    def __len__(self) -> int:
        return (self.micro_batches_per_epoch - self.start_micro_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        m, r, b = self.micro_batches_per_epoch, self.num_replicas, self.batch_size
        mine = order[: m * r * b].reshape(m, r, b)[:, self.rank, :].reshape(-1)
        resolution = int(self.resolution_at(self.epoch))
        for position in mine[self.start_micro_batch * self.batch_size:].tolist():
            yield position, self.epoch, resolution


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
    m, s = _scaled_mean_std(images.device, tuple(mean), tuple(std))
    return x.sub_(m).div_(s)


@functools.lru_cache(maxsize=16)
def _scaled_mean_std(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: a fresh small tensor per batch would be a blocking host-to-GPU copy every step
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
            torch.tensor(std, device=device).view(1, 3, 1, 1) * 255)


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process turns it into "checkpoint, then stop", so the
    # workers must not die of it first. SIGTERM is left alone: multiprocessing stops workers with it at exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core already: intra-op threads would oversubscribe


# ----------------------------------------------------------------------------------------------------------------
# The manager
# ----------------------------------------------------------------------------------------------------------------

class ImageNetDataManager:
    """Owns a dataset's splits, class mapping, stratified subsets, transforms and loaders.

    Args:
        cfg: the data section of the config.
        seed: augmentation seed (the training seed).
        run_dir: the run's logs folder; receives ``class_distribution.csv``/``.png``, ``subset_indices.npy``
            and ``corrupt_images.jsonl``. None writes nothing.
        progress: progress bars for the slow steps (indexing, building a device cache); ``--logging.progress_bar``.

    Attributes:
        classes: class identifiers in index order (WNIDs for ImageNet folders).
        class_names: human-readable names (from LOC_synset_mapping.txt / words.txt, else the identifier).
        short_names: the one short name per class that plots, reports and the demo show
            (:func:`core.prepare.short_class_names`: 'tench', not 'tench, Tinca tinca').
        class_to_idx: identifier → index.
        train_ids, val_ids: (M,) full-split sample ids in the (stratified) subsets.
        train_labels: (M,) labels the training set uses; replace with :meth:`set_train_labels` before
            building loaders (noise studies).

    Raises:
        FileNotFoundError: missing root or split, with the expected layout.
        ValueError: train and val class lists differ (listing the difference).
    """

    def __init__(self, cfg: DataConfig, seed: int = 0, run_dir: Optional[Path] = None, progress: bool = True):
        self.cfg = cfg
        self.seed = seed
        self.progress = progress
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.using_bundled_sample = cfg.root is None
        self.root = Path(cfg.root) if cfg.root is not None else BUNDLED_SAMPLE_ROOT
        if self.using_bundled_sample:
            log.info("no --data.root given: using the bundled 10-class Imagenette sample at %s", self.root)
        if not self.root.exists():
            raise FileNotFoundError(f"--data.root {self.root} does not exist")
        self.cache_dir = Path(cfg.index_cache_dir) if cfg.index_cache_dir else _default_cache_dir()

        if cfg.source == "imagefolder":
            train_index = scan_image_folder(self.root / cfg.train_split, self.cache_dir, progress)
            val_index = scan_image_folder(self.root / cfg.val_split, self.cache_dir, progress)
            self._readers = (FolderReader(self.root / cfg.train_split, train_index.relpaths),
                             FolderReader(self.root / cfg.val_split, val_index.relpaths))
        else:
            (train_index, train_reader), (val_index, val_reader) = (
                _load_hf_split(self.root, split, cfg.image_column, cfg.label_column)
                for split in (cfg.train_split, cfg.val_split))
            self._readers = (train_reader, val_reader)
        for reader in self._readers:
            reader.decoder = cfg.decoder
        if train_index.classes != val_index.classes:
            only_train = sorted(set(train_index.classes) - set(val_index.classes))
            only_val = sorted(set(val_index.classes) - set(train_index.classes))
            raise ValueError(
                f"train and val classes differ under {self.root}: {len(only_train)} only in "
                f"'{cfg.train_split}' {only_train[:10]}, {len(only_val)} only in '{cfg.val_split}' {only_val[:10]}"
                + ("" if only_train or only_val else " (same names, different order)")
                + "; fix the folders — classes are never filtered silently")
        self._device_caches: dict[Any, torch.Tensor] = {}  # core.device_cache: one cache per device and size
        self.train_index, self.val_index = train_index, val_index
        self.classes = list(train_index.classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        names = read_class_names(self.root)
        self.class_names = [names.get(c, c) for c in self.classes]
        self.short_names = short_class_names(self.class_names, self.classes)

        self.train_ids = _cached_subset(train_index.labels, cfg.fraction, cfg.subset_seed, self.cache_dir, "train")
        self.val_ids = _cached_subset(val_index.labels, cfg.val_fraction, cfg.subset_seed, self.cache_dir, "val")
        self.train_labels = train_index.labels[self.train_ids]
        self.manifest_report: Optional[ManifestReport] = None
        if cfg.cleaning_manifest is not None:
            self._apply_cleaning_manifest(Path(cfg.cleaning_manifest))
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.write_class_distribution(self.run_dir)

    def _apply_cleaning_manifest(self, directory: Path) -> None:
        """Remove and relabel training samples as the manifest in ``directory`` says (``--data.cleaning_manifest``).

        Raises:
            FileNotFoundError: the folder holds neither manifest file.
            ValueError: unknown paths/ids/WNIDs, or an entry outside the training subset (nothing is dropped
                silently; detect on the same ``--data.fraction`` you train on).
        """
        manifest = read_manifest(directory, len(self.train_index), self.num_classes, self.train_index.relpaths,
                                 self.class_to_idx)
        try:
            ids, labels, self.manifest_report = apply_manifest(self.train_ids, self.train_labels, manifest,
                                                               self.num_classes)
        except ValueError as e:
            raise ValueError(f"--data.cleaning_manifest {directory}: {e}") from e
        self.set_train_subset(ids, labels)
        log.info("cleaning manifest %s: %s", directory, self.manifest_report.as_dict())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_reader(self) -> ImageReader:
        """Reads training images by full-split sample id."""
        return self._readers[0]

    @property
    def bad_images_file(self) -> Optional[Path]:
        return self.run_dir / "corrupt_images.jsonl" if self.run_dir is not None else None

    def set_train_labels(self, labels: np.ndarray) -> None:
        """Train on ``labels`` (M,) instead of the folder labels (label-noise and cleaning studies).

        Raises:
            ValueError: wrong length or labels outside [0, num_classes).
        """
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != self.train_labels.shape:
            raise ValueError(f"expected {self.train_labels.shape[0]} labels, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{labels.min()}, {labels.max()}]")
        self.train_labels = labels

    def set_train_subset(self, sample_ids: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        """Train on the given full-split sample ids (cleaning manifests that remove samples, K-fold splits),
        with ``labels`` (default: the folder labels of those ids). Call before building loaders.

        Raises:
            ValueError: ids outside [0, len(train split)), duplicated ids, or labels of the wrong length/range.
        """
        ids = np.asarray(sample_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.train_index)):
            raise ValueError(f"sample ids must lie in [0, {len(self.train_index)}), got [{ids.min()}, {ids.max()}]")
        if np.unique(ids).size != ids.size:
            raise ValueError("sample ids must be unique")
        self.train_ids = ids
        self.train_labels = self.train_index.labels[ids]
        if labels is not None:
            self.set_train_labels(labels)

    def train_dataset(self) -> ImageClassificationDataset:
        """The training subset with the training pipeline (Albumentations, seeded per sample)."""
        return ImageClassificationDataset(
            self._readers[0], self.train_ids, self.train_labels, lambda r: make_train_transform(self.cfg, r),
            self.cfg.image_size, self.seed, self.bad_images_file, self.cfg.reduced_decode)

    def val_dataset(self) -> ImageClassificationDataset:
        """The validation subset with the deterministic evaluation pipeline."""
        return ImageClassificationDataset(
            self._readers[1], self.val_ids, self.val_index.labels[self.val_ids],
            lambda r: build_eval_transform(self.cfg, r), self.cfg.val_image_size, self.seed, self.bad_images_file)

    def _loader_kwargs(self) -> dict[str, Any]:
        c = self.cfg
        kw: dict[str, Any] = {"num_workers": c.num_workers, "pin_memory": c.pin_memory and torch.cuda.is_available()}
        if c.num_workers > 0:
            kw.update(persistent_workers=c.persistent_workers, prefetch_factor=c.prefetch_factor,
                      worker_init_fn=_worker_init)
        return kw

    def train_loader(self, batch_size: int, grad_accum_steps: int = 1,
                     resolution_fn: Optional[Callable[[int], int]] = None, num_replicas: int = 1,
                     rank: int = 0, device: Optional[torch.device] = None) -> DataLoader:
        """A loader over the training subset driven by an :class:`EpochSampler` (``loader.sampler``): call
        ``loader.sampler.set_epoch(epoch, start_micro_batch)`` before iterating each epoch.

        Yields (images (B, 3, r, r) float32, or (B, r, r, 3) uint8 with ``normalize_on_device``; pass them
        through :meth:`to_device`), labels (B,) int64). With ``device_cache`` it is a
        :class:`core.device_cache.DeviceCachedLoader` whose images are already normalised on ``device`` (default
        CPU), built on first use.
        """
        resolution_fn = resolution_fn or (lambda epoch: resolution_at(epoch, self.cfg))
        if self.cfg.device_cache:
            from core.device_cache import device_cached_loader

            return device_cached_loader(self, batch_size, grad_accum_steps, resolution_fn, num_replicas, rank,
                                        device)
        sampler = EpochSampler(len(self.train_ids), batch_size, grad_accum_steps, self.seed, resolution_fn,
                               num_replicas, rank)
        return DataLoader(self.train_dataset(), batch_size=batch_size, sampler=sampler, drop_last=True,
                          **self._loader_kwargs())

    def to_device(self, images: torch.Tensor, device: torch.device,
                  memory_format: torch.memory_format = torch.preserve_format) -> torch.Tensor:
        """Move a batch from :meth:`train_loader` or :meth:`val_loader` to ``device`` as normalised float32.

        A (B, H, W, 3) uint8 batch (``normalize_on_device``) is copied as uint8 and converted there:
        ``(x - 255 * mean) / (255 * std)``; a (B, 3, H, W) float32 batch is only moved. See :func:`to_device`.

        Returns:
            (B, 3, H, W) float32 on ``device`` in ``memory_format`` (contiguous for ``preserve_format``).
        """
        return to_device(images, device, self.cfg.mean, self.cfg.std, memory_format)

    def val_loader(self, batch_size: int, num_replicas: int = 1, rank: int = 0) -> DataLoader:
        """A loader over the validation subset in fixed order; under DDP each rank takes every
        ``num_replicas``-th sample (no padding, so no sample is counted twice).

        Yields (images (B, 3, r, r) float32, labels (B,) int64).
        """
        ds = self.val_dataset()
        indices = list(range(rank, len(ds), num_replicas))
        return DataLoader(torch.utils.data.Subset(ds, indices), batch_size=batch_size, shuffle=False,
                          **self._loader_kwargs())

    def write_class_distribution(self, out_dir: Path) -> Path:
        """Write ``class_distribution.csv`` (per class: index, WNID, name, short name, images in split, images in
        subset, val images), its bar chart ``class_distribution.png`` (bars labelled with the short names), and
        ``subset_indices.npy``; return the CSV."""
        out_dir = Path(out_dir)
        full = class_counts(self.train_index.labels, self.num_classes)
        sub = class_counts(self.train_labels, self.num_classes)
        val = class_counts(self.val_index.labels[self.val_ids], self.num_classes)
        path = out_dir / "class_distribution.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["class_index", "wnid", "name", "short_name", "train_images", "subset_images", "val_images"])
            for i, (wnid, name, short) in enumerate(zip(self.classes, self.class_names, self.short_names)):
                w.writerow([i, wnid, name, short, int(full[i]), int(sub[i]), int(val[i])])
        np.save(out_dir / "subset_indices.npy", self.train_ids)
        try:
            from utils.visualization import plot_class_distribution

            plot_class_distribution({n: int(c) for n, c in zip(self.short_names, sub)},
                                    out_dir / "class_distribution.png",
                                    title=f"Training images per class ({len(self.train_ids):,} in total)")
        except Exception as e:  # a plot is a report, never a reason to stop a run
            log.warning("could not draw the class distribution (%s)", e)
        log.info("training subset: %d of %d images (fraction %.3g, seed %d), %d-%d per class; val: %d images",
                 len(self.train_ids), len(self.train_index), self.cfg.fraction, self.cfg.subset_seed,
                 sub.min(), sub.max(), len(self.val_ids))
        return path

    def corrupt_images(self) -> list[dict[str, Any]]:
        """Unreadable images met so far in this run (deduplicated by sample id, first error kept)."""
        f = self.bad_images_file
        if f is None or not f.is_file():
            return []
        seen: dict[str, dict[str, Any]] = {}
        for line in f.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                seen.setdefault(rec["path"], rec)
        return list(seen.values())


def _load_hf_split(root: Path, split: str, image_column: str, label_column: str) -> tuple[SplitIndex, HFReader]:
    """Open one split of a Hugging Face dataset stored locally: a ``save_to_disk`` folder (a DatasetDict at
    ``root`` or a Dataset at ``root/<split>``) or parquet files (``root/**/<split>-*.parquet`` or
    ``root/<split>/*.parquet``, the layout of e.g. ``evanarlian/imagenet_1k_resized_256``).

    Labels are read from the Arrow column, never by decoding images.

    Raises:
        FileNotFoundError: nothing matching the split is found, naming the layouts looked for.
        ValueError: missing columns.
    """
    import datasets

    ds = None
    if (root / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(root))
        if split not in dd:
            raise FileNotFoundError(f"split '{split}' not in {root} (splits: {list(dd)}); set --data.train_split/"
                                    f"--data.val_split")
        ds = dd[split]
    elif (root / split / "dataset_info.json").is_file() or (root / split / "state.json").is_file():
        ds = datasets.load_from_disk(str(root / split))
    else:
        files = sorted({*root.glob(f"**/{split}-*.parquet"), *root.glob(f"{split}/*.parquet"),
                        *root.glob(f"{split}.parquet")})
        if files:
            ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if ds is None:
        raise FileNotFoundError(
            f"no Hugging Face split '{split}' under {root}: looked for a save_to_disk folder (dataset_dict.json, "
            f"or {split}/dataset_info.json) and parquet files ({split}-*.parquet, {split}/*.parquet)")
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise ValueError(f"column '{col}' not in {root} split '{split}' (columns: {ds.column_names}); "
                             f"set --data.image_column / --data.label_column")
    labels = ds.data.column(label_column).to_numpy().astype(np.int64)
    feature = ds.features[label_column]
    if hasattr(feature, "names"):
        classes = list(feature.names)
    else:
        classes = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels of split '{split}' lie outside [0, {len(classes)}) (unlabelled test split?)")
    return SplitIndex(classes=classes, labels=labels), HFReader(ds, image_column, f"{root.name}/{split}")


def compute_dataset_stats(manager: ImageNetDataManager, num_images: int = 2000, resolution: int = 224,
                          out_path: Optional[Path] = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Per-channel mean and std of [0, 1] RGB pixels over a random sample of training images, after the
    evaluation resize and centre crop (so large images do not dominate).

    Args:
        manager: the data to measure.
        num_images: how many training images to sample (without replacement).
        resolution: crop size (px) at which pixels are counted.
        out_path: where ``dataset_stats.json`` is written (None = not written).
        progress: a bar over the images read (2,000 full-size JPEGs take about a minute on one core).

    Returns:
        {"mean": [r, g, b], "std": [r, g, b], "num_images": n, "resolution": px, "skipped": unreadable count}.
    """
    rng = np.random.default_rng(seed)
    ids = manager.train_ids[np.sort(rng.choice(len(manager.train_ids), min(num_images, len(manager.train_ids)),
                                               replace=False))]
    resize = int(round(resolution / manager.cfg.val_crop_ratio))
    tf = A.Compose([A.SmallestMaxSize(max_size=resize), A.CenterCrop(height=resolution, width=resolution)])
    total = np.zeros(3)
    total_sq = np.zeros(3)
    pixels, used, skipped = 0, 0, 0
    reader = manager._readers[0]
    for sid in progress_bar(ids.tolist(), desc="dataset statistics", enabled=progress, unit="img"):
        try:
            img = tf(image=reader.read(sid))["image"].reshape(-1, 3).astype(np.float64) / 255.0
        except Exception as e:
            skipped += 1
            log.warning("stats: skipping %s (%s)", reader.describe(sid), e)
            continue
        total += img.sum(0)
        total_sq += (img ** 2).sum(0)
        pixels += img.shape[0]
        used += 1
    if used == 0:
        raise RuntimeError("no readable image in the sample")
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean ** 2, 0))
    stats = {"mean": mean.round(6).tolist(), "std": std.round(6).tolist(), "num_images": used,
             "resolution": resolution, "skipped": skipped, "root": str(manager.root)}
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(stats, indent=2))
    return stats
