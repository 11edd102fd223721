"""Early-learning regularization (ELR): a loss term that keeps a network from memorising wrong labels.

Liu, Niles-Weed, Razavian & Fernandez-Granda, "Early-Learning Regularization Prevents Memorization of Noisy Labels"
(NeurIPS 2020; reference code github.com/shengliu66/ELR, ``elr_loss``). Early in training a network fits the
clean majority of each class and predicts the true class of most mislabelled samples; it memorises the wrong labels
later. ELR keeps, for every training sample, a temporal ensemble of the model's own predictions,
``t <- beta * t + (1 - beta) * p`` each time the sample is trained on, and adds ``lambda * log(1 - <t, p>)`` to the
loss: its gradient pulls the prediction ``p`` towards ``t``, the early-learning target, and so against the
cross-entropy's pull towards a wrong given label. The constants of the paper's CIFAR-10 configuration (10 classes,
as Imagenette) are ``beta = 0.7``, ``lambda = 3``; probabilities are clamped to [1e-4, 1 - 1e-4] as there.

Storage: an (N, C) float32 table on the training device, 4 * N * C bytes (0.4 MB for Imagenette's 9,469 x 10;
5.1 GB for ILSVRC2012's 1.28 M x 1,000), saved in the checkpoint with the training-set ids it belongs to, for an
exact resume. A micro-batch's new targets are used by its term at once but written to the table only at the
optimizer step that ends its accumulation cycle (:meth:`EarlyLearningRegularization.commit`): a run stopped
mid-cycle replays those micro-batches on resume, and an average is not safe to apply twice (each position is
trained once per epoch, so reading ``beta * t + (1 - beta) * p`` before writing it is the same term). Under DDP
every rank keeps the whole table and the ranks exchange each micro-batch's updates (an all-gather of B x C
probabilities), so the table is the same on every rank at every step and a resume from rank 0's checkpoint is
exact. The logged train loss is the cross-entropy plus this term (which is <= 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.checkpoint import CheckpointMismatchError


class EarlyLearningRegularization:
    """The ELR term and its per-sample targets.

    Args:
        num_samples: N, the training set's length (positions as the sampler yields them).
        num_classes: C, the model's outputs.
        beta: momentum of the temporal ensemble, in [0, 1) (the paper's CIFAR-10 value 0.7).
        strength: lambda, the term's weight, > 0 (the paper's CIFAR-10 value 3).
        device: where the table lives (the training device: no host sync per step).

    Raises:
        ValueError: beta outside [0, 1) or a strength that is not > 0.
    """

    clamp = 1e-4  # the reference code's clamp of the probabilities (keeps log(1 - <t, p>) finite)

    def __init__(self, num_samples: int, num_classes: int, beta: float, strength: float, device: torch.device):
        if not 0 <= beta < 1 or not strength > 0:
            raise ValueError(f"ELR needs beta in [0, 1) and a strength > 0, got beta {beta} and strength {strength}; "
                             f"the paper's CIFAR-10 values are --training.elr_beta 0.7 --training.elr_lambda 3")
        self.beta = beta
        self.strength = strength
        self.targets = torch.zeros(num_samples, num_classes, dtype=torch.float32, device=device)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (positions, new targets) until the step

    def __call__(self, positions: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Update the targets of a micro-batch and return its ELR term.

        Args:
            positions: (B,) int64 training-set positions of the micro-batch (the sampler's).
            logits: (B, C) the training forward pass's outputs (with their graph: the term's gradient flows
                through them).

        Returns:
            () ``strength * mean(log(1 - <t_i, p_i>))`` over the micro-batch, with the updated targets t_i
            (written to the table at the next :meth:`commit`).
        """
        probs = F.softmax(logits.float(), dim=1).clamp(self.clamp, 1 - self.clamp)
        with torch.no_grad():
            update = probs / probs.sum(1, keepdim=True)
            everyone, update = _gather_ranks(positions, update)
            new = self.beta * self.targets[everyone] + (1 - self.beta) * update
            self._pending.append((everyone, new))
            b = logits.shape[0]
            rank = torch.distributed.get_rank() if _world_size() > 1 else 0
            own = new[rank * b:(rank + 1) * b]  # the all-gather puts rank r's B rows r-th
        return self.strength * torch.log(1 - (own * probs).sum(1)).mean()

    def added_to(self, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 positions: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The loss of a micro-batch at training-set ``positions`` (B,): ``criterion(logits, targets)`` plus this
        term on the same logits."""
        return lambda logits, targets: criterion(logits, targets) + self(positions, logits)

    @torch.no_grad()
    def commit(self) -> None:
        """Write the new targets of the micro-batches since the last optimizer step (call it at each step)."""
        for positions, new in self._pending:
            self.targets[positions] = new
        self._pending.clear()

    def state_dict(self, sample_ids: np.ndarray) -> dict[str, torch.Tensor]:
        """The committed targets (N, C) on the CPU and ``sample_ids`` (N,), the training set they belong to, for
        the checkpoint."""
        return {"targets": self.targets.detach().cpu(), "sample_ids": torch.as_tensor(np.asarray(sample_ids, np.int64))}

    def load_checkpoint(self, ckpt: dict[str, Any], path: Path, sample_ids: np.ndarray) -> None:
        """Restore the targets from a trainer checkpoint ``ckpt`` read from ``path`` (:meth:`load_state_dict`).

        Raises:
            CheckpointMismatchError: the checkpoint has no ELR targets (trained without ELR).
            ValueError: as :meth:`load_state_dict`.
        """
        if "elr" not in ckpt:
            raise CheckpointMismatchError(f"{path} has no ELR targets but --training.elr_lambda is set; resume "
                                          f"with --training.elr_lambda 0 or start a new run")
        self.load_state_dict(ckpt["elr"], sample_ids)

    def load_state_dict(self, state: dict[str, torch.Tensor], sample_ids: np.ndarray) -> None:
        """Restore :meth:`state_dict`'s targets for the training set ``sample_ids`` (N,); uncommitted updates are
        dropped (their micro-batches replay).

        Raises:
            ValueError: targets saved for another training set (other ids or order) or class count, naming the fix.
        """
        targets, saved_ids = state["targets"], state["sample_ids"].numpy()
        if tuple(targets.shape) != tuple(self.targets.shape) or not np.array_equal(saved_ids, sample_ids):
            raise ValueError(f"the checkpoint's ELR targets ({tuple(targets.shape)}) were saved for another training "
                             f"set or class count than this run's ({tuple(self.targets.shape)}); resume with the "
                             f"same --data settings or start a new run")
        self.targets.copy_(targets)
        self._pending.clear()


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_ranks(positions: torch.Tensor, update: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's (positions, update) of this micro-batch, rank by rank; the inputs alone without DDP. Every rank
    trains B distinct positions per micro-batch (the sampler cuts each epoch into whole micro-batches, no padding)."""
    world = _world_size()
    if world == 1:
        return positions, update
    pos = [torch.empty_like(positions) for _ in range(world)]
    upd = [torch.empty_like(update) for _ in range(world)]
    torch.distributed.all_gather(pos, positions)
    torch.distributed.all_gather(upd, update)
    return torch.cat(pos), torch.cat(upd)
