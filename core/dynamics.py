"""Training dynamics: every training sample's margin in every epoch, recorded on the training pass itself.

The margin of a sample in an epoch is ``logit[given label] - max(logit[other classes])`` on the (augmented) batch
the optimizer trained on. Averaged over the epochs it is the Area Under the Margin (AUM; Pleiss, Zhang, Elenberg &
Weinberger, "Identifying Mislabeled Data using the Area Under the Margin Ranking", NeurIPS 2020): a correctly
labelled sample is learnt early and its margin grows; a mislabelled one is pulled towards its true class by the
samples like it, so its margin stays low or negative until (if ever) it is memorised. The record costs no
forward pass: it reads the logits the training step computed anyway, so a label-issue ranking comes with the
noisy run itself instead of K fold trainings (``services.label_issues.dynamics_label_issues``).

Storage: (E, N) float32 margins and (E, N) int32 top other classes on the training device (E epochs, N training
samples: 8 bytes per sample and epoch; 0.9 GB for ILSVRC2012 at 90 epochs), written with every ``last.pt`` to
``logs/dynamics.npz``. Entries are set, not summed, so a resumed run that replays micro-batches rewrites the same
values. Under DDP each rank records the micro-batches it trains and the ranks' records are merged at every epoch
end; a run stopped mid-epoch under DDP keeps only rank 0's part of that epoch (the others' samples miss that one
epoch: :func:`area_under_margin` averages over the epochs a sample was seen).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from core.atomic import atomic_write
from core.label_noise import exact_count, lowest_flagged

log = logging.getLogger(__name__)

DYNAMICS_FILE = "dynamics.npz"
"""Where a run with ``--training.record_dynamics`` writes its record, under ``<output_dir>/logs/``."""


class TrainingDynamics:
    """Per-sample, per-epoch training margins and the class that came closest to the given one.

    Args:
        num_samples: N, the training set's length (positions as the sampler yields them).
        epochs: E, the run's epochs.
        device: where the record lives (the training device: no host sync per step).
    """

    def __init__(self, num_samples: int, epochs: int, device: torch.device):
        self.margin = torch.full((epochs, num_samples), float("nan"), dtype=torch.float32, device=device)
        self.other = torch.full((epochs, num_samples), -1, dtype=torch.int32, device=device)

    @torch.no_grad()
    def add(self, epoch: int, positions: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Record one micro-batch of 0-based ``epoch``: ``positions`` (B,) int64 training-set positions, ``logits``
        (B, C) the training forward pass's outputs, ``targets`` (B,) int64 the labels it trained on."""
        z = logits.detach().float()
        given = z.gather(1, targets[:, None]).squeeze(1)
        top_other, other = z.scatter(1, targets[:, None], float("-inf")).max(1)
        self.margin[epoch, positions] = given - top_other
        self.other[epoch, positions] = other.to(torch.int32)

    def merge_ranks(self, epoch: int) -> None:
        """DDP: give every rank every rank's record of 0-based ``epoch`` (collective; each sample is trained by
        one rank per epoch, so a sum over ranks of the seen entries is the record)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        seen = ~torch.isnan(self.margin[epoch])
        stacked = torch.stack([torch.where(seen, self.margin[epoch], 0.0),
                               torch.where(seen, self.other[epoch].float() + 1, 0.0), seen.float()])
        torch.distributed.all_reduce(stacked)
        seen_any = stacked[2] > 0
        self.margin[epoch] = torch.where(seen_any, stacked[0], float("nan"))
        self.other[epoch] = torch.where(seen_any, stacked[1] - 1, -1).round().to(torch.int32)

    def save(self, path: Path, sample_ids: np.ndarray, labels: np.ndarray, epochs_done: int) -> Path:
        """Write the record atomically as ``.npz``: margin (E, N) float32 (NaN: not trained on that epoch yet),
        other (E, N) int32 (-1 likewise), sample_ids (N,) and labels (N,) int64 (the labels trained on),
        epochs_done () int."""
        arrays = {"margin": self.margin.cpu().numpy(), "other": self.other.cpu().numpy(),
                  "sample_ids": np.asarray(sample_ids, np.int64), "labels": np.asarray(labels, np.int64),
                  "epochs_done": np.asarray(epochs_done)}
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    def load(self, path: Path, sample_ids: np.ndarray) -> bool:
        """Restore a record saved by :meth:`save` for the same samples and epochs; False (and a warning, the
        record starting empty) when the file is missing or was made for another training set or schedule."""
        path = Path(path)
        if not path.is_file():
            log.warning("no %s to resume the training-dynamics record from: the epochs before this session have "
                        "no margins", path)
            return False
        with np.load(path) as z:
            if z["margin"].shape != tuple(self.margin.shape) or not np.array_equal(z["sample_ids"], sample_ids):
                log.warning("%s was recorded for another training set or schedule (%s); starting an empty record",
                            path, z["margin"].shape)
                return False
            self.margin.copy_(torch.from_numpy(z["margin"]))
            self.other.copy_(torch.from_numpy(z["other"]))
        return True


def load_dynamics(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``dynamics.npz`` (see :meth:`TrainingDynamics.save`).

    Raises:
        FileNotFoundError: no such file (train with ``--training.record_dynamics true``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; train with --training.record_dynamics true to record it")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def area_under_margin(margin: np.ndarray, first_epoch: int = 0, last_epoch: Optional[int] = None) -> np.ndarray:
    """AUM (Pleiss et al. 2020): each sample's mean margin over epochs ``first_epoch`` to ``last_epoch``
    (0-based, inclusive; default the last), over the epochs it was trained on.

    Args:
        margin: (E, N) margins, NaN where a sample was not trained on.

    Returns:
        (N,) float32; low or negative = likely mislabelled; NaN for a sample never seen in that range.
    """
    window = np.asarray(margin, np.float32)[first_epoch:None if last_epoch is None else last_epoch + 1]
    seen = ~np.isnan(window)
    total = np.where(seen, window, 0.0).sum(0)
    count = seen.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def aum_flags(aum: np.ndarray, threshold: float = 0.0, fraction: float = 0.0) -> np.ndarray:
    """(N,) bool label issues from (N,) ``aum`` (in logits; NaN = never trained on, never flagged): AUM below
    ``threshold`` (Pleiss et al. 2020), or with ``fraction`` > 0 the ``round(fraction x scored)`` lowest AUMs of
    the scored samples (a count cut at a known or estimated noise rate; ties by position)."""
    if fraction <= 0:
        return aum < threshold
    scored = int(np.isfinite(aum).sum())
    count = exact_count(fraction, scored)
    if count == 0:
        log.warning("an AUM fraction of %g of %d scored samples flags none", fraction, scored)
    return lowest_flagged(-aum, count)
