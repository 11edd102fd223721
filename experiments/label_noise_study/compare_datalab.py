"""Score cleanlab's Datalab on a label-noise study's noisy labels against the injected flips (issue 13): a K-fold
detection's out-of-sample probabilities with a model's embeddings beside them, and the embeddings alone.

    python experiments/label_noise_study/compare_datalab.py <the study's own flags> --noise_rate 0.2 \\
        --kfold results/imagenette_b15/noise20_cleanlab/detection \\
        --checkpoint runs/noise_study_aum/noise20_cleanlab/detection/aum_run/models/last.pt --out runs/datalab

The study's noisy labels at ``--noise_rate`` are rebuilt as run_study.py does; ``--kfold`` is a finished K-fold
detection of them (checked as compare_folds.py does). ``--checkpoint`` is any model of this dataset whose
pooled ``layer4`` features embed every training image (centre crop at ``--data.val_image_size``; a few minutes of CPU
for Imagenette, cached in ``--out/features.npz`` with the ids they belong to). The table
(:func:`services.datalab_sweep.datalab_sweep`) goes to ``--out/compare_datalab.csv`` and ``.md``; nothing trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from core.data.manager import ImageNetDataManager
from experiments.label_noise_study.compare_folds import kfold_probs
from services.aum_sweep import SWEEP_COLUMNS
from services.datalab_sweep import datalab_sweep, embeddings
from services.detection_sweep import write_sweep_table
from services.label_issues import eval_loader
from services.noise_study import study_setup


def cached_embeddings(checkpoint: Path, data: ImageNetDataManager, labels: np.ndarray, cache: Path,
                      batch_size: int, progress: bool) -> np.ndarray:
    """(M, D) embeddings of ``data``'s training samples by ``checkpoint``'s model, from ``cache`` (an ``.npz`` of
    ``features``, ``sample_ids`` and the checkpoint path) when it holds these samples and that checkpoint.

    Raises:
        ValueError: the checkpoint was trained on other classes than ``data``'s.
    """
    from services.gradcam_analyzer import load_model

    if cache.is_file():
        saved = np.load(cache)
        if np.array_equal(saved["sample_ids"], data.train_ids) and str(saved["checkpoint"]) == str(checkpoint):
            return saved["features"]
    loaded = load_model(checkpoint, "cpu")
    if list(loaded.classes) != list(data.classes):
        raise ValueError(f"{checkpoint} was trained on {len(loaded.classes)} other classes than the data's "
                         f"{len(data.classes)}; pass a checkpoint of this dataset")
    loader = eval_loader(data, data.train_ids, labels, batch_size)
    features = embeddings(loaded.model, loader, torch.device("cpu"), progress, desc=f"embedding with {checkpoint.name}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, features=features, sample_ids=data.train_ids, checkpoint=str(checkpoint))
    return features


def run(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--noise_rate", type=float, default=0.2, help="the study's symmetric noise rate")
    extra.add_argument("--kfold", type=Path, required=True, help="a finished K-fold detection/ folder of the labels")
    extra.add_argument("--checkpoint", type=Path, required=True, help="a model of this dataset to embed the images")
    extra.add_argument("--k", type=int, default=10, help="neighbours of the kNN label issues and outlier score")
    extra.add_argument("--out", type=Path, required=True, help="folder for compare_datalab.csv and .md")
    args, rest = extra.parse_known_args(argv)
    setup = study_setup(Path(__file__).parent, rest, __doc__, args.noise_rate)
    cfg, cl, base, noisy = setup.cfg, setup.cl, setup.data, setup.noisy
    given, mask = noisy.labels, noisy.noise_mask
    probs = kfold_probs(args.kfold, base.train_ids, given, cl.folds, cl.fold_seed, cl.filter_by)
    features = cached_embeddings(args.checkpoint, base, given, args.out / "features.npz",
                                 2 * cfg.training.batch_size, cfg.logging.progress_bar)
    rows, notes = datalab_sweep(given, mask, probs, features, args.k)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"Probabilities: {args.kfold} ({cl.folds}-fold, out of sample). Features: {features.shape[1]}-d pooled "
             f"layer4 of {args.checkpoint}.",
             f"Datalab's label issues are cleanlab's prune_by_noise_rate flags: "
             f"{'yes' if notes['same_as_prune_by_noise_rate'] else 'no'}. Outliers (k = {args.k}): "
             f"{notes['outliers']}, {notes['flips_among_outliers']} of them flips."]
    print(write_sweep_table(args.out, "compare_datalab", rows, SWEEP_COLUMNS,
                            f"Datalab at {args.noise_rate:g} noise: {given.size} samples, {int(mask.sum())} flipped",
                            lines), end="")
    return 0


if __name__ == "__main__":
    from core.cli import run_entry

    sys.exit(run_entry(lambda: run(sys.argv[1:])))
