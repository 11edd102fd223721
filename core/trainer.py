"""The training loop: one code path for AMP, accumulation and clipping; atomic checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from core.atomic import atomic_write_text
from core.checkpoint import (CHECKPOINT_FORMAT_VERSION, LABELS_DIGEST_KEY, CheckpointMismatchError, atomic_torch_save,
                             capture_rng_state, check_compatible, check_same_labels, link_checkpoint, load_checkpoint,
                             restore_rng_state, resume_checkpoint)
from core.config import ExperimentConfig
from core.data.manager import ImageNetDataManager
from core.data.rng import sample_seed
from core.distributed import all_reduce_sum
from core.dynamics import DYNAMICS_FILE, TrainingDynamics
from core.elr import EarlyLearningRegularization
from core.evaluate import evaluate
from core.logger import (MetricsLogger, TensorBoardLogger, finish_wandb, format_metric, git_commit, init_wandb,
                         layer_statistics, process_start_time, progress_bar, setup_logging)
from core.preprocessing import CHECKPOINT_KEY as PREPROCESSING_KEY, PreprocessingSpec
from core.schedules import build_scheduler, resolution_at
from core.soft_targets import soft_target_table
from core.step import (StepSums, build_batch_mix, build_criterion, build_ema, build_optimizer, build_run_data,
                       build_run_model, configure_determinism, forward_backward, memory_format_for, optimizer_step,
                       resolve_amp, run_device, run_num_classes)

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the run stops and keeps its last good checkpoint."""


class RunInterrupted(RuntimeError):
    """A run inside a larger job (a K-fold detection, a study row) was stopped by a signal with its checkpoint
    saved: the job stops too, and the same command continues it. :func:`core.cli.run_entry` exits 0 with the
    message, as for a stopped single run."""


# ----------------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """Progress that a checkpoint must carry besides the module states.

    ``epoch`` is the 0-based epoch in progress and ``micro_batch`` the micro-batches already trained in it;
    at an epoch's end ``epoch`` is the number of epochs completed and ``micro_batch`` is 0.
    """

    epoch: int = 0
    micro_batch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_seen: int = 0
    epoch_train_time_s: float = 0.0
    run_time_s: float = 0.0  # fit()'s seconds (train, eval, checkpoints) behind this state, over every session
    # (NaN when resumed from a checkpoint older than this field: unknown, not 0)
    epoch_checkpoints: list = field(default_factory=list)  # [[epoch, val_top1], ...] of epoch_NNN.pt files kept


class ImageNetTrainer:
    """Trains a ResNet from an :class:`ExperimentConfig`, writing logs to ``<output_dir>/logs`` and checkpoints
    to ``<output_dir>/models``.

    Features: autocast (bf16, or fp16 with a GradScaler on CUDA), gradient accumulation, clipping, label
    smoothing, warmup+cosine / OneCycle / step schedules per optimizer step, top-1/top-5 evaluation, atomic
    ``last.pt`` / ``best.pt`` / ``epoch_NNN.pt`` checkpoints (best k kept), exact mid-epoch resume, SIGTERM →
    checkpoint → clean exit, NaN/Inf loss guard, early stopping, metrics.jsonl and training curves.

    Args:
        cfg: the validated experiment config (``logging.output_dir`` must be set).
        data: a data manager (built from ``cfg.data`` when None).
        model: a model (built from ``cfg.model`` when None).

    Raises:
        CheckpointMismatchError: resuming from a checkpoint of another architecture, class list or training labels.
        FileNotFoundError: ``--training.resume PATH`` does not exist.
    """

    def __init__(self, cfg: ExperimentConfig, data: Optional[ImageNetDataManager] = None,
                 model: Optional[nn.Module] = None):
        self.cfg = cfg
        t = cfg.training
        self.rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        self.logs_dir, self.models_dir = cfg.logging.logs_dir, cfg.logging.models_dir
        if self.is_main:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.models_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(self.logs_dir, cfg.logging.log_level, self.rank)

        self.device = run_device(t.device)
        self.amp_dtype = resolve_amp(t.amp, self.device)
        configure_determinism(t.deterministic, self.device)
        torch.manual_seed(t.seed)

        self.data = data or build_run_data(cfg, self.rank)
        if self.is_main:  # what this run trains on: per-class counts, chart, subset ids
            self.data.write_class_distribution(self.logs_dir)
        self.model = build_run_model(cfg, self.data.classes, model)
        self.num_classes = run_num_classes(cfg, self.data.classes)
        self.memory_format = memory_format_for(cfg.model.channels_last, self.device)
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = build_ema(self.model, t.ema_decay) if t.ema_decay > 0 else None
        if self.world_size > 1:
            if cfg.model.sync_batchnorm and self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.model.compile:
            # after DDP, as PyTorch's DDP + compile guide does (DDPOptimizer splits graphs at bucket edges);
            # dynamic=False: one graph per crop size, no slower dynamic-shape kernels under progressive resizing
            self.model = torch.compile(self.model, mode=cfg.model.compile_mode, dynamic=False)

        # a plain function, not self.resolution_at: a loader holding the trainer is a cycle that outlives the run
        self.train_loader = self.data.train_loader(t.batch_size, t.grad_accum_steps,
                                                   functools.partial(resolution_at, cfg=cfg.data),
                                                   self.world_size, self.rank, self.device)
        self.val_loader = self.data.val_loader(max(1, t.batch_size * 2), self.world_size, self.rank)
        self.sampler = self.train_loader.sampler
        self.steps_per_epoch = self.sampler.micro_batches_per_epoch // t.grad_accum_steps

        self.criterion = build_criterion(t)
        self.batch_mix = build_batch_mix(t, self.num_classes)
        self.optimizer = build_optimizer(self.model, t, self.world_size)
        self.scheduler = build_scheduler(self.optimizer, t, self.steps_per_epoch, self.world_size)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.dynamics = TrainingDynamics(len(self.data.train_ids), t.epochs, self.device) if t.record_dynamics else None
        self.elr = (EarlyLearningRegularization(len(self.data.train_ids), self.num_classes, t.elr_beta, t.elr_lambda,
                                                self.device) if t.elr_lambda > 0 else None)
        self.soft_targets = soft_target_table(self.data.train_soft_targets, len(self.data.train_ids), self.num_classes,
                                              self.device, mixing=self.batch_mix is not None)
        self.labels_digest = self.data.train_labels_digest()  # what a resumed checkpoint must have trained on
        self.metrics = MetricsLogger(self.logs_dir / "metrics.jsonl")
        self.wandb_run = None
        self.tensorboard: Optional[TensorBoardLogger] = None
        self.layer_stats: dict[str, float] = {}  # W&B per-layer statistics of the epoch's last step
        self._stop_signal: Optional[int] = None
        self.resumed_from: Optional[Path] = None
        self._maybe_resume()
        self._clock = time.perf_counter()  # run_time_s counts from here (fit() restarts it)

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step over all processes: batch x accumulation x world size."""
        return self.cfg.training.effective_batch_size * self.world_size

    def resolution_at(self, epoch: int) -> int:
        """Training crop side (px) of 0-based ``epoch`` (progressive resizing when configured)."""
        return resolution_at(epoch, self.cfg.data)

    # -- setup helpers ----------------------------------------------------------------------------------------
    def _resume_path(self) -> Optional[Path]:
        """The checkpoint this run resumes from, or None for a fresh start."""
        return resume_checkpoint(self.cfg.training.resume, self.models_dir)

    def _maybe_resume(self) -> None:
        path = self._resume_path()
        if path is None:
            if self.cfg.training.resume == "none" and (self.models_dir / "last.pt").exists():
                log.warning("--training.resume none: starting fresh; checkpoints in %s will be overwritten",
                            self.models_dir)
            return
        self.load_checkpoint(path)

    def load_checkpoint(self, path: Path, check_labels: bool = True) -> None:
        """Restore model, optimizer, scheduler, scaler, progress and RNG states from ``path``; ``check_labels``
        False to evaluate a checkpoint whose training labels this run's data does not rebuild.

        Raises:
            FileNotFoundError, ValueError: unreadable file.
            CheckpointMismatchError: another architecture or class list, or other training labels.
        """
        ckpt = load_checkpoint(path, map_location=self.device)
        check_compatible(ckpt, self.cfg.model.name, self.data.classes, path, self.num_classes)
        if check_labels:
            own = Path(path).parent.resolve() == self.models_dir.resolve()  # this run's own last.pt: resume auto
            check_same_labels(ckpt, self.labels_digest, path, fix=(
                f"delete {self.models_dir} to train this run afresh" if own else "drop --training.resume"))
        self.unwrapped_model().load_state_dict(ckpt["model"])
        if self.ema is not None:
            if "model_ema" not in ckpt:
                raise CheckpointMismatchError(f"{path} has no EMA weights but --training.ema_decay is set; resume "
                                              f"with --training.ema_decay 0 or start a new run")
            self.ema.module.load_state_dict(ckpt["model_ema"])
            self.ema.n_averaged.copy_(ckpt["ema_n_averaged"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        saved = ckpt["train_state"]
        self.state = TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})
        if "run_time_s" not in saved:  # written before the field existed: the earlier sessions' time is unknown
            self.state.run_time_s = math.nan
        if self.state.micro_batch > self.sampler.micro_batches_per_epoch:
            raise ValueError(f"{path} stopped at micro-batch {self.state.micro_batch} of an epoch that now has "
                             f"{self.sampler.micro_batches_per_epoch}: the data or batch size changed since; "
                             f"resume with the same --data and --training.batch_size settings")
        restore_rng_state(ckpt["rng"])
        if self.dynamics is not None:
            self.dynamics.load(self.logs_dir / DYNAMICS_FILE, self.data.train_ids)
        if self.elr is not None:
            self.elr.load_checkpoint(ckpt, path, self.data.train_ids)
        self._wandb_id = ckpt.get("wandb_id")
        self.resumed_from = Path(path)
        log.info("resumed from %s: epoch %d, micro-batch %d, global step %d, best top-1 %.2f%%", path,
                 self.state.epoch, self.state.micro_batch, self.state.global_step, self.state.best_top1)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def unwrapped_model(self) -> nn.Module:
        """The bare model (without a DDP or torch.compile wrapper)."""
        m = self.model
        m = getattr(m, "module", m)
        return getattr(m, "_orig_mod", m)

    def checkpoint_dict(self) -> dict[str, Any]:
        """Everything needed to resume or deploy, as tensors and plain Python types
        (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": self.unwrapped_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_state": self.state.__dict__.copy(),
            "epoch": self.state.epoch,
            "step_in_epoch": self.state.micro_batch,
            "global_step": self.state.global_step,
            "best_top1": self.state.best_top1,
            "config": self.cfg.to_dict(),
            PREPROCESSING_KEY: PreprocessingSpec.from_data_config(self.cfg.data).to_dict(),
            "model_name": self.cfg.model.name,
            "num_classes": self.num_classes,
            "classes": list(self.data.classes),
            LABELS_DIGEST_KEY: self.labels_digest,
            "class_names": list(self.data.class_names),
            "class_to_idx": dict(self.data.class_to_idx),
            "rng": capture_rng_state(),
            **({"model_ema": self.ema.module.state_dict(), "ema_n_averaged": self.ema.n_averaged.detach().cpu()}
               if self.ema is not None else {}),
            **({"elr": self.elr.state_dict(self.data.train_ids)} if self.elr is not None else {}),
            "wandb_id": getattr(self.wandb_run, "id", None) or getattr(self, "_wandb_id", None),
            "torch_version": str(torch.__version__),
        }

    def _stored_run_time(self) -> float:
        """A reopened finished run's run_time_s: its summary.json's (which counts the last save and the close
        after it), else the checkpoint's."""
        summary = self.logs_dir / "summary.json"
        if summary.is_file():
            stored = json.loads(summary.read_text()).get("run_time_s")
            return math.nan if stored is None else float(stored)
        return self.state.run_time_s

    def _tick(self) -> float:
        """Add the seconds since the last tick to ``state.run_time_s`` and return the total."""
        now = time.perf_counter()
        self.state.run_time_s += now - self._clock
        self._clock = now
        return self.state.run_time_s

    def save_last(self) -> Path:
        """Write ``models/last.pt`` atomically (rank 0 only) and return its path."""
        path = self.models_dir / "last.pt"
        self._tick()  # the checkpoint carries the time spent on the work it holds
        if self.is_main:
            if self.dynamics is not None:  # first: a replayed micro-batch rewrites the same entries
                self.dynamics.save(self.logs_dir / DYNAMICS_FILE, self.data.train_ids, self.data.train_labels,
                                   self.state.epoch)
            atomic_torch_save(self.checkpoint_dict(), path)
        return path

    def _end_of_epoch_checkpoints(self, epoch_done: int, top1: float, improved: bool) -> None:
        if not self.is_main:
            return
        t = self.cfg.training
        last = self.save_last()
        if improved:
            link_checkpoint(last, self.models_dir / "best.pt")
        if t.save_every_epochs and epoch_done % t.save_every_epochs == 0:
            link_checkpoint(last, self.models_dir / f"epoch_{epoch_done:03d}.pt")
            kept = self.state.epoch_checkpoints + [[epoch_done, top1 if math.isfinite(top1) else -1.0]]
            kept.sort(key=lambda e: (e[1], e[0]), reverse=True)  # best top-1 first, later epoch on ties
            for old_epoch, _ in kept[t.keep_best_k:]:
                (self.models_dir / f"epoch_{old_epoch:03d}.pt").unlink(missing_ok=True)
            self.state.epoch_checkpoints = kept[:t.keep_best_k]
            self.save_last()  # record which epoch files are kept

    # -- signals ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _graceful_stop(self):
        """On SIGTERM (spot-instance notice) or SIGINT, finish the current optimizer step, save last.pt and
        return. A second signal acts as usual."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, _frame):
            self._stop_signal = signum
            signal.signal(signum, previous[signum])
            log.warning("received %s: saving a checkpoint after this step, then stopping",
                        signal.Signals(signum).name)

        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``--training.epochs``, early stopping, or a stop signal.

        Returns:
            {"best_top1", "best_epoch", "epochs_completed", "final" (the last evaluation: val_loss, val_top1,
            val_top5, and the same with ``_ema`` when EMA is on), "interrupted", "stopped_early", "resumed_from",
            "run_time_s" (s of training, evaluation and checkpoints behind the final state, over every session
            of the run: start-ups and work lost after a killed session's last checkpoint are not counted;
            summary.json's wall_time_s is this process's alone; None when resumed from a checkpoint older than
            the field)}.

        Raises:
            NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).
        """
        t = self.cfg.training
        if self.is_main:
            self._write_run_info()
            if self.cfg.logging.wandb:
                self.wandb_run = init_wandb(self.cfg, self.logs_dir, self.run_name, getattr(self, "_wandb_id", None))
                self.metrics.wandb_run = self.wandb_run
            if self.cfg.logging.tensorboard:
                # a resumed run drops the events the interrupted one wrote past its checkpoint
                self.tensorboard = TensorBoardLogger(self.logs_dir / "tensorboard", purge_step=self.state.epoch + 1
                                                     if self.resumed_from is not None else None)
                self.metrics.tensorboard = self.tensorboard
            self.metrics.truncate_after(self.state.epoch)
        log.info("model %s (%d classes, %s params) on %s, amp %s, effective batch %d (%d x %d accumulation x %d "
                 "process), %d optimizer steps per epoch", self.cfg.model.name, self.num_classes,
                 f"{sum(p.numel() for p in self.model.parameters()):,}", self.device,
                 self.amp_dtype or "off", self.effective_batch_size, t.batch_size, t.grad_accum_steps,
                 self.world_size, self.steps_per_epoch)
        interrupted = stopped_early = False
        last_eval: dict[str, float] = {}
        self._clock = time.perf_counter()
        with self._graceful_stop():
            while self.state.epoch < t.epochs:
                epoch = self.state.epoch
                train_metrics = self._train_epoch(epoch)
                if self._stop_signal is not None:
                    interrupted = True
                    break
                last_eval = self._end_epoch(epoch, train_metrics)
                if t.early_stopping_patience and self.state.epochs_without_improvement >= t.early_stopping_patience:
                    log.info("early stopping: no val top-1 improvement for %d epochs (best %.2f%% at epoch %d)",
                             self.state.epochs_without_improvement, self.state.best_top1, self.state.best_epoch)
                    stopped_early = True
                    break
                if self._stop_signal is not None:
                    interrupted = True
                    break
        reopened = self.state.epoch >= t.epochs and not last_eval and self.resumed_from is not None
        if reopened:
            log.info("the run in %s is already complete (%d/%d epochs)", self.models_dir, self.state.epoch, t.epochs)
        self.close()
        result = {"best_top1": self.state.best_top1, "best_epoch": self.state.best_epoch,
                  "epochs_completed": self.state.epoch, "final": last_eval, "interrupted": interrupted,
                  "stopped_early": stopped_early, "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                  "run_time_s": self._stored_run_time() if reopened else self._tick()}
        if not math.isfinite(result["run_time_s"]):
            result["run_time_s"] = None  # unknown (a checkpoint older than the field); JSON has no NaN
        self._finish(result, keep_summary=reopened)
        return result

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train 0-based ``epoch`` from ``state.micro_batch`` to its end, or to a stop signal (checkpoint saved).

        Returns:
            {"train_loss", "train_top1" (%), "images_per_sec", "epoch_time_s"} over the whole epoch (all ranks).

        Raises:
            NonFiniteLossError: the loss became NaN/Inf.
        """
        t = self.cfg.training
        self._begin_epoch(epoch)
        total = self.sampler.micro_batches_per_epoch
        bar = progress_bar(total=total, initial=self.state.micro_batch, desc=f"epoch {epoch + 1}/{t.epochs}",
                           enabled=self.cfg.logging.progress_bar and self.is_main, unit="batch")
        sums = StepSums(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        micro = self.state.micro_batch
        positions = (torch.from_numpy(self.sampler.positions()).to(self.device)
                     if self.dynamics is not None or self.soft_targets is not None or self.elr is not None
                     else None)
        batches = iter(self.train_loader)
        while (batch := self._next_batch(batches)) is not None:
            images = self._to_device(batch[0], self.device)
            targets = batch[1].to(self.device, non_blocking=True)
            b = targets.shape[0]
            batch_positions = positions[micro * b:(micro + 1) * b] if positions is not None else None
            loss_targets = targets
            if self.soft_targets is not None:  # (B, C): flagged samples train on their soft target
                loss_targets = self.soft_targets(batch_positions, targets)
            if self.batch_mix is not None:
                images, loss_targets = self._mix_batch(images, targets, epoch, micro)
            criterion = (self.criterion if self.elr is None  # cross-entropy + the ELR term of the micro-batch
                         else self.elr.added_to(self.criterion, batch_positions))
            with self._no_sync((micro + 1) % t.grad_accum_steps == 0):
                loss, logits = forward_backward(self.model, images, loss_targets, criterion, self.amp_dtype,
                                                self.scaler, t.grad_accum_steps)
            sums.add(loss, logits, targets)
            if self.dynamics is not None:
                self.dynamics.add(epoch, batch_positions, logits, targets)
            micro += 1
            bar.update(1)
            if micro % t.grad_accum_steps:
                continue
            if micro == total:
                self._record_layers(epoch + 1)
            self._update(micro)
            if self._after_update(epoch, micro, sums, bar):
                break
        bar.close()
        st = self.state
        return {"train_loss": st.epoch_loss_sum / max(st.epoch_seen, 1),
                "train_top1": 100.0 * st.epoch_correct / max(st.epoch_seen, 1),
                "images_per_sec": st.epoch_seen / max(st.epoch_train_time_s, 1e-9),
                "epoch_time_s": st.epoch_train_time_s}

    def _begin_epoch(self, epoch: int) -> None:
        """Train mode (frozen BatchNorm kept in eval), the sampler at the resume point, fresh epoch totals."""
        self.model.train()
        if self.cfg.training.freeze_backbone:  # frozen BatchNorm keeps its running statistics
            for name, module in self.unwrapped_model().named_children():
                if name != "fc":
                    module.eval()
        self.sampler.set_epoch(epoch, self.state.micro_batch)
        if self.state.micro_batch == 0:
            self.state.epoch_loss_sum, self.state.epoch_correct, self.state.epoch_seen = 0.0, 0, 0
            self.state.epoch_train_time_s = 0.0

    def _next_batch(self, batches: Iterator) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """The next (images, targets) of the epoch, or None at its end or when a stop signal killed the loader's
        workers (then last.pt is saved at the last optimizer step)."""
        try:
            return next(batches)
        except StopIteration:
            return None
        except RuntimeError:  # "DataLoader worker ... killed by signal": a group-wide SIGTERM reached them
            if self._stop_signal is None:
                raise
            log.warning("data-loader workers were stopped by the signal; saving at the last optimizer step")
            self.save_last()
            return None

    def _mix_batch(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, micro: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp/CutMix of micro-batch ``micro``: (B, 3, H, W), (B,) -> mixed images, soft labels (B, C)."""
        # torchvision's MixUp/CutMix draw from torch's global RNG: seed it per global micro-batch so the draw
        # does not depend on history (exact resume) or on how micro-batches are spread over ranks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.cfg.training.seed, epoch, micro * self.world_size + self.rank, 1))
            return self.batch_mix(images, targets)

    def _no_sync(self, sync_now: bool) -> contextlib.AbstractContextManager:
        """DDP: all-reduce gradients only on the micro-batch that ends an accumulation cycle."""
        return self.model.no_sync() if self.world_size > 1 and not sync_now else contextlib.nullcontext()

    def _update(self, micro: int) -> None:
        """One optimizer step after ``micro`` micro-batches of the epoch: step, schedule, progress, EMA."""
        t = self.cfg.training
        optimizer_step(self.optimizer, self.scaler, self.model, t.grad_clip_norm)
        if self.elr is not None:
            self.elr.commit()
        self.scheduler.step()
        self.state.global_step += 1
        self.state.micro_batch = micro
        if self.ema is not None and self.state.global_step % t.ema_every_steps == 0:
            self.ema.update_parameters(self.unwrapped_model())

    def _after_update(self, epoch: int, micro: int, sums: StepSums, bar: Any) -> bool:
        """At logging, checkpoint and signal points: check the loss, sync the metrics, save; True to stop.

        Every rank calls this after every optimizer step (the stop check and the sync are collective).
        """
        t = self.cfg.training
        step = self.state.global_step
        log_now = step % t.log_every_steps == 0 or micro == self.sampler.micro_batches_per_epoch
        save_now = t.checkpoint_every_steps and step % t.checkpoint_every_steps == 0
        stop_now = self._stop_requested()
        if not (log_now or save_now or stop_now):
            return False
        self._check_finite(sums, epoch, step)
        self._sync_epoch_totals(sums)
        st = self.state
        bar.set_postfix(loss=f"{st.epoch_loss_sum / max(st.epoch_seen, 1):.3f}",
                        top1=f"{100 * st.epoch_correct / max(st.epoch_seen, 1):.1f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                        img_s=f"{st.epoch_seen / max(st.epoch_train_time_s, 1e-9):.0f}")
        if save_now or stop_now:
            self.save_last()
        if stop_now:
            log.info("stopped at epoch %d, micro-batch %d/%d; checkpoint saved to %s; continue with "
                     "--training.resume auto", epoch + 1, micro, self.sampler.micro_batches_per_epoch,
                     self.models_dir / "last.pt")
        return bool(stop_now)

    def _check_finite(self, sums: StepSums, epoch: int, step: int) -> None:
        """Raise :class:`NonFiniteLossError` when any rank saw a NaN/Inf loss since the last check."""
        if self.world_size > 1:
            sums.nonfinite = all_reduce_sum(sums.nonfinite.float()) > 0
        if sums.nonfinite.item():
            raise NonFiniteLossError(
                f"the training loss became NaN or Inf at epoch {epoch + 1}, step {step}; the last good "
                f"checkpoint ({self.models_dir / 'last.pt'}) is kept. Lower --training.lr, set "
                f"--training.grad_clip_norm, or try --training.amp bf16/off")

    def _record_layers(self, step: int) -> None:
        """Per-layer weights and gradients at the epoch's last optimizer step, before the gradients are cleared:
        mean/std for W&B (logged with the epoch's metrics), histograms to TensorBoard at ``step`` (the epoch)."""
        if self.wandb_run is None and self.tensorboard is None:
            return
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0  # fp16: the gradients are scaled
        model = self.unwrapped_model()
        if self.wandb_run is not None:
            self.layer_stats = layer_statistics(model, scale)
        if self.tensorboard is not None:
            self.tensorboard.log_layers(model, step, scale)

    def close(self) -> None:
        """Shut down the loaders' persistent worker processes (also done by garbage collection; explicit here
        so that a finished run exits at once), and under DDP drop the DDP wrapper, leaving ``self.model`` the bare
        model (enough to evaluate or export; ``fit()`` is not meant to be called again).

        The wrapper's reducer holds the process group; one still alive when the group is destroyed is torn down at
        interpreter exit, the likely cause of the rare gloo abort seen there (SIGABRT, "terminate called without
        an active exception"). The trainer itself can outlive its run: matplotlib's pyparsing cache keeps the frames of the
        last font or mathtext parse, so a plot drawn inside a trainer method pins that trainer.
        """
        for loader in (self.train_loader, self.val_loader):
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
            loader._iterator = None
        if isinstance(getattr(self.model, "_orig_mod", self.model), nn.parallel.DistributedDataParallel):
            self.model = self.unwrapped_model()

    def _stop_requested(self) -> bool:
        """Whether any process received SIGTERM/SIGINT; under DDP all ranks must stop at the same step."""
        if self.world_size == 1:
            return self._stop_signal is not None
        flag = torch.tensor([float(self._stop_signal is not None)], device=self.device)
        return bool(all_reduce_sum(flag).item() > 0)

    def _sync_epoch_totals(self, sums: StepSums) -> None:
        """Add the sums since the last sync, over all ranks, to the epoch totals, and restart them (every rank
        calls this at the same optimizer steps)."""
        totals = all_reduce_sum(torch.stack([sums.loss_sum.double(), sums.correct.double(),
                                             torch.tensor(float(sums.seen), dtype=torch.float64, device=self.device)]))
        self.state.epoch_loss_sum += float(totals[0].item())
        self.state.epoch_correct += int(totals[1].item())
        self.state.epoch_seen += int(totals[2].item())
        self.state.epoch_train_time_s += time.perf_counter() - sums.start
        sums.restart()

    def _end_epoch(self, epoch: int, train_metrics: dict[str, float]) -> dict[str, float]:
        t = self.cfg.training
        epoch_done = epoch + 1
        record: dict[str, Any] = {"epoch": epoch_done, **train_metrics,
                                  "lr": self.optimizer.param_groups[0]["lr"]}
        val: dict[str, float] = {}
        if epoch_done % t.eval_every_epochs == 0 or epoch_done == t.epochs:
            eval_start = time.perf_counter()
            val = self.evaluate()
            record.update(val)
            if self.ema is not None:
                val.update({f"{k}_ema": v for k, v in self.evaluate(model=self.ema).items()})
                record.update(val)
            record["eval_time_s"] = time.perf_counter() - eval_start
        record["wall_time_s"] = time.time() - process_start_time()  # time-to-accuracy counts from process start
        record["run_time_s"] = self._tick()  # the same over every session of a resumed run, start-ups excluded
        if self.device.type == "cuda":
            record["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        # the model a user would deploy is judged: the EMA weights when they exist
        top1 = record.get("val_top1_ema" if self.ema is not None else "val_top1", float("nan"))
        improved = math.isfinite(top1) and top1 > self.state.best_top1
        if improved:
            self.state.best_top1, self.state.best_epoch = top1, epoch_done
            self.state.epochs_without_improvement = 0
        elif val:
            self.state.epochs_without_improvement += 1
        self.state.epoch, self.state.micro_batch = epoch_done, 0
        if self.dynamics is not None:
            self.dynamics.merge_ranks(epoch)
        if self.is_main:
            self.metrics.log_epoch(record, self.layer_stats)
            self.layer_stats = {}
        self._end_of_epoch_checkpoints(epoch_done, top1, improved)
        log.info("epoch %d/%d: train loss %.4f top-1 %.2f%% | val loss %s top-1 %s top-5 %s | lr %.4g | %.0f img/s "
                 "| %.1f s", epoch_done, t.epochs, record["train_loss"], record["train_top1"],
                 format_metric(val.get("val_loss"), ".4f"), format_metric(val.get("val_top1"), ".2f", "%"),
                 format_metric(val.get("val_top5"), ".2f", "%"), record["lr"], record["images_per_sec"],
                 record["epoch_time_s"])
        return val

    def evaluate(self, loader: Optional[torch.utils.data.DataLoader] = None,
                 model: Optional[nn.Module] = None) -> dict[str, float]:
        """Mean cross-entropy (without label smoothing), top-1 and top-5 (%) over the val split (all ranks); with
        ``--training.eval_hflip`` on the logits averaged over each image and its mirror image
        (:func:`core.evaluate.evaluate`).

        Returns:
            {"val_loss", "val_top1", "val_top5"}; top-5 is top-min(5, C).
        """
        model = model if model is not None else self.model
        metrics = evaluate(model, loader if loader is not None else self.val_loader, self.device, self.amp_dtype,
                           self.cfg.training.eval_hflip, self._to_device,
                           self.cfg.logging.progress_bar and self.is_main,
                           "evaluating EMA weights" if model is self.ema else "evaluating")
        return {f"val_{k}": v for k, v in metrics.items()}

    def _to_device(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """A loader's batch as normalised (B, 3, H, W) float32 on ``device`` in the run's memory format."""
        return self.data.to_device(images, device, self.memory_format)

    # -- reporting --------------------------------------------------------------------------------------------
    @property
    def run_name(self) -> str:
        return self.cfg.logging.run_name or f"{self.cfg.model.name}-{self.data.root.name}"

    def _write_run_info(self) -> None:
        self.cfg.save_yaml(self.logs_dir / "config.yaml")
        info = {"git_commit": git_commit(), "torch": str(torch.__version__), "device": str(self.device),
                "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                "amp": str(self.amp_dtype) if self.amp_dtype else "off", "world_size": self.world_size,
                "effective_batch_size": self.effective_batch_size, "steps_per_epoch": self.steps_per_epoch,
                "train_images": len(self.data.train_ids), "val_images": len(self.data.val_ids),
                "num_classes": self.num_classes, "data_root": str(self.data.root),
                "bundled_sample": self.data.using_bundled_sample,
                "resumed_from": str(self.resumed_from) if self.resumed_from else None,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(self.logs_dir / "run_info.json", json.dumps(info, indent=2))

    def _finish(self, result: dict[str, Any], keep_summary: bool = False) -> None:
        """Curves, summary.json (kept as it is when ``keep_summary`` and it exists: a finished run reopened to
        score it trained nothing, and its summary holds the final metrics and wall time), loggers closed."""
        if not self.is_main:
            return
        self.data.report_corrupt_images(self.logs_dir)
        try:
            from utils.visualization import plot_training_curves

            if (self.logs_dir / "metrics.jsonl").is_file():
                plot_training_curves(self.logs_dir / "metrics.jsonl", self.logs_dir / "curves.png",
                                     title=self.run_name, label_smoothing=self.cfg.training.label_smoothing)
        except Exception as e:  # a plot is a report, never a reason to fail a finished run
            log.warning("could not draw training curves (%s)", e)
        summary = {**result, "wall_time_s": time.time() - process_start_time()}  # this process, start to end
        if not (keep_summary and (self.logs_dir / "summary.json").is_file()):
            atomic_write_text(self.logs_dir / "summary.json", json.dumps(summary, indent=2))
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            finish_wandb(self.wandb_run, result)
        log.info("best val top-1 %.2f%% at epoch %d; logs in %s, checkpoints in %s", result["best_top1"],
                 result["best_epoch"], self.logs_dir, self.models_dir)
