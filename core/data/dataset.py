"""Readers (sample id → RGB array) and the dataset of (image, label) samples, with corrupt-file replacement."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable, Optional, Union

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.decode import decode_image, image_shape, read_bytes
from core.data.rng import sample_seed
from core.data.transforms import crop_with_reduced_decode, seed_pipeline

log = logging.getLogger(__name__)

MAX_REPLACEMENT_TRIES = 16


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
                    source = read_bytes(self.reader.source(sid))  # read once: the header, then the decode
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
            self.bad_images_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.bad_images_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def worker_init(_worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader over a dataset here: workers ignore Ctrl-C and use one thread."""
    # Ctrl-C reaches the whole process group; the main process turns it into "checkpoint, then stop", so the
    # workers must not die of it first. SIGTERM is left alone: multiprocessing stops workers with it at exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core already: intra-op threads would oversubscribe
