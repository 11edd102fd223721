"""Shared by the label-review tests: a real ``services.label_issues`` output folder made from the bundled sample
in a second, with synthetic out-of-sample probabilities instead of K trained fold models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from core.checkpoint import atomic_torch_save
from core.config import DataConfig, ExperimentConfig, LoggingConfig, ModelConfig, TrainingConfig
from core.data.manager import ImageNetDataManager
from core.label_noise import inject_symmetric_noise
from core.model import build_model

NOISE_RATE = 0.1
FOLDS = 2


def sample_data(cache: Path, root: Path | None = None) -> ImageNetDataManager:
    """The bundled sample's 600 training images (or ``root``'s), indexed into ``cache``."""
    return ImageNetDataManager(DataConfig(root=root, num_workers=0, index_cache_dir=cache), seed=0)


def make_issues_dir(base: Path) -> Path:
    """Run ``detect_label_issues`` on the bundled sample with 10 % symmetric noise and a stand-in for the K-fold
    training: a model that puts 0.55-0.95 on the true class of each image, or on another class for 4 % of the
    clean ones (ambiguous images, so the detector's precision is below 1). Writes everything the real command
    writes (label_issues.csv, pred_probs.npy, train_ids.npy, folds.npy, noise_mask.npy, the automatic manifest)
    plus a random-init ResNet-18 checkpoint (seed 0, 64-px evaluation) as each fold's ``models/last.pt``.

    Returns the folder ``base / "issues"``.
    """
    from services.label_issues import ConfidentLearningConfig, detect_label_issues, stratified_folds

    out = base / "issues"
    cfg = ExperimentConfig(data=DataConfig(num_workers=0, image_size=64, val_image_size=64,
                                           index_cache_dir=base / "cache"),
                           model=ModelConfig(name="resnet18"), training=TrainingConfig(epochs=1),
                           logging=LoggingConfig(output_dir=out, progress_bar=False))
    data = sample_data(base / "cache")
    truth = data.train_labels.copy()
    noisy = inject_symmetric_noise(truth, NOISE_RATE, data.num_classes, seed=0)
    data.set_train_labels(noisy.labels)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(data.num_classes, 0.5), size=truth.size)
    sure = rng.uniform(0.55, 0.95, size=truth.size)
    probs = probs * (1 - sure)[:, None]
    probs[np.arange(truth.size), truth] += sure
    # ambiguous images: on 4 % of the clean ones the model is sure of another class, so some flags are false
    hard = rng.choice(np.flatnonzero(~noisy.noise_mask), size=round(0.04 * truth.size), replace=False)
    other = (truth[hard] + rng.integers(1, data.num_classes, size=hard.size)) % data.num_classes
    probs[hard, truth[hard]], probs[hard, other] = probs[hard, other], probs[hard, truth[hard]]
    folds = stratified_folds(data.train_labels, FOLDS, 0)

    def out_of_sample(cfg_, data_, out_dir, k, fold_seed=0, hflip=False):
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / "folds.npy", folds)
        for f in range(k):
            (out_dir / f"fold_{f}").mkdir(exist_ok=True)
            np.save(out_dir / f"fold_{f}" / "scored_ids.npy", data_.train_ids[folds == f])
        return probs.astype(np.float32)

    with mock.patch("services.label_issues.out_of_sample_pred_probs", out_of_sample):
        detect_label_issues(cfg, data, out, ConfidentLearningConfig(folds=FOLDS), noise_mask=noisy.noise_mask,
                            original_labels=truth)
    with torch.random.fork_rng():  # the same weights whatever ran before in this process (test order, xdist worker)
        torch.manual_seed(0)
        model = build_model("resnet18", num_classes=data.num_classes)
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "classes": list(data.classes),
            "class_names": list(data.class_names)}
    first = atomic_torch_save(ckpt, out / "fold_0" / "models" / "last.pt")
    for f in range(1, FOLDS):
        (out / f"fold_{f}" / "models").mkdir(parents=True, exist_ok=True)
        os.link(first, out / f"fold_{f}" / "models" / "last.pt")
    return out


def issues_template(base: Path) -> Path:
    """:func:`make_issues_dir` once per test process under ``base`` (its base temp dir: one per pytest-xdist
    worker, so each worker builds its own); reused after."""
    done = base / "label_review_template" / "issues" / "fold_0" / "models" / "last.pt"
    if not done.is_file():
        make_issues_dir(base / "label_review_template")
    return base / "label_review_template" / "issues"


def fresh_issues(template: Path, dst: Path) -> Path:
    """A private copy of the template folder (checkpoints hard-linked: they are only read) at ``dst``."""
    def copy(src: str, dst_: str) -> None:
        os.link(src, dst_) if src.endswith(".pt") else shutil.copy2(src, dst_)

    shutil.copytree(template, dst, copy_function=copy)
    return dst
