"""Multi-process training through torchrun: process-group set-up from its environment variables, and tear-down."""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    NCCL on CUDA GPUs (each process takes ``cuda:LOCAL_RANK``), gloo on CPUs. Without torchrun (no WORLD_SIZE,
    or 1) nothing is initialised and a single-process context is returned. Idempotent.

    Raises:
        RuntimeError: WORLD_SIZE > 1 but fewer CUDA devices than LOCAL_RANK + 1 on a CUDA machine.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices; "
                                   f"use --nproc_per_node <= {torch.cuda.device_count()}")
            torch.cuda.set_device(local_rank)
            backend = "nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_minutes))
        log.info("process group: rank %d of %d (local rank %d), backend %s", rank, world_size, local_rank, backend)
    return DistributedContext(rank, world_size, local_rank)


def destroy_distributed() -> None:
    """Leave the process group (no-op when none was initialised).

    Collects garbage first, so that a DDP wrapper left in a reference cycle (its reducer holds the group) is torn
    down while the group still exists rather than at interpreter exit, where gloo has been seen to abort the process
    (:meth:`core.trainer.ImageNetTrainer.close`).
    """
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes in place (no-op in a single process) and return it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
