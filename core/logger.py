"""Run logging: console and file log, one metrics.jsonl line per epoch, and optional Weights & Biases."""

from __future__ import annotations

import json
import logging
import math
import os
import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from core.config import PROJECT_ROOT, ExperimentConfig

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: Optional[Path], level: str = "INFO", rank: int = 0) -> None:
    """Send the library's ``logging`` output to the console and to ``log_dir/train.log``.

    Only rank 0 writes the file; other ranks log warnings and errors to the console only.
    Calling it again (a second run in one process) replaces the handlers it installed before.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_resnet_imagenet", False):
            root.removeHandler(h)
            h.close()
    root.setLevel(level if rank == 0 else "WARNING")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None and rank == 0:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(log_dir) / "train.log"))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        h._resnet_imagenet = True  # type: ignore[attr-defined]
        root.addHandler(h)


_IMPORTED_AT = time.time()


@functools.cache  # a constant of the process: read /proc once, not at every epoch
def process_start_time() -> float:
    """When this process started (s since the epoch): from ``/proc/self/stat`` on Linux (to the clock tick, plus
    the 1 s resolution of the boot time), else when this module was imported. Time-to-accuracy figures count from
    here, so interpreter start, imports and dataset indexing are included, as a user's wall clock sees them."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


def git_commit() -> Optional[str]:
    """The project's current git commit (with '-dirty' when the tree has changes), or None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class MetricsLogger:
    """Appends one JSON object per epoch to ``metrics.jsonl`` and mirrors it to W&B when enabled.

    Keys written by the trainer: epoch (1-based), train_loss, train_top1 (%), val_loss, val_top1 (%),
    val_top5 (%), the same with an ``_ema`` suffix when EMA is on, lr (at the epoch's end), images_per_sec
    (training throughput), epoch_time_s (training only, s), eval_time_s (evaluation, s; epochs that evaluate),
    wall_time_s (s from this process's start to the epoch's end, :func:`process_start_time`), and
    peak_gpu_mem_mb on CUDA. NaN values are written as null.
    """

    def __init__(self, path: Path, wandb_run: Any = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wandb_run = wandb_run

    def log_epoch(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in clean.items() if v is not None and k != "epoch"},
                               step=int(record["epoch"]))

    def truncate_after(self, epoch: int) -> None:
        """Drop lines for epochs > ``epoch`` (a resumed run rewrites what the interrupted one had logged past
        its last checkpoint)."""
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
        self.path.write_text("".join(line + "\n" for line in keep))


def init_wandb(cfg: ExperimentConfig, run_dir: Path, run_name: str, resume_id: Optional[str] = None) -> Any:
    """Start a W&B run (offline by default, files under ``run_dir/wandb``) logging the resolved config.

    Raises:
        ImportError: wandb is not installed, with the install command.
    """
    try:
        import wandb
    except ImportError as e:
        raise ImportError("--logging.wandb true needs the wandb package: pip install wandb") from e
    return wandb.init(project=cfg.logging.wandb_project, group=cfg.logging.wandb_group, name=run_name,
                      mode=cfg.logging.wandb_mode, dir=str(run_dir), config=cfg.to_dict(),
                      id=resume_id, resume="allow" if resume_id else None)


def layer_statistics(model: torch.nn.Module) -> dict[str, float]:
    """Per-parameter weight and gradient mean and std, keyed ``weights/<name>/mean`` etc. (for W&B).

    Gradients are read as they stand (call before ``zero_grad``); parameters without a gradient are skipped.
    """
    stats: dict[str, float] = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = p.detach().float()
            stats[f"weights/{name}/mean"] = w.mean().item()
            stats[f"weights/{name}/std"] = w.std().item() if w.numel() > 1 else 0.0
            if p.grad is not None:
                g = p.grad.detach().float()
                stats[f"grads/{name}/mean"] = g.mean().item()
                stats[f"grads/{name}/std"] = g.std().item() if g.numel() > 1 else 0.0
    return stats
