"""Per-sample soft training targets: some samples of a training set train on a probability vector, the rest on
their hard label.

The label-noise study's soft-label cleaning keeps every sample that detection flags and trains it on the detector's
out-of-sample probabilities instead of relabelling or removing it: the soft targets of knowledge distillation
(Hinton, Vinyals & Dean 2015) used for label correction, as in Tanaka et al. (CVPR 2018) and Reed et al. 2015
("soft bootstrapping", whose target beta * given + (1 - beta) * predicted is beta = 0 here: the flagged label is
replaced, not mixed in). Only the flagged rows are stored, so a 1.28 M-image ImageNet with 20 % flagged keeps a
(256k, 1000) table, not (1.28 M, 1000).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from core.label_noise import ManifestReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SoftTargets:
    """Which training positions train on a probability vector, and which vector.

    Attributes:
        rows: (M,) int64, for training position i (row i of ``train_ids``) the row of ``probs`` it trains on, or -1
            for its hard label.
        probs: (S, C) float32, each row a probability vector (non-negative, sums to 1 within 1e-3).

    Raises:
        ValueError: rows not 1-D integers in [-1, S), a row shared by two positions, or probs that are not
            probability vectors.
    """

    rows: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        rows, probs = np.asarray(self.rows), np.asarray(self.probs)
        if rows.ndim != 1 or probs.ndim != 2 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"soft targets need integer rows (M,) and probs (S, C), got {rows.dtype} {rows.shape} "
                             f"and {probs.shape}")
        if rows.size and (rows.min() < -1 or rows.max() >= probs.shape[0]):
            raise ValueError(f"soft-target rows must lie in [-1, {probs.shape[0]}), got [{rows.min()}, {rows.max()}]")
        if np.unique(rows[rows >= 0]).size != int((rows >= 0).sum()):
            raise ValueError("two training positions share a soft-target row; give each its own")
        if probs.size and (not np.isfinite(probs).all() or probs.min() < 0
                           or np.abs(probs.sum(1) - 1).max() > 1e-3):
            raise ValueError("soft targets must be probability vectors (finite, >= 0, each row summing to 1); "
                             "pass softmax outputs, not logits")
        object.__setattr__(self, "rows", rows.astype(np.int64))
        object.__setattr__(self, "probs", probs.astype(np.float32))

    @classmethod
    def for_flagged(cls, flagged: np.ndarray, pred_probs: np.ndarray) -> "SoftTargets":
        """Soft targets for the flagged positions only: each trains on its row of ``pred_probs``.

        Args:
            flagged: (M,) bool, the positions to train on a soft target.
            pred_probs: (M, C) probabilities, row i for position i (e.g. out-of-sample K-fold probabilities).

        Raises:
            ValueError: shapes that disagree, or rows that are not probability vectors.
        """
        flagged = np.asarray(flagged, dtype=bool)
        pred_probs = np.asarray(pred_probs)
        if flagged.ndim != 1 or pred_probs.ndim != 2 or pred_probs.shape[0] != flagged.size:
            raise ValueError(f"flagged (M,) and pred_probs (M, C) must share M, got {flagged.shape} and "
                             f"{pred_probs.shape}")
        rows = np.full(flagged.size, -1, dtype=np.int64)
        rows[flagged] = np.arange(int(flagged.sum()))
        return cls(rows, pred_probs[flagged])

    @property
    def num_soft(self) -> int:
        """How many positions train on a soft target."""
        return int(self.probs.shape[0])

    def check(self, num_samples: int, num_classes: int) -> None:
        """Raise ValueError unless these targets fit a training set of ``num_samples`` and ``num_classes``."""
        if self.rows.size != num_samples:
            raise ValueError(f"soft targets for {self.rows.size} samples do not fit a training set of {num_samples}; "
                             f"build them after the training subset is final")
        if self.probs.shape[1] != num_classes:
            raise ValueError(f"soft targets over {self.probs.shape[1]} classes do not fit a model with {num_classes} "
                             f"outputs; give one probability per output class")


class SoftTargetTable:
    """The device copy of :class:`SoftTargets` that the training step reads.

    Args:
        soft: the targets, ``probs`` (S, num_classes); num_classes: C of the model's output; device: where the step
            runs.
    """

    def __init__(self, soft: SoftTargets, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.rows = torch.from_numpy(soft.rows).to(device)
        # one spare row (read for the hard positions, then discarded): a gather and a where, no host sync per step
        self.probs = torch.from_numpy(np.concatenate([soft.probs, np.zeros((1, num_classes), np.float32)])).to(device)

    def __call__(self, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss targets of a batch.

        Args:
            positions: (B,) int64 training positions of the batch (the sampler's); targets: (B,) int64 hard labels.

        Returns:
            (B, C) float32: the soft target of each soft position, the one-hot hard label of the others.
        """
        rows = self.rows[positions]
        soft = self.probs[torch.where(rows >= 0, rows, self.probs.shape[0] - 1)]
        return torch.where((rows >= 0)[:, None], soft, F.one_hot(targets, self.num_classes).float())


def soft_target_table(soft: Optional[SoftTargets], num_samples: int, num_classes: int, device: torch.device,
                      mixing: bool = False) -> Optional[SoftTargetTable]:
    """The trainer's device table for a training set's soft targets, or None without them.

    Args:
        soft: the data's ``train_soft_targets``; num_samples: M of the training set; num_classes: C of the model;
        device: where the step runs; mixing: MixUp/CutMix is on.

    Raises:
        ValueError: soft targets with MixUp/CutMix (torchvision's mix takes hard labels), or sized for another
            training set.
    """
    if soft is None:
        return None
    if mixing:
        raise ValueError("soft training targets and --training.mixup_alpha/--training.cutmix_alpha cannot be "
                         "combined (the mix takes hard labels); set both alphas to 0")
    soft.check(num_samples, num_classes)
    log.info("%d of %d training samples train on soft targets", soft.num_soft, num_samples)
    return SoftTargetTable(soft, num_classes, device)


@dataclass(frozen=True, eq=False)
class SoftLabelCleaning:
    """A cleaning that keeps every sample (:func:`soft_label_cleaning`).

    Attributes:
        labels: (M,) int64 hard labels: the given label, or for a flagged sample its most probable class (what
            train top-1 and the count of wrong labels read; the loss reads ``targets``).
        targets: the flagged samples' probability vectors.
        num_unchanged: flagged samples whose most probable class is their given label.
    """

    labels: np.ndarray
    targets: SoftTargets
    num_unchanged: int


def soft_label_cleaning(labels: np.ndarray, pred_probs: np.ndarray, flagged: np.ndarray) -> SoftLabelCleaning:
    """Keep every sample; each flagged one trains on its row of ``pred_probs`` instead of its given label.

    Args:
        labels: (M,) given labels; pred_probs: (M, C) out-of-sample probabilities (K-fold: row i from the model
            that did not train on sample i); flagged: (M,) bool label issues.

    Raises:
        ValueError: shapes that disagree, or probabilities that are not probability vectors.
    """
    labels = np.asarray(labels, dtype=np.int64)
    flagged = np.asarray(flagged, dtype=bool)
    if labels.shape != flagged.shape:
        raise ValueError(f"labels {labels.shape} and flagged {flagged.shape} must both be (M,)")
    targets = SoftTargets.for_flagged(flagged, pred_probs)
    predicted = targets.probs.argmax(1)
    hard = labels.copy()
    hard[flagged] = predicted
    return SoftLabelCleaning(hard, targets, int((predicted == labels[flagged]).sum()))


def apply_soft_label_cleaning(data: Any, pred_probs: np.ndarray, flagged: np.ndarray) -> ManifestReport:
    """:func:`soft_label_cleaning` on a data manager's training set (``train_labels``, ``set_train_labels``,
    ``set_train_soft_targets``): every sample kept, the flagged ones on their rows of ``pred_probs``.

    Returns:
        What it did as a manifest report: nothing removed, 'relabelled' = the samples on soft targets.

    Raises:
        ValueError: as :func:`soft_label_cleaning`.
    """
    cleaning = soft_label_cleaning(data.train_labels, pred_probs, flagged)
    data.set_train_labels(cleaning.labels)
    data.set_train_soft_targets(cleaning.targets)
    return ManifestReport(num_before=int(cleaning.labels.size), num_removed=0, num_relabelled=cleaning.targets.num_soft,
                          num_relabel_unchanged=cleaning.num_unchanged)
