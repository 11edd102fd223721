"""A training step and its parts: device, precision, memory format, the run's model and loss, optimizer, MixUp, EMA."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
import torch.nn as nn

from core.checkpoint import load_initial_weights
from core.config import ExperimentConfig, TrainingConfig
from core.model import build_model

if TYPE_CHECKING:
    from core.data.manager import ImageNetDataManager


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; any other value is passed to ``torch.device``.

    Raises:
        ValueError: a bad setting, like every other config problem (the scripts exit 2 with the message): a device
            string torch does not parse, CUDA or MPS asked for but not available, or a CUDA index past the last GPU.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--training.device {name!r} is not a device ({e}); use auto, cpu, cuda[:N] or "
                         f"mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--training.device {name} asks for CUDA, but no CUDA GPU is visible to this process; "
                         f"use --training.device auto or cpu (or install a CUDA build of torch and check the driver)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--training.device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0; use --training.device cuda:0 or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--training.device {name} asks for Apple's MPS, which is not available here; use "
                         f"--training.device auto or cpu")
    return device


def run_device(name: str = "auto") -> torch.device:
    """The device of this process: :func:`select_device`, and under a multi-process group on CUDA the GPU of this
    process's ``LOCAL_RANK`` (torchrun sets it). The trainer and the LR finder both call this.

    Raises:
        ValueError: as :func:`select_device`.
    """
    device = select_device(name)
    distributed = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """``--training.deterministic``: deterministic algorithms everywhere (and cuDNN without autotuning on CUDA);
    off, cuDNN may autotune. cuBLAS then needs a fixed workspace (PyTorch's "Reproducibility" notes)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def resolve_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``--training.amp`` on ``device`` (None = full fp32).

    'auto' gives bf16 on CUDA GPUs that support it (Ampere and later), else fp16; fp32 on CPU and MPS.

    Raises:
        ValueError: fp16 asked for without CUDA (GradScaler needs CUDA; use bf16 or off).
    """
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"--training.amp fp16 needs a CUDA GPU (it relies on a GradScaler); on {device.type} "
                         f"use --training.amp bf16 or off")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def memory_format_for(channels_last: bool, device: torch.device) -> torch.memory_format:
    """The memory format of the model and its input batches for ``--model.channels_last`` on ``device``.

    channels_last (NHWC) on CUDA (tensor-core convolutions) and on the CPU (oneDNN's NHWC kernels; a ResNet-18
    training step at 112-128 px measured faster on the project's AVX2 CPU, BENCHMARKS.md); MPS keeps the default
    layout. One rule for the trainer, the LR finder and the benchmarks.
    """
    if channels_last and device.type in ("cuda", "cpu"):
        return torch.channels_last
    return torch.preserve_format


def build_optimizer(model: nn.Module, cfg: TrainingConfig, world_size: int = 1) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW at ``cfg.peak_lr(world_size)``, over the trainable
    parameters, with no weight decay on BatchNorm parameters and biases (tensors of rank <= 1), as in Goyal et
    al. 2017 and timm's ``param_groups_weight_decay``."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.peak_lr(world_size)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.momentum, 0.999))


def build_batch_mix(cfg: TrainingConfig, num_classes: int) -> Optional[Callable]:
    """MixUp and/or CutMix on a batch from ``torchvision.transforms.v2`` (one of the two, picked at random per
    batch, when both alphas are > 0), or None when both are off.

    The returned callable maps (images (B, 3, H, W), labels (B,) int64) → (mixed images, soft labels (B, C)).
    """
    from torchvision.transforms import v2

    mixes = []
    if cfg.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
    if cfg.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def build_ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s parameters and buffers (BatchNorm statistics included),
    ``ema = decay * ema + (1 - decay) * weights`` at each update (torch.optim.swa_utils; Polyak averaging as used
    by torchvision's and timm's ImageNet recipes)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def freeze_backbone(model: nn.Module) -> None:
    """Freeze everything but the classifier ``fc`` (label-mapping repair, linear probing)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))


def run_num_classes(cfg: ExperimentConfig, classes: Sequence[str]) -> int:
    """The number of outputs of the run's model: ``--model.num_classes``, default one per class of the data.

    Raises:
        ValueError: ``--model.num_classes`` smaller than the number of classes.
    """
    num_classes = cfg.model.num_classes or len(classes)
    if num_classes < len(classes):
        raise ValueError(f"--model.num_classes {num_classes} is smaller than the {len(classes)} classes in the data")
    return num_classes


def build_run_data(cfg: ExperimentConfig, rank: int = 0) -> "ImageNetDataManager":
    """The data manager a run trains on, as the trainer and the LR finder before it share it: built from
    ``cfg.data`` with the run's seed; rank 0 reports unreadable images in ``<output_dir>/logs``.

    Raises:
        FileNotFoundError / ValueError: a bad ``--data.*`` setting (:class:`core.data.manager.ImageNetDataManager`).
    """
    from core.data.manager import ImageNetDataManager

    return ImageNetDataManager(cfg.data, seed=cfg.training.seed, run_dir=cfg.logging.logs_dir if rank == 0 else None,
                               progress=cfg.logging.progress_bar)


def build_run_model(cfg: ExperimentConfig, classes: Sequence[str], model: Optional[nn.Module] = None) -> nn.Module:
    """The model a run starts from, as the trainer and the LR finder both build it: ``build_model`` from
    ``cfg.model`` (``--model.num_classes`` outputs, default one per class) unless ``model`` is given, then the
    weights of ``--training.init_from`` and ``--training.freeze_backbone`` applied to it (a built model is on the CPU).

    Args:
        classes: the data's class list (WNIDs), in output order.

    Raises:
        ValueError: ``--model.num_classes`` smaller than the number of classes.
        CheckpointMismatchError: ``--training.init_from`` does not fit (:func:`core.checkpoint.load_initial_weights`).
    """
    t = cfg.training
    num_classes = run_num_classes(cfg, classes)
    if model is None:
        model = build_model(cfg.model.name, num_classes=num_classes, small_input=cfg.model.small_input,
                            zero_init_residual=cfg.model.zero_init_residual, blurpool=cfg.model.blurpool)
    if t.init_from is not None:
        load_initial_weights(model, Path(t.init_from), cfg.model.name, list(classes), t.reinit_head)
    if t.freeze_backbone:
        freeze_backbone(model)
    return model


def build_criterion(cfg: TrainingConfig) -> nn.Module:
    """The training loss: cross-entropy with ``--training.label_smoothing`` (Szegedy et al. 2016). Takes
    (logits (B, C), targets (B,) int64 or soft targets (B, C)) to the mean loss."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def forward_backward(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, criterion: nn.Module,
                     amp_dtype: Optional[torch.dtype], scaler: torch.amp.GradScaler,
                     grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward under autocast, backward of ``loss / grad_accum_steps`` (so accumulated gradients equal the
    gradient of the mean loss over the whole effective batch).

    Args:
        images: (B, 3, H, W) float on the model's device.
        targets: (B,) int64.

    Returns:
        (loss, logits): the undivided mean loss (scalar, detached) and logits (B, C), detached.
    """
    with torch.autocast(device_type=images.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        logits = model(images)
        loss = criterion(logits, targets)
    scaler.scale(loss / grad_accum_steps).backward()
    return loss.detach(), logits.detach()


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, model: nn.Module,
                   grad_clip_norm: float = 0.0) -> None:
    """Unscale (for clipping), clip the global gradient norm, step through the scaler (which skips the step
    on fp16 overflow), update the scale, and clear the gradients."""
    if grad_clip_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


class StepSums:
    """The training loop's device-side sums of the micro-batches since the last metric sync: no host sync per step
    (the progress bar syncs every ``log_every_steps``)."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.seen = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a micro-batch: its mean loss (scalar), logits (B, C) and targets (B,)."""
        self.nonfinite |= ~torch.isfinite(loss)
        self.loss_sum += loss.double() * targets.shape[0]
        self.correct += (logits.argmax(1) == targets).sum()
        self.seen += targets.shape[0]

    def restart(self) -> None:
        """Zero the sums (the NaN flag is kept) and restart the clock."""
        self.loss_sum.zero_(), self.correct.zero_()
        self.seen, self.start = 0, time.perf_counter()
