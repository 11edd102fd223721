"""Real label-issue detection: K-fold out-of-sample probabilities, cleanlab's confident learning, a cleaning manifest.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) needs predicted probabilities that the model produced
for samples it did not train on. :func:`out_of_sample_pred_probs` trains K models with the experiment's own recipe,
each on K-1 stratified folds, and scores the fold it did not see. :func:`find_label_issues` calls
``cleanlab.filter.find_label_issues``; :func:`manifest_from_issues` turns the issues into a cleaning manifest:
relabel to the predicted class where the model is confident, remove otherwise.

Command line (detects issues in a dataset's own labels and writes the manifest under --logging.output_dir):

    python -m services.label_issues --data.root ../shared/data/imagenette2-224 --model.name resnet18 \\
        --data.image_size 64 --data.val_image_size 64 --training.epochs 4 --cl.folds 4 \\
        --logging.output_dir /tmp/label_issues
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from core.atomic import atomic_write, atomic_write_text
from core.config import ExperimentConfig, settings_conflicts
from core.data.dataset import ImageClassificationDataset
from core.data.manager import ImageNetDataManager
from core.data.transforms import build_eval_transform
from core.dynamics import aum_flags
from core.evaluate import predict
from core.label_noise import CleaningManifest, detection_metrics, labels_digest, ranking_metrics
from core.logger import progress_bar
from core.soft_targets import SoftTargets
from services.detection_ensemble import check_unchanged, ensemble_mean, load_members, write_ensemble_record
from services.issue_table import ISSUES_FILE, write_issue_table

log = logging.getLogger(__name__)

FILTER_METHODS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                  "low_normalized_margin", "low_self_confidence")
"""The ``filter_by`` methods of ``cleanlab.filter.find_label_issues`` (cleanlab 2.6-2.9)."""


@dataclass
class ConfidentLearningConfig:
    """Label-issue detection with cleanlab (confident learning) on K-fold out-of-sample probabilities."""

    folds: int = 4
    """K: models trained, each on K-1 stratified folds, each scoring the fold it did not see (>= 2)."""
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                       "low_normalized_margin", "low_self_confidence"] = "prune_by_noise_rate"
    """cleanlab's rule for which samples are issues; 'prune_by_noise_rate' is its default."""
    relabel_threshold: float = 0.8
    """A flagged sample is relabelled to the predicted class when its out-of-sample probability for that class is
    >= this (in (0, 1]); otherwise it is removed. Higher = fewer, safer relabels; 1.0 never relabels."""
    fold_seed: int = 0
    """Seed of the stratified fold assignment."""
    tta_hflip: bool = False
    """Score each held-out fold on the mean logits of every image and its mirror image (flip TTA, as FFCV's
    ``lr_tta``); the probabilities go to ``fold_k/pred_probs_hflip.npy``, so plain and TTA scores coexist."""
    rounds: int = 1
    """Rounds of detection (>= 1). Round r > 1 trains K new fold models (same folds, same recipe) in
    ``round_r/fold_k/``, each on the samples of its K-1 folds that round r-1 did not flag, and scores its whole
    held-out fold again (flagged samples included); the last round's probabilities decide the issues. A fold model
    trained on cleaner labels is a better detector; as in iterative noisy cross-validation (INCV: Chen et al.,
    ICML 2019), each round costs K more fold trainings. Round r-1's flags and probabilities are averaged with
    ``ensemble``'s members first when given (the best estimate at hand); ``round_targets`` says what happens to
    the flagged samples."""
    round_targets: Literal["remove", "soft"] = "remove"
    """What a round r > 1 fold model does with the samples of its K-1 folds that round r-1 flagged. 'remove':
    trains without them (INCV). 'soft': keeps every sample, each flagged one trained on its round r-1 out-of-sample
    probability vector as a soft target (:mod:`core.soft_targets`; the label correction of Tanaka et al., CVPR
    2018, inside the detection): the fold model keeps the images (hard clean ones included) and loses the wrong
    labels. Needs ``rounds`` >= 2 and no MixUp/CutMix in the fold recipe."""

    scores: Literal["k_fold", "aum"] = "k_fold"
    """What ranks the samples. 'k_fold': the K fold models' out-of-sample probabilities, and cleanlab's
    ``filter_by`` rule decides the issues. 'aum': one training run on every sample with its given label records
    each sample's margin in every epoch (``core.dynamics``); a sample is an issue when its Area Under the Margin is
    below ``aum_threshold`` (Pleiss et al., NeurIPS 2020), or among the lowest ``aum_fraction``. One training
    instead of K (``folds``, ``filter_by``, ``rounds`` and ``tta_hflip`` do not apply); the relabel rule reads that
    run's final weights' probabilities of every sample (in-sample: it trained on them)."""
    aum_threshold: float = 0.0
    """'aum': flag the samples whose AUM (mean margin, in logits) is below this; 0 flags those whose given label
    was on average not the top class. Not used with ``aum_fraction`` (setting both is refused)."""
    aum_fraction: float = 0.0
    """'aum': when > 0 (in [0, 1)), flag this fraction of the scored samples, lowest AUM first, instead of
    ``aum_threshold``: a count cut for when the noise rate is known or estimated (a published noisy set's rate,
    cleanlab's estimate). At a short schedule hard clean images also average a negative margin, so the rule
    AUM < 0 flags far more than the noise (issue 13: 3,904 flagged for 1,894 flips at 15 epochs)."""
    ensemble: tuple[str, ...] = ()
    """Other finished K-fold detections of the same samples and labels (their detection/ folders): their
    out-of-sample probabilities are averaged with this detection's last round before the issues are found and
    relabels chosen (:mod:`services.detection_ensemble`; e.g. other training seeds or fold recipes). Checked before
    any fold trains; refused: an AUM detection, an ensemble, a member listed twice, and in the label-noise study
    more than one cleanlab detection (one list fits one noise rate and seed); this detection itself, once its folds
    are done. Empty: none."""

    def __post_init__(self) -> None:
        problems = []
        if self.scores == "aum" and self.rounds > 1:
            problems.append("--cl.rounds > 1 needs --cl.scores k_fold (a round trains fold models on what the last "
                            "round did not flag)")
        if not math.isfinite(self.aum_threshold):
            problems.append(f"--cl.aum_threshold must be a finite number of logits, got {self.aum_threshold}")
        if not 0 <= self.aum_fraction < 1:
            problems.append(f"--cl.aum_fraction must be in [0, 1) (0 = use --cl.aum_threshold), got "
                            f"{self.aum_fraction}")
        elif self.aum_fraction > 0 and self.scores != "aum":
            problems.append("--cl.aum_fraction needs --cl.scores aum (K-fold detection flags with --cl.filter_by)")
        elif self.aum_fraction > 0 and self.aum_threshold != 0:
            problems.append("--cl.aum_fraction and --cl.aum_threshold are two rules for the same flags: set one")
        if self.ensemble and self.scores != "k_fold":
            problems.append("--cl.ensemble needs --cl.scores k_fold (AUM's probabilities are in-sample)")
        if self.folds < 2:
            problems.append(f"--cl.folds must be >= 2, got {self.folds}")
        if self.filter_by not in FILTER_METHODS:
            problems.append(f"--cl.filter_by must be one of {', '.join(FILTER_METHODS)}, got {self.filter_by!r}")
        if self.rounds < 1:
            problems.append(f"--cl.rounds must be >= 1, got {self.rounds}")
        if self.round_targets not in ("remove", "soft"):
            problems.append(f"--cl.round_targets must be 'remove' or 'soft', got {self.round_targets!r}")
        elif self.round_targets != "remove" and self.rounds < 2:
            problems.append(f"--cl.round_targets {self.round_targets} needs --cl.rounds >= 2 (it says what a later "
                            f"round trains on)")
        if not 0 < self.relabel_threshold <= 1:
            problems.append(f"--cl.relabel_threshold must be in (0, 1], got {self.relabel_threshold}")
        if problems:
            raise ValueError("invalid confident-learning configuration:\n  - " + "\n  - ".join(problems))


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Assign each sample to one of ``folds`` folds, stratified by label: within every class the samples are put in
    random order and dealt round-robin, so fold sizes per class differ by at most one.

    Args:
        labels: (M,) int labels (the noisy ones: the folds must not know the truth).

    Returns:
        (M,) int64 fold index in [0, folds).

    Raises:
        ValueError: folds < 2 or more folds than samples.
    """
    y = np.asarray(labels, dtype=np.int64)
    if folds < 2 or folds > y.size:
        raise ValueError(f"folds must be in [2, {y.size}], got {folds}")
    perm = np.random.default_rng(seed).permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random within class
    counts = np.bincount(y)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(y.size) - starts[y[order]]
    # Offset each class by its index, so that the first (largest) folds are not always fold 0.
    fold = np.empty(y.size, dtype=np.int64)
    fold[order] = (rank + y[order]) % folds
    return fold


def eval_loader(data: ImageNetDataManager, sample_ids: np.ndarray, labels: np.ndarray, batch_size: int,
                resolution: Optional[int] = None) -> DataLoader:
    """A loader over training-split samples with the deterministic evaluation pipeline (resize, centre crop) at
    ``resolution`` px (default ``--data.val_image_size``), in the given order.

    Yields (images (B, 3, r, r) float32, labels (B,) int64).
    """
    cfg = data.cfg
    ds = ImageClassificationDataset(data.train_reader, sample_ids, labels, lambda r: build_eval_transform(cfg, r),
                                    resolution or cfg.val_image_size, data.seed, data.bad_images_file)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=cfg.num_workers,
                      pin_memory=cfg.pin_memory and torch.cuda.is_available())


def predict_proba(model: nn.Module, loader: DataLoader, device: torch.device,
                  amp_dtype: Optional[torch.dtype] = None, progress: bool = False,
                  desc: str = "scoring", hflip: bool = False) -> np.ndarray:
    """Softmax probabilities of ``model`` over ``loader``, in loader order.

    Args:
        progress: a bar (titled ``desc``) over the batches.
        hflip: softmax of the logits averaged over each image and its mirror image (flip TTA).

    Returns:
        (N, C) float32 rows summing to 1.
    """
    out = [torch.softmax(logits, dim=1).cpu()
           for logits, _ in predict(model, loader, device, amp_dtype, hflip=hflip, progress=progress, desc=desc)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def out_of_sample_pred_probs(cfg: ExperimentConfig, data: ImageNetDataManager, out_dir: Path, folds: int,
                             fold_seed: int = 0, hflip: bool = False,
                             train_mask: Optional[np.ndarray] = None,
                             soft_targets: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
    """K-fold out-of-sample predicted probabilities of the training set, trained with ``cfg``'s own recipe.

    Fold k's model trains on the other folds (with their current, possibly noisy, labels) in
    ``out_dir/fold_k/`` (logs/, models/) and scores fold k with the evaluation pipeline. Each fold's
    probabilities are saved as ``fold_k/pred_probs.npy``: an interrupted detection resumes at the first fold
    without them (and, with ``--training.resume auto``, mid-fold from its last checkpoint). Each fold's
    ``fold_settings.json``, written before it trains, records what decides its model and probabilities
    (:func:`fold_settings`): a saved fold (checkpoints or probabilities) is reused only under equal settings. With
    ``--logging.progress_bar`` a bar counts the folds (ETA of the whole detection) above each fold's training
    and scoring bars. A fold whose model finished earlier but lacks the probabilities asked for (e.g. flip TTA
    on a detection scored without it) is only rescored: the trainer resumes it complete and trains nothing.

    Args:
        cfg: the experiment config (its ``logging.output_dir`` is replaced per fold).
        data: the training set to score (``train_ids`` / ``train_labels``); not modified.
        out_dir: where fold runs and ``folds.npy`` are written.
        folds: K >= 2.
        fold_seed: seed of :func:`stratified_folds`.
        hflip: score with flip TTA (files ``pred_probs_hflip.npy``).
        train_mask: (M,) bool, the samples fold models may train on (default all); the others are still scored in
            their fold (a second round of detection trains on what the first did not flag). The folds are drawn
            on all M samples either way.
        soft_targets: (flagged (M,) bool, probs (M, C) probability rows): each fold model trains its flagged
            samples on their rows of ``probs`` instead of their labels (``--cl.round_targets soft``); recorded in
            ``fold_settings.json`` by digest ("soft_targets"), so a fold is reused only under the same targets.

    Returns:
        (M, C) float32 probabilities, row i for ``data.train_ids[i]``.

    Raises:
        ValueError: a fold folder holds a model made with other settings (another fold config, other labels or
            samples, other soft targets); it is never resumed or mixed in: use a new ``--logging.output_dir`` or
            delete that folder. ``soft_targets`` whose shapes disagree or whose rows are not probability vectors.
    """
    from core.logger import setup_logging
    from core.cli import build_trainer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fold_of = stratified_folds(data.train_labels, folds, fold_seed)
    np.save(out_dir / "folds.npy", fold_of)
    trainable = np.ones(len(data.train_ids), dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    if trainable.shape != fold_of.shape:
        raise ValueError(f"train_mask has shape {trainable.shape}, the training set {fold_of.shape}: give one bool "
                         f"per training sample")
    probs = np.zeros((len(data.train_ids), data.num_classes), dtype=np.float32)
    for k in progress_bar(range(folds), desc="K-fold label issues", enabled=cfg.logging.progress_bar, unit="fold"):
        held = fold_of == k
        train = ~held & trainable
        fold_dir = out_dir / f"fold_{k}"
        probs_file = fold_dir / ("pred_probs_hflip.npy" if hflip else "pred_probs.npy")
        ids_file = fold_dir / "scored_ids.npy"
        name = cfg.logging.run_name or cfg.model.name
        fold_cfg = dataclasses.replace(cfg, logging=dataclasses.replace(
            cfg.logging, output_dir=fold_dir, run_name=f"{name}-fold{k}"))
        settings = fold_settings(fold_cfg, data.train_ids[train], data.train_labels[train], data.train_ids[held])
        soft = None
        if soft_targets is not None:
            soft = SoftTargets.for_flagged(soft_targets[0][train], soft_targets[1][train])
            settings["soft_targets"] = {"num_soft": soft.num_soft, "digest": labels_digest(
                data.train_ids[train], data.train_labels[train], soft.rows, soft.probs)}
        settings_file = fold_dir / "fold_settings.json"
        resume = cfg.training.resume != "none"
        saved = _saved_settings(settings_file, settings, resume, "a fold model")
        if resume and probs_file.is_file() and ids_file.is_file() \
                and np.array_equal(np.load(ids_file), data.train_ids[held]):
            if saved is None:  # made before fold_settings.json existed
                log.warning("fold %d/%d: %s has no %s; reusing it unchecked", k + 1, folds, probs_file,
                            settings_file.name)
            probs[held] = np.load(probs_file)
            log.info("fold %d/%d: reusing %s", k + 1, folds, probs_file)
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(settings_file, json.dumps(settings, indent=2) + "\n")  # vouches for the checkpoints too
        fold_data = data.with_train_subset(data.train_ids[train], data.train_labels[train], run_dir=fold_dir / "logs")
        fold_data.set_train_soft_targets(soft)
        log.info("fold %d/%d: training on %d samples, scoring %d", k + 1, folds, int(train.sum()), int(held.sum()))
        trainer = build_trainer(fold_cfg, data=fold_data)
        if trainer.fit()["interrupted"]:  # a half-trained fold model must not score its fold as if finished
            from core.trainer import RunInterrupted

            raise RunInterrupted(f"fold {k + 1}/{folds} was stopped by a signal; its checkpoint is in "
                                 f"{fold_dir / 'models'}: rerun the same command to continue the detection")
        loader = eval_loader(data, data.train_ids[held], data.train_labels[held], max(1, 2 * cfg.training.batch_size))
        p = predict_proba(trainer.unwrapped_model(), loader, trainer.device, trainer.amp_dtype,
                          progress=cfg.logging.progress_bar, desc=f"scoring fold {k + 1}/{folds}", hflip=hflip)
        np.save(ids_file, data.train_ids[held])
        tmp = fold_dir / f".{probs_file.stem}.tmp.npy"
        np.save(tmp, p)
        os.replace(tmp, probs_file)
        probs[held] = p
        setup_logging(out_dir, cfg.logging.log_level)
    return probs


def _saved_settings(settings_file: Path, settings: dict, resume: bool, what: str) -> Optional[dict]:
    """The settings a detection run folder was made with (None: none saved, or ``resume`` off).

    Raises:
        ValueError: they differ from ``settings``: that folder is never resumed or mixed in.
    """
    saved = json.loads(settings_file.read_text()) if resume and settings_file.is_file() else None
    if saved is not None and (conflicts := settings_conflicts(saved, settings)):
        folder = settings_file.parent
        raise ValueError(f"{folder} holds {what} made with other settings ({'; '.join(conflicts[:3])}); use a new "
                         f"--logging.output_dir, or delete {folder} to train it again")
    return saved


AUM_RUN = "aum_run"
"""The folder (under a detection's folds folder) of the ``--cl.scores aum`` training run."""


def aum_pred_probs(cfg: ExperimentConfig, data: ImageNetDataManager, out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Area Under the Margin of every training sample, from one training run with ``cfg``'s recipe on all of them.

    The run (``out_dir/aum_run/``: logs/, models/, ``fold_settings.json``) trains on ``data``'s samples and labels
    with ``--training.record_dynamics`` on, so its ``logs/dynamics.npz`` holds each sample's margin in every epoch
    (:mod:`core.dynamics`); AUM is their mean (Pleiss et al., NeurIPS 2020). The final weights then score every
    sample with the evaluation pipeline (the relabel rule's probabilities; in-sample). Both are saved
    (``aum.npy``, ``pred_probs.npy``, ``scored_ids.npy``); an interrupted run resumes from its checkpoint, a
    finished one is reused under equal settings.

    Args:
        cfg: the training recipe (its ``logging.output_dir`` is replaced).
        data: the training set to score; not modified.
        out_dir: the detection's folds folder.

    Returns:
        aum (M,) float32 in logits (NaN for a sample no epoch trained on: the sampler drops < one batch per epoch,
        so only with a 1-epoch run) and pred_probs (M, C) float32, row i for ``data.train_ids[i]``.

    Raises:
        ValueError: ``out_dir/aum_run`` holds a run made with other settings.
        RunInterrupted: the run was stopped by a signal (its checkpoint is saved; the same command continues).
    """
    from core.cli import build_trainer
    from core.dynamics import DYNAMICS_FILE, area_under_margin, load_dynamics
    from core.logger import setup_logging

    run_dir = Path(out_dir) / AUM_RUN
    name = cfg.logging.run_name or cfg.model.name
    run_cfg = dataclasses.replace(
        cfg, training=dataclasses.replace(cfg.training, record_dynamics=True),
        logging=dataclasses.replace(cfg.logging, output_dir=run_dir, run_name=f"{name}-aum"))
    settings = fold_settings(run_cfg, data.train_ids, data.train_labels, data.train_ids)
    resume = cfg.training.resume != "none"
    _saved_settings(run_dir / "fold_settings.json", settings, resume, "an AUM training run")
    files = {k: run_dir / f"{k}.npy" for k in ("aum", "pred_probs", "scored_ids")}
    if resume and all(f.is_file() for f in files.values()) and np.array_equal(np.load(files["scored_ids"]),
                                                                             data.train_ids):
        log.info("AUM: reusing %s", run_dir)
        return np.load(files["aum"]), np.load(files["pred_probs"])
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "fold_settings.json", json.dumps(settings, indent=2) + "\n")
    log.info("AUM: training on all %d samples, recording their margins", len(data.train_ids))
    trainer = build_trainer(run_cfg, data=data.with_train_subset(data.train_ids, data.train_labels,
                                                                 run_dir=run_dir / "logs"))
    if trainer.fit()["interrupted"]:
        from core.trainer import RunInterrupted

        raise RunInterrupted(f"the AUM training run was stopped by a signal; its checkpoint is in "
                             f"{run_dir / 'models'}: rerun the same command to continue the detection")
    dynamics = load_dynamics(run_dir / "logs" / DYNAMICS_FILE)
    if not np.array_equal(dynamics["sample_ids"], data.train_ids):
        raise ValueError(f"{run_dir / 'logs' / DYNAMICS_FILE} was recorded on other samples; delete {run_dir} to "
                         f"train the AUM run again")
    aum = area_under_margin(dynamics["margin"])
    loader = eval_loader(data, data.train_ids, data.train_labels, max(1, 2 * cfg.training.batch_size))
    probs = predict_proba(trainer.unwrapped_model(), loader, trainer.device, trainer.amp_dtype,
                          progress=cfg.logging.progress_bar, desc="scoring every sample (AUM run)")
    for key, value in (("scored_ids", data.train_ids), ("aum", aum), ("pred_probs", probs)):  # scored_ids last
        tmp = run_dir / f".{key}.tmp.npy"
        np.save(tmp, value)
        os.replace(tmp, files[key])
    setup_logging(out_dir, cfg.logging.log_level)
    return aum, probs


def array_digest(a: np.ndarray) -> str:
    """SHA-256 hex digest of an int array's values as int64 (one pass over its bytes, not per sample): how
    ``fold_settings.json`` records the ids and labels of a fold."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()


def fold_settings(fold_cfg: ExperimentConfig, train_ids: np.ndarray, train_labels: np.ndarray,
                  scored_ids: np.ndarray) -> dict:
    """What decides a fold model and its out-of-sample probabilities: ``fold_cfg``'s result settings
    (:meth:`ExperimentConfig.result_settings`) and :func:`array_digest` of the (N,) int ids and labels it trains on
    and of the (M,) ids it scores, as plain JSON types."""
    return json.loads(json.dumps({"config": fold_cfg.result_settings(), "train_ids": array_digest(train_ids),
                                  "train_labels": array_digest(train_labels),
                                  "scored_ids": array_digest(scored_ids)}))


def link_fold_runs(folds_dir: Path, out_dir: Path, folds: int, rounds: int = 1, aum: bool = False) -> None:
    """Make ``out_dir`` read like the detection folder ``folds_dir`` whose training runs it shares: ``folds.npy``
    copied, ``fold_k`` and later rounds' ``round_r`` as relative symbolic links to those of ``folds_dir`` (replacing
    what was there); with ``aum`` (``--cl.scores aum``) its one run, ``aum_run``, linked instead."""
    import shutil

    if aum:
        names = [AUM_RUN]
    else:
        shutil.copyfile(folds_dir / "folds.npy", out_dir / "folds.npy")
        names = [f"fold_{k}" for k in range(folds)] + [f"round_{r}" for r in range(2, rounds + 1)]
    for name in names:
        link = out_dir / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(os.path.relpath(folds_dir / name, out_dir), target_is_directory=True)


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray,
                      filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """``cleanlab.filter.find_label_issues`` (confident learning), single-process.

    Args:
        labels: (M,) int given (noisy) labels in [0, C).
        pred_probs: (M, C) out-of-sample probabilities.
        filter_by: one of :data:`FILTER_METHODS`.

    Returns:
        (M,) bool, True where the label is judged wrong.

    Raises:
        ImportError: cleanlab is not installed (it is in requirements.txt).
        ValueError: shapes disagree.
    """
    try:
        from cleanlab.filter import find_label_issues as _find
    except ImportError as e:  # pragma: no cover - listed in requirements.txt
        raise ImportError("label-issue detection needs cleanlab: pip install 'cleanlab>=2.6'") from e
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float32)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"pred_probs must be ({y.size}, C), got {p.shape}")
    # n_jobs=1: cleanlab's multiprocessing only pays off on many cores, and the CPU is shared with data loading.
    return np.asarray(_find(labels=y, pred_probs=p, filter_by=filter_by, n_jobs=1), dtype=bool)


def manifest_from_issues(sample_ids: np.ndarray, labels: np.ndarray, pred_probs: np.ndarray, issues: np.ndarray,
                         relabel_threshold: float) -> CleaningManifest:
    """Relabel a flagged sample to its predicted class when ``pred_probs[i, predicted] >= relabel_threshold`` and
    the prediction differs from the given label; remove every other flagged sample. ``relabel_threshold`` 1.0
    relabels nothing (the remove-only policy), even where float32 probabilities saturate at exactly 1.

    Args:
        sample_ids: (M,) full-split ids; labels: (M,) given labels; pred_probs: (M, C); issues: (M,) bool.

    Returns:
        The manifest (ids ascending).
    """
    pred = pred_probs.argmax(1)
    conf = pred_probs[np.arange(len(pred)), pred]
    relabel = issues & (pred != labels) & (conf >= relabel_threshold) & (relabel_threshold < 1.0)
    remove = issues & ~relabel
    return CleaningManifest(remove=np.sort(sample_ids[remove]), relabel_ids=sample_ids[relabel],
                            relabel_to=pred[relabel])


def round_summary(r: int, probs: np.ndarray, issues: np.ndarray, noise_mask: Optional[np.ndarray],
                  original_labels: Optional[np.ndarray]) -> dict:
    """Round ``r``'s entry of ``detection_metrics.json``'s "rounds": its flagged count ((M,) bool ``issues``) and,
    against the truth when given, precision, recall and F1 ((M,) bool ``noise_mask``) and the top-1 of its (M, C)
    ``probs`` against the (M,) ``original_labels``."""
    summary = {"round": r, "num_flagged": int(issues.sum())}
    if noise_mask is not None:
        d = detection_metrics(issues, noise_mask)
        summary.update(precision=d["precision"], recall=d["recall"], f1=d["f1"])
    if original_labels is not None:
        summary["top1_true"] = float((probs.argmax(1) == np.asarray(original_labels)).mean())
    return summary


def detection_rule(cl: ConfidentLearningConfig) -> str:
    """What flagged the samples, in words, for the manifest's header: the scores, the rule and its round or
    ensemble."""
    if cl.scores == "aum":
        cut = (f"the lowest {100 * cl.aum_fraction:g} % of scored AUMs" if cl.aum_fraction > 0
               else f"AUM below {cl.aum_threshold:g}")
        return f"{cut} (one training run; relabels from its in-sample probabilities)"
    rule = f"cleanlab {cl.filter_by}, {cl.folds}-fold out-of-sample probabilities"
    if cl.rounds > 1:
        rule += f" (round {cl.rounds} of detection" + (", flags kept on soft targets)" if cl.round_targets == "soft"
                                                       else ")")
    if cl.ensemble:
        rule += f", averaged with {len(cl.ensemble)} more detection(s) (--cl.ensemble)"
    return rule


@dataclass
class LabelIssueResult:
    """What :func:`detect_label_issues` found.

    Attributes:
        manifest: removals and relabels (also written as removal_list.txt / relabel_map.json).
        issues: (M,) bool cleanlab's verdict per training sample.
        pred_probs: (M, C) out-of-sample probabilities.
        metrics: detection quality against the injected noise (empty without a noise mask).
    """

    manifest: CleaningManifest
    issues: np.ndarray
    pred_probs: np.ndarray
    metrics: dict


def round_estimate(labels: np.ndarray, probs: np.ndarray, issues: np.ndarray, members: Sequence,
                   filter_by: str) -> tuple[np.ndarray, np.ndarray]:
    """What a later round of detection trains on: the last round's (M, C) ``probs`` and (M,) bool ``issues``, or
    with ``--cl.ensemble`` ``members`` (:func:`services.detection_ensemble.load_members`) their mean with the
    members' and the issues cleanlab's ``filter_by`` finds on it. Returns (probs (M, C), flagged (M,) bool).

    Raises:
        ValueError: a member's files changed since they were checked (:func:`check_unchanged`).
    """
    if not members:
        return probs, issues
    check_unchanged(members)  # as checked before the last round's folds trained
    mean = ensemble_mean(probs, members)
    return mean, find_label_issues(labels, mean, filter_by)


def kfold_rounds(cfg: ExperimentConfig, data: ImageNetDataManager, out_dir: Path, folds_dir: Path,
                 cl: ConfidentLearningConfig, members: Sequence, noise_mask: Optional[np.ndarray] = None,
                 original_labels: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The K-fold rounds of :func:`detect_label_issues`: round 1's fold models in ``folds_dir``, round r > 1's in
    ``folds_dir/round_r`` on the previous round's cleaning (:func:`round_estimate`; ``cl.round_targets``), every
    held-out sample scored in each round. With ``cl.rounds`` > 1 each round's probabilities go to
    ``out_dir/pred_probs_round{r}.npy``.

    Returns:
        the last round's probabilities (M, C) float32, its issues (M,) bool by ``cl.filter_by`` and, with
        ``cl.rounds`` > 1, one :func:`round_summary` per round (else []).

    Raises:
        ValueError, RunInterrupted: as :func:`out_of_sample_pred_probs` and :func:`round_estimate`.
    """
    probs = out_of_sample_pred_probs(cfg, data, folds_dir, cl.folds, cl.fold_seed, hflip=cl.tta_hflip)
    issues = find_label_issues(data.train_labels, probs, cl.filter_by)
    rounds = []
    for r in range(1, cl.rounds + 1):
        if r > 1:  # new fold models on the previous round's cleaning, scoring every held-out sample
            before, flagged = round_estimate(data.train_labels, probs, issues, members, cl.filter_by)
            soft = cl.round_targets == "soft"
            log.info("detection round %d/%d: fold models train on the %d samples round %d did not flag%s", r,
                     cl.rounds, int((~flagged).sum()), r - 1,
                     f" and its {int(flagged.sum())} flagged ones on soft targets" if soft else "")
            probs = out_of_sample_pred_probs(cfg, data, folds_dir / f"round_{r}", cl.folds, cl.fold_seed,
                                             hflip=cl.tta_hflip, train_mask=None if soft else ~flagged,
                                             soft_targets=(flagged, before) if soft else None)
            issues = find_label_issues(data.train_labels, probs, cl.filter_by)
        if cl.rounds > 1:
            np.save(out_dir / f"pred_probs_round{r}.npy", probs)
            rounds.append(round_summary(r, probs, issues, noise_mask, original_labels))
    return probs, issues, rounds


def detect_label_issues(cfg: ExperimentConfig, data: ImageNetDataManager, out_dir: Path,
                        cl: ConfidentLearningConfig, noise_mask: Optional[np.ndarray] = None,
                        original_labels: Optional[np.ndarray] = None, folds_dir: Optional[Path] = None
                        ) -> LabelIssueResult:
    """The whole detection: K-fold probabilities → cleanlab → manifest, written to ``out_dir``.

    Writes ``pred_probs.npy`` and ``given_labels.npy`` (row i for sample id ``train_ids.npy[i]``),
    ``label_issues.csv`` (one row per flagged sample: id, path, given, predicted, confidence, action),
    ``removal_list.txt``, ``relabel_map.json``
    and, when ``noise_mask`` is given, ``noise_mask.npy`` and ``detection_metrics.json``: precision, recall and
    F1 of the flagged set against the injected noise, overall and per given class ("per_class", with WNIDs), plus
    how many relabels restored the original label.
    With ``cl.rounds`` > 1, each round's probabilities are also saved (``pred_probs_round{r}.npy``; round r > 1's
    fold runs in ``round_r/``, trained on what round r-1 did not flag, or with ``cl.round_targets`` 'soft' on
    every sample, round r-1's flags on its probabilities; with ``cl.ensemble`` round r-1's flags and
    probabilities are its mean with the members', :func:`round_estimate`) and ``detection_metrics.json`` gets a
    "rounds" list: each round's flagged count (with ``cl.filter_by``), and against the truth its precision, recall
    and the fold models' top-1. The issues and the manifest come from the last round. With ``cl.ensemble``, they
    and ``pred_probs.npy`` come from the mean of the last round's probabilities and the members' (checked before any
    fold trains), ``ensemble.json`` records the members, and the "rounds" figures stay this detection's own.
    ``python -m services.label_review --issues out_dir`` reviews the flagged samples.

    Args:
        cfg: the training recipe of the fold models.
        data: the training set (its labels are the ones checked).
        out_dir: the detection folder.
        cl: folds, filter, relabel threshold and ensemble members (``cl.ensemble``).
        noise_mask: (M,) bool injected flips, for evaluation only (never seen by the detector).
        original_labels: (M,) labels before injection, to score relabels.
        folds_dir: where the K fold runs live (default ``out_dir``): another detection's folder shares its fold
            models and probabilities (:func:`out_of_sample_pred_probs` reuses finished folds), e.g. to apply a
            second cleaning policy to the same detection.

    Raises:
        ValueError: ``--cl.round_targets soft`` with MixUp/CutMix in ``cfg``; as :func:`load_members` and
            :func:`out_of_sample_pred_probs`.
        RunInterrupted: a fold model was stopped by a signal (its checkpoint is saved; the same call continues).
    """
    if cl.round_targets == "soft" and (cfg.training.mixup_alpha > 0 or cfg.training.cutmix_alpha > 0):
        raise ValueError("--cl.round_targets soft cannot train fold models with MixUp/CutMix (the mix takes hard "
                         "labels); set --training.mixup_alpha and --training.cutmix_alpha to 0 for the fold models")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folds_dir = Path(folds_dir or out_dir)
    members = load_members(cl.ensemble, data.train_ids, data.train_labels)  # checked before any fold trains
    rounds = []
    if cl.scores == "aum":
        aum, probs = aum_pred_probs(cfg, data, folds_dir)
        issues = aum_flags(aum, cl.aum_threshold, cl.aum_fraction)
        np.save(out_dir / "aum.npy", aum)
    else:
        probs, issues, rounds = kfold_rounds(cfg, data, out_dir, folds_dir, cl, members, noise_mask, original_labels)
    if members:  # the mean with the other detections' probabilities decides (the rounds' files stay this one's)
        check_unchanged(members)  # the files as checked before the folds trained
        probs = ensemble_mean(probs, members)
        issues = find_label_issues(data.train_labels, probs, cl.filter_by)
        write_ensemble_record(out_dir, members)
    if folds_dir.resolve() != out_dir.resolve():  # the label review finds the fold models (Grad-CAM) via out_dir
        link_fold_runs(folds_dir, out_dir, cl.folds, cl.rounds, aum=cl.scores == "aum")
    # whole files or none: another detection may read them as an ensemble member (memory-mapped)
    atomic_write(out_dir / "pred_probs.npy", lambda f: np.save(f, probs))
    atomic_write(out_dir / "train_ids.npy", lambda f: np.save(f, data.train_ids))  # row i is sample train_ids[i]
    atomic_write(out_dir / "given_labels.npy", lambda f: np.save(f, data.train_labels))  # detection_sweep reruns
    if noise_mask is not None:  # for the label review's precision against the truth
        np.save(out_dir / "noise_mask.npy", np.asarray(noise_mask, dtype=bool))
    manifest = manifest_from_issues(data.train_ids, data.train_labels, probs, issues, cl.relabel_threshold)
    manifest.write(out_dir, header=f"{detection_rule(cl)}; relabel threshold {cl.relabel_threshold}; "
                                   f"{issues.sum()} of {issues.size} flagged")
    write_issue_table(out_dir / ISSUES_FILE, data, probs, issues, manifest.relabel_ids)
    accuracy = float((probs.argmax(1) == data.train_labels).mean()) if probs.size else 0.0
    sample = "in_sample" if cl.scores == "aum" else "out_of_sample"  # the AUM run trained on what it scores
    metrics: dict = {"num_samples": int(issues.size), "num_issues": int(issues.sum()),
                     "num_removed": manifest.num_remove, "num_relabelled": manifest.num_relabel,
                     f"{sample}_agreement_with_given_labels": accuracy, **dataclasses.asdict(cl)}
    if rounds:
        metrics["rounds"] = rounds
    if noise_mask is not None:
        metrics.update(detection_metrics(issues, noise_mask, data.train_labels, data.num_classes))
        if cl.scores == "aum":  # the ranking itself, whatever the threshold
            metrics["aum_ranking"] = ranking_metrics(-aum, noise_mask)
        for row in metrics["per_class"]:  # per given (noisy) class, named by WNID
            row["wnid"] = data.classes[row["class"]]
        if original_labels is not None:
            pos = np.isin(data.train_ids, manifest.relabel_ids)
            correct = int((probs.argmax(1)[pos] == np.asarray(original_labels)[pos]).sum())
            metrics["relabels_restoring_original"] = correct
            metrics["relabel_accuracy"] = correct / max(1, manifest.num_relabel)
            metrics[f"{sample}_agreement_with_true_labels"] = float(
                (probs.argmax(1) == np.asarray(original_labels)).mean()) if probs.size else 0.0
        (out_dir / "detection_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("detection vs injected noise: %d flagged, precision %.3f, recall %.3f, F1 %.3f",
                 metrics["num_flagged"], metrics["precision"], metrics["recall"], metrics["f1"])
    return LabelIssueResult(manifest=manifest, issues=issues, pred_probs=probs, metrics=metrics)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Detect label issues in a dataset's own labels; see the module docstring. Returns the exit code
    (:func:`core.cli.run_entry`)."""
    from core.cli import run_entry
    from core.config import build_parser
    from core.logger import setup_logging

    parser = build_parser("Find label issues with K-fold confident learning and write a cleaning manifest.")
    parser.add_class_arguments(ConfidentLearningConfig, nested_key="cl")

    def body() -> int:
        ns = parser.parse_args(list(argv if argv is not None else sys.argv[1:]))
        init = parser.instantiate(ns) if hasattr(parser, "instantiate") else parser.instantiate_classes(ns)
        cfg = ExperimentConfig(data=init.data, model=init.model, training=init.training, logging=init.logging)
        if cfg.logging.output_dir is None:
            raise ValueError("--logging.output_dir is required: the manifest and fold runs are written there")
        out_dir = Path(cfg.logging.output_dir)
        setup_logging(out_dir, cfg.logging.log_level)
        data = ImageNetDataManager(cfg.data, seed=cfg.training.seed, run_dir=out_dir,
                                   progress=cfg.logging.progress_bar)
        data.write_class_distribution(out_dir)
        result = detect_label_issues(cfg, data, out_dir, init.cl)
        log.info("%d of %d samples flagged: %d to remove, %d to relabel; manifest in %s", result.issues.sum(),
                 result.issues.size, result.manifest.num_remove, result.manifest.num_relabel, out_dir)
        return 0

    return run_entry(body)


if __name__ == "__main__":
    sys.exit(main())
