"""LR range test (Smith 2017): sweep the learning rate exponentially, suggest one, restore the model afterwards.

The machinery, and :func:`apply_lr_finder` (``--training.lr_finder``: train at the suggestion); the command line
is ``python -m services.lr_finder``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from core.atomic import atomic_write_text
from core.checkpoint import capture_rng_state, restore_rng_state, resume_checkpoint
from core.config import ExperimentConfig
from core.data.manager import ImageNetDataManager
from core.logger import progress_bar
from core.step import (build_criterion, build_optimizer, build_run_model, configure_determinism, forward_backward,
                       memory_format_for, optimizer_step, resolve_amp, run_device, select_device)

log = logging.getLogger(__name__)

SUGGESTION_RULE = ("the LR at which the loss stops falling: minimum of the loss smoothed without lag (running median "
                   "of 7 steps, then mean of 5), first 10 % of the sweep left out; the max_lr of Smith 2017 Sec. 3.3 "
                   "and Smith 2018 Sec. 4.1; cross-check: that LR / 10 (fastai's lr_min)")


# ----------------------------------------------------------------------------------------------------------------
# Pure pieces: the sweep, the smoothing, the suggestion
# ----------------------------------------------------------------------------------------------------------------

def exponential_lrs(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """(num_steps,) learning rates from ``start_lr`` to ``end_lr`` (both included), evenly spaced in log.

    Raises:
        ValueError: non-positive bounds, ``end_lr <= start_lr`` or ``num_steps < 2``.
    """
    if not (start_lr > 0 and end_lr > start_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))


def smooth_losses(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Exponential moving average with bias correction, as fastai's LR finder smooths the loss:
    ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``, ``smoothed_i = avg_i / (1 - beta ** (i + 1))``.

    Raises:
        ValueError: ``beta`` outside [0, 1).
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    out = np.empty(len(losses), dtype=np.float64)
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(loss)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def lag_free_curve(losses: Sequence[float], median_window: int = 7, mean_window: int = 5) -> np.ndarray:
    """(N,) the loss curve smoothed without lag, for the suggestion: log loss, a centred running median over
    ``median_window`` steps (a single bad batch's spike does not move it), then a centred running mean over
    ``mean_window`` steps, back to loss units. NaN/Inf losses count as very large.

    Why not the EMA of :func:`smooth_losses`: with fastai's beta 0.98 it lags about 50 steps, half of a
    100-step sweep, so on a fresh network, whose loss falls only a few percent before it diverges, its minimum
    and slopes sit far from where the raw loss has them.
    """
    from scipy.ndimage import median_filter, uniform_filter1d

    x = np.log(np.nan_to_num(np.asarray(losses, dtype=np.float64), nan=1e30, posinf=1e30).clip(1e-12, 1e30))
    x = median_filter(x, size=median_window, mode="nearest")
    return np.exp(uniform_filter1d(x, size=mean_window, mode="nearest"))


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], skip_start: Optional[int] = None
               ) -> tuple[float, float]:
    """The suggestion of an LR range test, and a conservative cross-check.

    1. The LR at which the loss stops falling: the minimum of :func:`lag_free_curve`, the first ``skip_start``
       points left out. Smith 2017 ('Cyclical Learning Rates for Training Neural Networks', Sec. 3.3) takes the
       LR where the loss stops improving as the upper bound (max_lr) of a cyclical schedule, and Smith 2018
       ('A disciplined approach to neural network hyper-parameters', Sec. 4.1) as the peak LR of a one-cycle /
       warmup schedule, which is what ``--training.lr`` is here.
    2. That LR / 10 (fastai's ``lr_min``), the cautious end.

    On fresh ResNets this lands on the real descent, where fastai's 'valley' and 'steepest descent before the
    minimum' fell into the flat, noisy start of the sweep (a fresh ResNet-18 got 1e-7, the first point). Measured
    on the bundled sample at 32 px, 100 steps, seeds 0-2 (tests/test_lr_finder.py): 1.9e-3 to 1.2e-2 for
    ResNet-18 with SGD at batch 32, 1e-4 to 4.3e-4 for ResNet-50 with AdamW at batch 16; the suggestion moves
    several-fold between seeds (earlier, at 64 px on Imagenette, 1e-2 to 3e-2 for SGD at batch 32-64).

    Args:
        lrs: (N,) increasing learning rates.
        losses: (N,) raw per-step losses (NaN/Inf count as very large).
        skip_start: points ignored at the start (default N // 10, as fastai's ``num_it // 10``).

    Returns:
        (lr_at_minimum, lr_at_minimum / 10).

    Raises:
        ValueError: fewer than 3 finite losses.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    raw = np.asarray(losses, dtype=np.float64)
    if np.isfinite(raw).sum() < 3:
        raise ValueError(f"an LR suggestion needs >= 3 finite losses, got {int(np.isfinite(raw).sum())}")
    curve = lag_free_curve(raw)
    start = min(len(curve) - 1, len(curve) // 10 if skip_start is None else max(0, skip_start))
    best = float(lrs[start + int(np.argmin(curve[start:]))])
    return best, best / 10


def check_suggestion(result: "LRFinderResult", edge_fraction: float = 0.1, min_drop: float = 0.01
                     ) -> Optional[str]:
    """Why a range test's suggestion should not be trained at, or None when it looks sound.

    Refused: the suggestion lies in the first or last ``edge_fraction`` of the planned sweep (in log LR: the
    sweep did not bracket the useful range, or the curve was flat or noise), or the lag-free loss curve never
    fell ``min_drop`` (relative) below its level over the first tenth of the sweep (nothing was learned at any
    LR; fresh ResNets measured 2-6 %).

    Args:
        result: a finished :class:`LRFinderResult` (its ``settings`` hold ``start_lr`` and ``end_lr``).

    Returns:
        None, or a one-line reason naming the numbers.
    """
    s = result.settings
    lo, hi = math.log(s.get("start_lr", result.lrs[0])), math.log(s.get("end_lr", result.lrs[-1]))
    pos = (math.log(result.suggested_lr) - lo) / (hi - lo)
    if pos < edge_fraction or pos > 1 - edge_fraction:
        return (f"the suggestion {result.suggested_lr:.3g} lies in the {'first' if pos < 0.5 else 'last'} "
                f"{edge_fraction:.0%} of the sweep {math.exp(lo):.3g}..{math.exp(hi):.3g}")
    curve = lag_free_curve(result.losses)
    first = float(np.median(curve[:max(1, len(curve) // 10)]))
    if curve.min() > first * (1 - min_drop):
        return (f"the loss never fell {min_drop:.0%} below its starting level {first:.3f} "
                f"(lowest {curve.min():.3f})")
    return None


# ----------------------------------------------------------------------------------------------------------------
# The finder
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class LRFinderResult:
    """Outcome of one range test.

    Attributes:
        lrs: LR of each step taken (the sweep stops early on divergence).
        losses: mean training loss of each optimizer step (averaged over its accumulated micro-batches).
        smoothed: bias-corrected EMA of ``losses`` (the divergence stop rule, as fastai's).
        suggested_lr: where the loss stops falling (:func:`suggest_lr`), absolute, at the sweep's effective batch.
        min_loss_lr_div10: ``suggested_lr`` / 10 (the cautious cross-check, fastai's ``lr_min``).
        diverged: the sweep stopped because the loss exceeded ``diverge_factor`` x its best, or became NaN/Inf.
        settings: the sweep's parameters (bounds, steps, beta, batch, accumulation, AMP, model).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    min_loss_lr_div10: float
    diverged: bool
    settings: dict = field(default_factory=dict)
    rule: str = SUGGESTION_RULE

    @property
    def problem(self) -> Optional[str]:
        """Why the suggestion should not be trained at (:func:`check_suggestion`), or None."""
        return check_suggestion(self)

    def save(self, out_dir: Path, title: Optional[str] = None) -> dict[str, Path]:
        """Write ``lr_finder.png``, ``optimal_lr.txt`` and ``lr_finder.json`` into ``out_dir``; return their paths."""
        from utils.visualization import plot_lr_finder

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        title = title or (f"LR range test: {s.get('model', '?')}, effective batch {s.get('effective_batch_size', '?')}"
                          f", {len(self.lrs)} steps" + (" (stopped: diverged)" if self.diverged else ""))
        png = plot_lr_finder(self.lrs, self.losses, lag_free_curve(self.losses), out_dir / "lr_finder.png",
                             {"loss stops falling": self.suggested_lr, "/ 10": self.min_loss_lr_div10},
                             title=title)
        problem = self.problem  # computed once: it smooths the whole curve
        txt = atomic_write_text(out_dir / "optimal_lr.txt",
                                f"{self.suggested_lr:.6g}\n"
                                f"# min_loss_lr_div10 {self.min_loss_lr_div10:.6g}\n"
                                f"# units: absolute LR at effective batch {s.get('effective_batch_size', '?')}\n"
                                + (f"# problem: {problem}\n" if problem else "") +
                                f"# rule: {self.rule}\n")
        js = atomic_write_text(out_dir / "lr_finder.json", json.dumps(
            {**asdict(self), "suggested_lr": self.suggested_lr, "problem": problem}, indent=1))
        log.info("LR finder: suggested %.3g (the loss stops falling), cross-check %.3g (/ 10); wrote %s",
                 self.suggested_lr, self.min_loss_lr_div10, out_dir)
        return {"plot": png, "optimal_lr": txt, "curve": js}


class LRFinder:
    """LR range test on a model and optimizer, which are restored exactly afterwards.

    Each step sets every parameter group's LR to the next value of an exponential sweep, trains one
    optimizer step (``grad_accum_steps`` micro-batches through :func:`core.step.forward_backward` and
    :func:`core.step.optimizer_step`, so AMP, the GradScaler, accumulation and clipping behave exactly as
    in training) and records the step's loss. The sweep stops when the smoothed loss exceeds
    ``diverge_factor`` x its minimum, or the loss is NaN/Inf (Smith 2017; fastai stops at 4x).

    Afterwards the model's and optimizer's state dicts, the scaler, the model's train/eval mode and the
    global RNG states are put back as they were, so training can follow in the same process.

    Args:
        model: on its device, in any mode.
        optimizer: built over ``model``'s parameters (its state, momentum buffers included, is restored).
        criterion: the training loss, e.g. ``nn.CrossEntropyLoss(label_smoothing=...)``.
        amp_dtype: autocast dtype (None = fp32), as from :func:`core.step.resolve_amp`.
        grad_accum_steps: micro-batches per optimizer step.
        grad_clip_norm: global gradient-norm clip (0 = off).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                 amp_dtype: Optional[torch.dtype] = None, grad_accum_steps: int = 1, grad_clip_norm: float = 0.0):
        if grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {grad_accum_steps}")
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        self.amp_dtype, self.grad_accum_steps, self.grad_clip_norm = amp_dtype, grad_accum_steps, grad_clip_norm
        self.device = next(model.parameters()).device
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)

    def range_test(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], start_lr: float = 1e-7,
                   end_lr: float = 10.0, num_steps: int = 100, beta: float = 0.98,
                   diverge_factor: float = 4.0, progress: bool = True) -> LRFinderResult:
        """Run the sweep over micro-batches drawn from ``batches`` (an endless iterator; see
        :func:`cycle_train_loader`).

        Args:
            batches: yields (images (B, 3, H, W), targets (B,)); moved to the model's device here.
            start_lr, end_lr: sweep bounds; num_steps: optimizer steps (>= 2).
            beta: EMA factor of the smoothed loss (fastai: 0.98).
            diverge_factor: stop when smoothed loss > diverge_factor x best smoothed loss.
            progress: a bar over the steps, with the LR and smoothed loss (``--logging.progress_bar``).

        Raises:
            ValueError: bad sweep settings, or fewer than 3 finite losses to suggest from.
        """
        lrs = exponential_lrs(start_lr, end_lr, num_steps)
        if diverge_factor <= 1:
            raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")
        saved = self._snapshot()
        taken, losses, smoothed = [], [], []
        diverged = False
        avg, best = 0.0, math.inf
        bar = progress_bar(total=num_steps, desc="LR finder", enabled=progress, unit="step")
        try:
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            for step, lr in enumerate(lrs.tolist()):
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                for _ in range(self.grad_accum_steps):
                    images, targets = next(batches)
                    images = images.to(self.device, non_blocking=True)
                    targets = targets.to(self.device, non_blocking=True)
                    loss, _ = forward_backward(self.model, images, targets, self.criterion, self.amp_dtype,
                                               self.scaler, self.grad_accum_steps)
                    loss_sum += loss.double()
                optimizer_step(self.optimizer, self.scaler, self.model, self.grad_clip_norm)
                loss = loss_sum.item() / self.grad_accum_steps  # one host sync per step: the stop rule needs it
                taken.append(lr)
                losses.append(loss)
                if not math.isfinite(loss):
                    smoothed.append(math.nan)
                    diverged = True
                    log.info("LR finder: loss is %s at lr %.3g (step %d); stopping", loss, lr, step)
                    break
                avg = beta * avg + (1 - beta) * loss
                sm = avg / (1 - beta ** (step + 1))
                smoothed.append(sm)
                best = min(best, sm)
                bar.update(1)
                bar.set_postfix(lr=f"{lr:.2g}", loss=f"{sm:.3f}", refresh=False)
                if step > 0 and sm > diverge_factor * best:
                    diverged = True
                    log.info("LR finder: smoothed loss %.3f > %.1f x best %.3f at lr %.3g (step %d); stopping",
                             sm, diverge_factor, best, lr, step)
                    break
        finally:
            bar.close()
            self._restore(saved)
        suggested, min_div10 = suggest_lr(taken, losses)
        settings = {"start_lr": start_lr, "end_lr": end_lr, "num_steps": num_steps, "beta": beta,
                    "diverge_factor": diverge_factor, "grad_accum_steps": self.grad_accum_steps,
                    "amp": str(self.amp_dtype) if self.amp_dtype else "off", "device": str(self.device),
                    "steps_taken": len(taken)}
        return LRFinderResult(lrs=taken, losses=losses, smoothed=smoothed, suggested_lr=suggested,
                              min_loss_lr_div10=min_div10, diverged=diverged, settings=settings)

    def _snapshot(self) -> dict:
        # Cloned tensors, not references: the sweep updates parameters and buffers in place.
        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "scaler": copy.deepcopy(self.scaler.state_dict()),
                "training": self.model.training, "rng": capture_rng_state()}

    def _restore(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.optimizer.zero_grad(set_to_none=True)
        if saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])
        self.model.train(saved["training"])
        restore_rng_state(saved["rng"])


def cycle_train_loader(loader: torch.utils.data.DataLoader, first_epoch: int = 0
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless micro-batches from a :meth:`ImageNetDataManager.train_loader`, advancing its sampler's epoch
    each pass (a 100-step sweep may be longer than one epoch of a small subset)."""
    epoch = first_epoch
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def find_lr(cfg: ExperimentConfig, model: Optional[nn.Module] = None, data: Optional[ImageNetDataManager] = None,
            out_dir: Optional[Path] = None, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
            beta: float = 0.98, diverge_factor: float = 4.0, progress: Optional[bool] = None) -> LRFinderResult:
    """Run the LR range test for an experiment config, as its training run would train: same model, optimizer
    (parameter groups, momentum, weight decay), loss, batch size, accumulation, AMP and clipping.

    Phase scripts call this before training; ``model`` is left exactly as it was (the sweep is undone).

    Args:
        cfg: the experiment's config.
        model: a model to probe (default: the run's own, :func:`core.step.build_run_model`: ``cfg.model``,
            ``--training.init_from``, ``--training.freeze_backbone``), moved to the config's device.
        data: the data manager (default: built from ``cfg.data``, writing nothing).
        out_dir: where the PNG, ``optimal_lr.txt`` and JSON go (None = ``<output_dir>/logs/lr_finder`` when
            ``--logging.output_dir`` is set, else nothing is written).
        start_lr, end_lr, num_steps, beta, diverge_factor: see :meth:`LRFinder.range_test`.
        progress: progress bars for the sweep (and indexing); None = ``cfg.logging.progress_bar``.

    Returns:
        The :class:`LRFinderResult`; ``result.suggested_lr`` is the LR to use as ``--training.lr``.
    """
    t = cfg.training
    device = select_device(t.device)
    amp_dtype = resolve_amp(t.amp, device)
    torch.manual_seed(t.seed)
    progress = cfg.logging.progress_bar if progress is None else progress
    data = data or ImageNetDataManager(cfg.data, seed=t.seed, run_dir=None, progress=progress)
    model = model if model is not None else build_run_model(cfg, data.classes)
    memory_format = memory_format_for(cfg.model.channels_last, device)
    model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(model, t)
    criterion = build_criterion(t)
    loader = data.train_loader(t.batch_size, t.grad_accum_steps, device=device)
    finder = LRFinder(model, optimizer, criterion, amp_dtype, t.grad_accum_steps, t.grad_clip_norm)
    raw = cycle_train_loader(loader)
    batches = ((data.to_device(images, device, memory_format), targets) for images, targets in raw)
    try:
        result = finder.range_test(batches, start_lr, end_lr, num_steps, beta, diverge_factor, progress)
    finally:
        batches.close()
        raw.close()  # stops the loader's workers promptly
    result.settings.update(model=cfg.model.name, batch_size=t.batch_size,
                           effective_batch_size=t.effective_batch_size, optimizer=t.optimizer,
                           image_size=cfg.data.image_size, data_root=str(data.root))
    if out_dir is None and cfg.logging.output_dir is not None:
        out_dir = cfg.logging.logs_dir / "lr_finder"
    if out_dir is not None:
        result.save(Path(out_dir))
    return result


def apply_lr_finder(cfg: ExperimentConfig, model: nn.Module, data: ImageNetDataManager, device: torch.device,
                    out_dir: Path) -> ExperimentConfig:
    """``--training.lr_finder``: run the LR range test (``--training.lr_finder_steps`` steps) on ``model``'s current
    (initial) weights, which it leaves unchanged, and return ``cfg`` with ``--training.lr`` set to its suggestion
    when that passes :func:`check_suggestion`; otherwise ``cfg`` unchanged, with a warning saying why. The curve
    and ``optimal_lr.txt`` go to ``out_dir``.

    Units: the sweep runs on one process at ``batch_size x grad_accum_steps`` images per step, and its
    absolute LR is converted to the units of ``--training.lr`` (:meth:`TrainingConfig.lr_from_peak`: per
    ``lr_reference_batch`` images under ``lr_scaling linear``). Under DDP rank 0 runs the sweep and broadcasts
    the LR, so all ranks agree; every rank must call this.

    Args:
        model: the run's model, on ``device`` in its memory format (not yet wrapped in DDP).
        data: the run's data manager.
        device: the run's device (the broadcast goes through it under NCCL).
    """
    t = cfg.training
    distributed = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
    decision = torch.tensor([t.lr, 0.0], dtype=torch.float64)  # (LR in --training.lr units, adopted?)
    if not distributed or torch.distributed.get_rank() == 0:
        result = find_lr(cfg, model=model, data=data, out_dir=out_dir, num_steps=t.lr_finder_steps)
        problem = result.problem
        if problem is None:
            decision[:] = torch.tensor([t.lr_from_peak(result.suggested_lr), 1.0], dtype=torch.float64)
            log.info("LR finder: the loss stops falling at %.3g (absolute, effective batch %d; / 10: %.3g); "
                     "training at --training.lr %.3g (was %.3g)", result.suggested_lr,
                     t.effective_batch_size, result.min_loss_lr_div10, decision[0].item(), t.lr)
        else:
            log.warning("LR finder: not adopting its suggestion %.3g: %s; keeping --training.lr %.3g "
                        "(the curve is in %s)", result.suggested_lr, problem, t.lr, out_dir)
    if distributed:
        decision = decision.to(device if device.type == "cuda" else torch.device("cpu"))
        torch.distributed.broadcast(decision, src=0)
        decision = decision.cpu()
    if decision[1].item():
        return dataclasses.replace(cfg, training=dataclasses.replace(t, lr=float(decision[0].item())))
    return cfg


def lr_finder_before_run(cfg: ExperimentConfig, data: Optional[ImageNetDataManager] = None) -> ExperimentConfig:
    """``--training.lr_finder`` at an entry point, before the trainer is built (:func:`core.cli.build_trainer`).

    On a fresh run, builds the model exactly as the trainer will start from it (the same device, determinism,
    ``torch.manual_seed(--training.seed)`` and :func:`core.step.build_run_model`), sweeps it with
    :func:`apply_lr_finder` (curve in ``<output_dir>/logs/lr_finder``) and returns ``cfg`` with ``--training.lr``
    set to the suggestion. Returns ``cfg`` unchanged when the flag is off or the run resumes a checkpoint (whose
    optimizer state carries the LR it trained at). Under DDP every process calls this; rank 0 sweeps.

    Args:
        data: the run's data manager (default: built from ``cfg.data``, writing nothing).

    Raises:
        ValueError: a bad device setting (:func:`core.step.select_device`) or model settings.
    """
    t = cfg.training
    if not t.lr_finder or resume_checkpoint(t.resume, cfg.logging.models_dir) is not None:
        return cfg
    device = run_device(t.device)
    configure_determinism(t.deterministic, device)
    torch.manual_seed(t.seed)
    data = data or ImageNetDataManager(cfg.data, seed=t.seed, run_dir=None, progress=cfg.logging.progress_bar)
    model = build_run_model(cfg, data.classes)
    model.to(device, memory_format=memory_format_for(cfg.model.channels_last, device))
    return apply_lr_finder(cfg, model, data, device, cfg.logging.logs_dir / "lr_finder")
