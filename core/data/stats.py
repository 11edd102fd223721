"""Per-channel mean and std of a dataset's pixels (for ``--data.mean`` / ``--data.std``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.data.manager import ImageNetDataManager
from core.data.transforms import build_eval_crop
from core.logger import progress_bar

log = logging.getLogger(__name__)


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
    tf = build_eval_crop(manager.cfg, resolution)
    total = np.zeros(3)
    total_sq = np.zeros(3)
    pixels, used, skipped = 0, 0, 0
    reader = manager.train_reader
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
