"""The data manager: a dataset's splits, class mapping, stratified subsets and training labels, and the datasets
and loaders built on them."""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from core.atomic import atomic_write, atomic_write_text
from core.config import BUNDLED_SAMPLE_ROOT, DataConfig
from core.data import loaders
from core.data.dataset import FolderReader, ImageClassificationDataset, ImageReader
from core.data.hf import load_hf_split
from core.data.index import cached_subset, class_counts, default_cache_dir, scan_image_folder
from core.data.transforms import build_eval_transform, build_train_transform, to_device
from core.label_noise import ManifestReport, apply_manifest_to, labels_digest, load_manifest
from core.prepare import read_class_names, short_class_names
from core.soft_targets import SoftTargets

log = logging.getLogger(__name__)


class ImageNetDataManager:
    """Owns a dataset's splits, class mapping, stratified subsets, transforms and loaders.

    Args:
        cfg: the data section of the config.
        seed: augmentation seed (the training seed).
        run_dir: the run's logs folder; receives ``corrupt_images.jsonl`` (images skipped as unreadable). None
            writes nothing. Constructing writes no file: the trainer records the class distribution
            (:meth:`write_class_distribution`) in its logs folder.
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
        train_soft_targets: None, or the :class:`core.soft_targets.SoftTargets` that some training positions
            train on instead of their hard label (:meth:`set_train_soft_targets`; reset by a new subset or labels).

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
        self.cache_dir = Path(cfg.index_cache_dir) if cfg.index_cache_dir else default_cache_dir()

        if cfg.source == "imagefolder":
            train_index = scan_image_folder(self.root / cfg.train_split, self.cache_dir, progress)
            val_index = scan_image_folder(self.root / cfg.val_split, self.cache_dir, progress)
            self._readers = (FolderReader(self.root / cfg.train_split, train_index.relpaths),
                             FolderReader(self.root / cfg.val_split, val_index.relpaths))
        else:
            (train_index, train_reader), (val_index, val_reader) = (
                load_hf_split(self.root, split, cfg.image_column, cfg.label_column)
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
        self._device_caches: dict[Any, torch.Tensor] = {}  # see device_cache(): one per device, side and subset
        self.train_index, self.val_index = train_index, val_index
        self.classes = list(train_index.classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        names = read_class_names(self.root)
        self.class_names = [names.get(c, c) for c in self.classes]
        self.short_names = short_class_names(self.class_names, self.classes)

        self.train_ids = cached_subset(train_index.labels, cfg.fraction, cfg.subset_seed, self.cache_dir, "train")
        self.val_ids = cached_subset(val_index.labels, cfg.val_fraction, cfg.subset_seed, self.cache_dir, "val")
        self.train_labels = train_index.labels[self.train_ids]
        self.train_soft_targets: Optional[SoftTargets] = None
        self.manifest_report: Optional[ManifestReport] = None
        if cfg.cleaning_manifest is not None:
            self._apply_cleaning_manifest(Path(cfg.cleaning_manifest))

    def _apply_cleaning_manifest(self, directory: Path) -> None:
        """Remove and relabel training samples as the manifest in ``directory`` says (``--data.cleaning_manifest``).

        Raises:
            FileNotFoundError: the folder holds neither manifest file.
            ValueError: unknown paths/ids/WNIDs, or an entry outside the training subset (nothing is dropped
                silently; detect on the same ``--data.fraction`` you train on).
        """
        manifest = load_manifest(directory, self)
        try:
            self.manifest_report = apply_manifest_to(self, manifest)
        except ValueError as e:
            raise ValueError(f"--data.cleaning_manifest {directory}: {e}") from e
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
        self.train_soft_targets = None

    def set_train_soft_targets(self, soft: Optional[SoftTargets]) -> None:
        """Train the positions ``soft`` names on its probability vectors (the rest on ``train_labels``); None to
        train every position on its hard label. Call after the subset and labels are final (they reset it).

        Raises:
            ValueError: ``soft`` sized for another training set or class count.
        """
        if soft is not None:
            soft.check(len(self.train_ids), self.num_classes)
        self.train_soft_targets = soft

    def train_labels_digest(self) -> str:
        """:func:`core.label_noise.labels_digest` of ``train_ids``, ``train_labels`` and the soft targets (when
        set): equal iff two runs train on the same targets (checkpoints record it: resume refuses other labels)."""
        soft = self.train_soft_targets
        return labels_digest(self.train_ids, self.train_labels, *((soft.rows, soft.probs) if soft is not None else ()))

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
        self.train_soft_targets = None
        if labels is not None:
            self.set_train_labels(labels)

    def train_dataset(self) -> ImageClassificationDataset:
        """The training subset with the training pipeline (Albumentations, seeded per sample)."""
        return ImageClassificationDataset(
            self._readers[0], self.train_ids, self.train_labels, lambda r: build_train_transform(self.cfg, r),
            self.cfg.image_size, self.seed, self.bad_images_file, self.cfg.reduced_decode)

    def val_dataset(self) -> ImageClassificationDataset:
        """The validation subset with the deterministic evaluation pipeline."""
        return ImageClassificationDataset(
            self._readers[1], self.val_ids, self.val_index.labels[self.val_ids],
            lambda r: build_eval_transform(self.cfg, r), self.cfg.val_image_size, self.seed, self.bad_images_file)

    def train_loader(self, batch_size: int, grad_accum_steps: int = 1,
                     resolution_fn: Optional[Callable[[int], int]] = None, num_replicas: int = 1,
                     rank: int = 0, device: Optional[torch.device] = None) -> Any:
        """The training loader over the training subset: see :func:`core.data.loaders.train_loader` (a DataLoader,
        or the device-cached loader with ``--data.device_cache``). Call ``loader.sampler.set_epoch(epoch,
        start_micro_batch)`` before iterating each epoch."""
        return loaders.train_loader(self, batch_size, grad_accum_steps, resolution_fn, num_replicas, rank, device)

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
        """The validation loader in fixed order: see :func:`core.data.loaders.val_loader`."""
        return loaders.val_loader(self, batch_size, num_replicas, rank)

    def device_cache(self, key: Any, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The device-resident copy of the training subset stored under ``key`` (device, side, subset), made by
        ``build()`` on first use and kept for this manager's life (:mod:`core.data.device_cache`)."""
        if key not in self._device_caches:
            self._device_caches[key] = build()
        return self._device_caches[key]

    def clone(self, run_dir: Optional[Path] = None, seed: Optional[int] = None) -> "ImageNetDataManager":
        """A manager over the same splits with its own training subset, labels, run folder and device-cache table
        (K-fold runs, noise studies): change it with :meth:`set_train_subset` without touching this one.

        The file index and readers are shared (never written after construction); caches already built are
        carried over, read-only. ``seed`` replaces the augmentation and shuffling seed (a study's other seeds).
        """
        other = copy.copy(self)
        if seed is not None:
            other.seed = seed
        other._device_caches = dict(self._device_caches)
        other.train_ids, other.train_labels = self.train_ids.copy(), self.train_labels.copy()
        other.manifest_report = copy.copy(self.manifest_report)
        if run_dir is not None:
            other.run_dir = Path(run_dir)
        return other

    def with_train_subset(self, sample_ids: np.ndarray, labels: Optional[np.ndarray] = None,
                          run_dir: Optional[Path] = None, seed: Optional[int] = None) -> "ImageNetDataManager":
        """:meth:`clone` (``run_dir``, ``seed``), then :meth:`set_train_subset` (``sample_ids``, ``labels``) on it."""
        other = self.clone(run_dir, seed)
        other.set_train_subset(sample_ids, labels)
        return other

    def write_class_distribution(self, out_dir: Path) -> Path:
        """Write ``class_distribution.csv`` (per class: index, WNID, name, short name, images in split, images in
        subset, val images), its bar chart ``class_distribution.png`` (bars labelled with the short names), and
        ``subset_indices.npy``; return the CSV."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        full = class_counts(self.train_index.labels, self.num_classes)
        sub = class_counts(self.train_labels, self.num_classes)
        val = class_counts(self.val_index.labels[self.val_ids], self.num_classes)
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(["class_index", "wnid", "name", "short_name", "train_images", "subset_images", "val_images"])
        for i, (wnid, name, short) in enumerate(zip(self.classes, self.class_names, self.short_names)):
            w.writerow([i, wnid, name, short, int(full[i]), int(sub[i]), int(val[i])])
        path = atomic_write_text(out_dir / "class_distribution.csv", text.getvalue())  # rewritten by every run
        atomic_write(out_dir / "subset_indices.npy", lambda f: np.save(f, self.train_ids))
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

    def report_corrupt_images(self, logs_dir: Path) -> None:
        """Write the run's unreadable images (:meth:`corrupt_images`) to ``logs_dir/corrupt_images.txt`` (path, tab,
        error; one per line) and warn, naming the file; nothing when every image was read."""
        bad = self.corrupt_images()
        if bad:
            (logs_dir / "corrupt_images.txt").write_text("".join(f"{b['path']}\t{b['error']}\n" for b in bad))
            log.warning("%d unreadable image(s) were skipped; listed in %s", len(bad), logs_dir / "corrupt_images.txt")

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
