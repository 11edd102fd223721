"""The training order: deterministic per (seed, epoch), sharded across DDP ranks, resumable mid-epoch."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from torch.utils.data import Sampler

class EpochSampler(Sampler):
    """Yields ``(position, epoch, resolution)`` keys for one epoch of training, deterministically.

    The order is a permutation seeded by (seed, epoch). Under DDP the order is cut into consecutive blocks of
    ``batch_size`` and micro-batch m of rank r is block ``m * num_replicas + r``: N processes with batch B see
    exactly the micro-batches of one process with batch B and accumulation N, so the two runs can be compared
    step for step. Each epoch is truncated to whole optimizer steps, so every epoch ends on an accumulation
    boundary. ``set_epoch(epoch, start_micro_batch)`` resumes mid-epoch:
    the batches already trained are skipped, not re-drawn.

    Args:
        num_samples: dataset length.
        batch_size: micro-batch size per process.
        grad_accum_steps: micro-batches per optimizer step.
        seed: shuffling seed.
        resolution_at: epoch → training crop size (px); progressive resizing plugs in here.
        num_replicas, rank: DDP world size and this process's rank.
        shuffle: False gives the identity order (for tests).

    Raises:
        ValueError: the dataset is too small for one optimizer step.
    """

    def __init__(self, num_samples: int, batch_size: int, grad_accum_steps: int, seed: int,
                 resolution_at: Callable[[int], int], num_replicas: int = 1, rank: int = 0, shuffle: bool = True):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.resolution_at, self.num_replicas, self.rank, self.shuffle = resolution_at, num_replicas, rank, shuffle
        per_rank = num_samples // num_replicas
        self.micro_batches_per_epoch = (per_rank // batch_size) // grad_accum_steps * grad_accum_steps
        if self.micro_batches_per_epoch == 0:
            raise ValueError(
                f"{num_samples} training images give no full optimizer step with --training.batch_size "
                f"{batch_size} x --training.grad_accum_steps {grad_accum_steps} x {num_replicas} process(es); "
                f"lower the batch size or the accumulation, or use more data (--data.fraction)")
        self.epoch, self.start_micro_batch = 0, 0

    def set_epoch(self, epoch: int, start_micro_batch: int = 0) -> None:
        """Select the epoch, skipping its first ``start_micro_batch`` micro-batches (mid-epoch resume)."""
        if not 0 <= start_micro_batch <= self.micro_batches_per_epoch:
            raise ValueError(f"start_micro_batch {start_micro_batch} outside [0, {self.micro_batches_per_epoch}]")
        self.epoch, self.start_micro_batch = epoch, start_micro_batch

    def __len__(self) -> int:
        return (self.micro_batches_per_epoch - self.start_micro_batch) * self.batch_size

    def positions(self) -> np.ndarray:
        """This rank's training-set positions for the whole selected epoch, in training order: (micro-batches x
        batch_size,) int64; micro-batch m is ``positions()[m * batch_size:(m + 1) * batch_size]`` (also when the
        epoch resumes mid-way). The training-dynamics record (:mod:`core.dynamics`) reads it."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        m, r, b = self.micro_batches_per_epoch, self.num_replicas, self.batch_size
        return order[: m * r * b].reshape(m, r, b)[:, self.rank, :].reshape(-1)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        resolution = int(self.resolution_at(self.epoch))
        for position in self.positions()[self.start_micro_batch * self.batch_size:].tolist():
            yield position, self.epoch, resolution
