"""File index of one split (classes, relative paths, labels; cached so a 1.28M-image tree is scanned once) and
stratified subsets: vectorised NumPy over the label array, no image decoded."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from core.logger import progress_bar

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File suffixes read as images (torchvision's ImageFolder list), compared case-insensitively."""

INDEX_FORMAT_VERSION = 1


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


def default_cache_dir() -> Path:
    """Where file indexes and subsets are cached when ``--data.index_cache_dir`` is not set: $XDG_CACHE_HOME (or
    ~/.cache) / resnet-imagenet."""
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
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
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


def cached_subset(labels: np.ndarray, fraction: float, seed: int, cache_dir: Path, tag: str) -> np.ndarray:
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
