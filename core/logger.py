"""Run logging: console and file log, one metrics.jsonl line per epoch, and optional Weights & Biases."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from tqdm.auto import tqdm

from core.config import PROJECT_ROOT, ExperimentConfig

if TYPE_CHECKING:  # torch is imported where it is used: progress_bar serves light command-line tools too
    import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: Optional[Path], level: str = "INFO", rank: int = 0) -> None:
    """Send the library's ``logging`` output to the console and to ``log_dir/train.log``.

    Only rank 0 writes the file; other ranks log warnings and errors to the console only.
    Calling it again (a second run in one process) replaces the handlers it installed before.
    """
    remove_library_handlers()
    root = logging.getLogger()
    root.setLevel(level if rank == 0 else "WARNING")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None and rank == 0:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(log_dir) / "train.log"))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        h._resnet_imagenet = True  # type: ignore[attr-defined]
        root.addHandler(h)


def remove_library_handlers() -> None:
    """Remove and close the root-logger handlers :func:`setup_logging` installed (console and ``train.log``)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_resnet_imagenet", False):
            root.removeHandler(h)
            h.close()


def format_metric(value: Optional[float], spec: str, suffix: str = "") -> str:
    """``value`` formatted with ``spec`` and ``suffix`` for a log line, or '-' when there is none (not evaluated)."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[float] = None, desc: str = "",
                 enabled: bool = True, unit: str = "it", **kwargs: Any) -> tqdm:
    """A tqdm bar (done/total, rate, elapsed and ETA) for a loop that can take more than a few seconds.

    Every long loop of the project (training epochs, evaluation, the LR finder, Grad-CAM, K-fold label-issue runs,
    dataset indexing, the device cache, dataset statistics, val sorting) goes through this, so that all go quiet
    together under ``--logging.progress_bar false`` (``enabled=False``). Only the rank-0 process of a
    ``torchrun`` job draws (torchrun's ``RANK`` variable); bars go to stderr and vanish when done
    (``leave=False``), the log lines stay. Imports no torch, so light command-line tools can use it.

    Args:
        iterable: what the loop walks (tqdm wraps it); None for a manually updated bar (``bar.update(n)``).
        total: number of steps, for the ETA (default ``len(iterable)`` when it has one).
        desc: what the loop does, shown before the bar ("indexing train", "evaluating").
        enabled: False draws nothing (the bar then just passes ``iterable`` through).
        unit: what one step is ("img", "batch", "class").
        kwargs: passed on to ``tqdm`` (e.g. ``initial``, ``unit_scale``).
    """
    kwargs.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True,
                disable=not enabled or os.environ.get("RANK", "0") != "0", **kwargs)


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
    """Appends one JSON object per epoch to ``metrics.jsonl`` and mirrors it to W&B and TensorBoard when enabled.

    Keys written by the trainer: epoch (1-based), train_loss, train_top1 (%), val_loss, val_top1 (%),
    val_top5 (%), the same with an ``_ema`` suffix when EMA is on, lr (at the epoch's end), images_per_sec
    (training throughput), epoch_time_s (training only, s), eval_time_s (evaluation, s; epochs that evaluate),
    wall_time_s (s from this process's start to the epoch's end, :func:`process_start_time`), run_time_s (s of
    training, evaluation and checkpointing up to the epoch's end, summed over every session of a resumed run), and
    peak_gpu_mem_mb on CUDA. NaN values are written as null.

    Args:
        path: the ``metrics.jsonl`` file.
        wandb_run: a W&B run from :func:`init_wandb`, or None.
        tensorboard: a :class:`TensorBoardLogger`, or None.
    """

    def __init__(self, path: Path, wandb_run: Any = None, tensorboard: Optional["TensorBoardLogger"] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wandb_run = wandb_run
        self.tensorboard = tensorboard

    def log_epoch(self, record: dict[str, Any], layer_stats: Optional[dict[str, float]] = None) -> None:
        """Write one epoch's ``record`` (must hold ``epoch``); ``layer_stats`` (:func:`layer_statistics`) go to the
        W&B history beside it, at the same step, and not to metrics.jsonl."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.wandb_run is not None:
            self.wandb_run.log({**{k: v for k, v in clean.items() if v is not None and k != "epoch"},
                                **(layer_stats or {})}, step=int(record["epoch"]))
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(clean)

    def truncate_after(self, epoch: int) -> None:
        """Drop lines for epochs > ``epoch`` (a resumed run rewrites what the interrupted one had logged past
        its last checkpoint)."""
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
        self.path.write_text("".join(line + "\n" for line in keep))


WANDB_SUMMARY_KEYS = ("val_top1", "val_top1_ema", "best_top1", "best_epoch", "epochs")
"""What a W&B run summary shows, set at the end of a run (:func:`finish_wandb`). The per-layer statistics stay in
the history only (``define_metric(..., summary="none")``)."""


def init_wandb(cfg: ExperimentConfig, run_dir: Path, run_name: str, resume_id: Optional[str] = None) -> Any:
    """Start a W&B run (offline by default, files under ``run_dir/wandb``) logging the resolved config.

    The per-layer ``weights/*`` and ``grads/*`` statistics are declared history-only, so the run summary lists
    the headline metrics rather than hundreds of per-layer numbers.

    Raises:
        ImportError: wandb is not installed, with the install command.
    """
    try:
        import wandb
    except ImportError as e:
        raise ImportError("--logging.wandb true needs the wandb package: pip install wandb") from e
    run = wandb.init(project=cfg.logging.wandb_project, group=cfg.logging.wandb_group, name=run_name,
                     mode=cfg.logging.wandb_mode, dir=str(run_dir), config=cfg.to_dict(),
                     id=resume_id, resume="allow" if resume_id else None)
    for pattern in ("weights/*", "grads/*"):
        run.define_metric(pattern, summary="none")
    return run


def finish_wandb(run: Any, result: dict[str, Any]) -> None:
    """Set the run summary to the headline metrics and close the run.

    Args:
        result: :meth:`core.trainer.ImageNetTrainer.fit`'s result: ``best_top1`` (%, the metric that chose
            best.pt: EMA val top-1 when EMA is on), ``best_epoch``, ``epochs_completed`` and ``final`` (the last
            evaluation's ``val_*`` metrics, possibly with ``_ema`` ones).
    """
    final = result.get("final") or {}
    summary = {"best_top1": result["best_top1"], "best_epoch": result["best_epoch"],
               "epochs": result["epochs_completed"],
               **{k: final[k] for k in ("val_top1", "val_top1_ema") if k in final}}
    run.summary.update(summary)
    run.finish()


def layer_statistics(model: torch.nn.Module, grad_scale: float = 1.0) -> dict[str, float]:
    """Per-parameter weight and gradient mean and std, for the W&B history.

    Keys: ``weights/<name>/mean``, ``weights/<name>/std``, ``grads/<name>/mean``, ``grads/<name>/std``, with the
    dots of the parameter name written as slashes (``weights/layer4/1/conv2/weight/std``): W&B reads a dot in a key
    as nesting, which would keep the key out of the ``weights/*`` patterns that hold it out of the run summary.

    Args:
        model: read as it stands: call before ``zero_grad``; parameters without a gradient (frozen) get none.
        grad_scale: the GradScaler's scale under fp16 AMP (the gradients are divided by it), else 1.

    Returns:
        {key: float}; the std of a one-element tensor is 0.
    """
    import torch

    keys: list[str] = []
    values: list[torch.Tensor] = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            path = name.replace(".", "/")
            for kind, t in (("weights", p), ("grads", p.grad)):
                if t is None:
                    continue
                t = t.detach().float() / (grad_scale if kind == "grads" else 1.0)
                keys += [f"{kind}/{path}/mean", f"{kind}/{path}/std"]
                values += [t.mean(), t.std() if t.numel() > 1 else torch.zeros((), device=t.device)]
        numbers = torch.stack(values).tolist() if values else []  # one device-to-host copy
    return dict(zip(keys, numbers))


_TENSORBOARD_TAGS = {"lr": "lr", "images_per_sec": "throughput/images_per_sec", "epoch_time_s": "time/epoch_s",
                     "eval_time_s": "time/eval_s", "wall_time_s": "time/wall_s",
                     "run_time_s": "time/run_s",
                     "peak_gpu_mem_mb": "memory/peak_gpu_mem_mb"}


def tensorboard_tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key: ``val_top1`` -> ``top1/val``, ``val_loss_ema`` ->
    ``loss/val_ema``, ``train_loss`` -> ``loss/train`` (so train, val and EMA curves share a section), ``lr`` ->
    ``lr``, ``images_per_sec`` -> ``throughput/images_per_sec``; other keys go under ``other/``."""
    m = re.fullmatch(r"(train|val)_(loss|top1|top5)(_ema)?", key)
    if m:
        return f"{m[2]}/{m[1]}{m[3] or ''}"
    return _TENSORBOARD_TAGS.get(key, f"other/{key}")


class TensorBoardLogger:
    """Event files for TensorBoard (``torch.utils.tensorboard.SummaryWriter``): the epoch metrics as scalars
    (tags from :func:`tensorboard_tag`, step = epoch, 1-based) and per-layer weight and gradient histograms
    (``weights/<parameter name>``, ``grads/<parameter name>``).

    View with ``tensorboard --logdir <output_dir>/logs/tensorboard``.

    Args:
        log_dir: the event-file folder.
        purge_step: on resume, the first epoch this run logs: events at or after it, left by the interrupted run,
            are dropped (as metrics.jsonl is truncated).

    Raises:
        ImportError: the tensorboard package is missing, with the install command.
    """

    def __init__(self, log_dir: Path, purge_step: Optional[int] = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("--logging.tensorboard true needs the tensorboard package: pip install "
                              "'tensorboard>=2.14'") from e
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Every numeric value of ``record`` (a metrics.jsonl line with ``epoch``) as a scalar at step ``epoch``."""
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.writer.add_scalar(tensorboard_tag(key), value, step)
        self.writer.flush()

    def log_layers(self, model: torch.nn.Module, step: int, grad_scale: float = 1.0) -> None:
        """Histograms of every parameter and of its gradient (divided by ``grad_scale``, the fp16 GradScaler's
        scale) at ``step``; call before ``zero_grad``. Frozen parameters get a weight histogram only."""
        for name, p in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", p.detach().float(), step)
            if p.grad is not None:
                self.writer.add_histogram(f"grads/{name}", p.grad.detach().float() / grad_scale, step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
