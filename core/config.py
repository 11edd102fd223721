"""Experiment configuration: one dataclass per concern, validated once, loadable from YAML and the command line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding ``core/``), found from this file, never from the cwd."""

BUNDLED_SAMPLE_ROOT = PROJECT_ROOT / "data" / "imagenette_sample"
"""The small real-image sample committed with the project (10 Imagenette classes), used when ``--data.root`` is unset."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet-1k per-channel RGB statistics on [0, 1] pixels, as used by torchvision and timm.


@dataclass
class DataConfig:
    """Where the images come from, which of them are used, and how they are augmented and loaded."""

    source: Literal["imagefolder", "hf"] = "imagefolder"
    """'imagefolder': a train/<wnid>/, val/<wnid>/ tree (ILSVRC2012 with sorted val, Imagenette, Tiny ImageNet); 'hf': a Hugging Face `datasets` dataset saved on disk or as parquet."""
    root: Optional[Path] = None
    """Dataset root folder. None = the bundled 10-class sample in data/imagenette_sample."""
    train_split: str = "train"
    """Name of the training split (a sub-folder for imagefolder, a split name or parquet stem for hf)."""
    val_split: str = "val"
    """Name of the validation split ('val' for ILSVRC2012 folders, usually 'validation' for hf)."""
    image_column: str = "image"
    """hf source only: column holding the images."""
    label_column: str = "label"
    """hf source only: column holding the integer class labels."""
    fraction: float = 1.0
    """Fraction of every training class kept in the stratified subset, in (0, 1]; each class keeps at least one image."""
    val_fraction: float = 1.0
    """Fraction of every validation class kept (stratified), in (0, 1]; 1.0 = the whole val split."""
    subset_seed: int = 0
    """Seed of the stratified subset draw; the chosen indices are cached, so a rerun reuses the same images."""
    cleaning_manifest: Optional[Path] = None
    """Folder with a cleaning manifest (``removal_list.txt`` and/or ``relabel_map.json``: sample ids or relative paths, targets as class indices or WNIDs), e.g. from ``python -m services.label_review export`` or ``services.label_issues``; applied to the training subset before training. None = the folder labels."""
    image_size: int = 224
    """Training crop side in pixels (RandomResizedCrop output)."""
    val_image_size: int = 224
    """Evaluation crop side in pixels (train and test resolution are set separately, as FixRes suggests)."""
    val_crop_ratio: float = 0.875
    """Evaluation: resize the short side to val_image_size / val_crop_ratio, then centre-crop (torchvision's 224/256)."""
    min_scale: float = 0.08
    """Lower bound of RandomResizedCrop's area fraction (Szegedy et al. 2015 use 0.08)."""
    hflip: bool = True
    """Random horizontal flip with p=0.5 during training."""
    color_jitter: float = 0.4
    """Brightness, contrast and saturation jitter strength (0 disables it)."""
    auto_augment: Literal["none", "randaugment", "trivialaugment"] = "none"
    """Policy applied after the crop: RandAugment (Cubuk et al. 2020) or TrivialAugmentWide (Mueller & Hutter 2021), from torchvision."""
    randaugment_num_ops: int = 2
    """RandAugment: operations per image."""
    randaugment_magnitude: int = 9
    """RandAugment: magnitude of each operation, in [0, 30]."""
    random_erasing: float = 0.0
    """Probability of erasing a random rectangle of the normalised image (Zhong et al. 2020); 0 disables it."""
    progressive_resizing: bool = False
    """Ramp the training crop from start_image_size to image_size between ramp_start_epoch and ramp_end_epoch (FFCV)."""
    start_image_size: int = 160
    """Progressive resizing: training crop side (px) up to ramp_start_epoch."""
    ramp_start_epoch: int = 0
    """Progressive resizing: first epoch (0-based) of the ramp."""
    ramp_end_epoch: int = 0
    """Progressive resizing: epoch (0-based) at which image_size is reached."""
    resolution_step: int = 32
    """Progressive resizing: crop sides are rounded to multiples of this many px (FFCV uses 32)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean of [0, 1] RGB pixels used by Normalize."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel std of [0, 1] RGB pixels used by Normalize."""
    decoder: Literal["pil", "opencv"] = "pil"
    """JPEG decoder of the workers. 'pil': Pillow (the reference path). 'opencv': cv2.imdecode for whole JPEGs (faster; BENCHMARKS.md), Pillow for every other file and for JPEGs that do not end with an EOI marker (truncated ones then fail and are skipped as usual)."""
    reduced_decode: bool = False
    """Training only: decode a JPEG at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) when its random crop is at least that many times the output side. Same crops as the full decode, within interpolation tolerance; measured +6-7 % loader speed on ImageNet-sized JPEGs at 128-176 px (BENCHMARKS.md), nothing on small ones."""
    normalize_on_device: bool = False
    """Training only: workers send uint8 (B, r, r, 3) batches and the float conversion and Normalize run on the training device (4x fewer bytes through shared memory and host-to-GPU copies; FFCV's NormalizeImage)."""
    device_cache: bool = False
    """Training only: decode the training subset once into a uint8 tensor on the training device (short side resized to device_cache_size, centre square kept); RandomResizedCrop and flip then run there in batches and no file is read again. Needs color_jitter 0, auto_augment none, random_erasing 0, reduced_decode false."""
    device_cache_size: int = 0
    """Side (px) of the cached squares; 0 = the largest training crop side. Memory: images x side^2 x 3 bytes (256,233 images at 128 px = 12.6 GB)."""
    num_workers: int = 4
    """DataLoader worker processes (0 = load in the main process)."""
    pin_memory: bool = True
    """Page-locked host buffers for faster host-to-GPU copies (ignored without CUDA)."""
    persistent_workers: bool = True
    """Keep workers alive between epochs (ignored when num_workers is 0)."""
    prefetch_factor: int = 2
    """Batches each worker loads ahead (ignored when num_workers is 0)."""
    index_cache_dir: Optional[Path] = None
    """Where file indexes and subset indices are cached. None = ~/.cache/resnet-imagenet."""


@dataclass
class ModelConfig:
    """Which network is trained."""

    name: str = "resnet50"
    """Architecture: resnet18, resnet34, resnet50, resnet101 or resnet152."""
    num_classes: Optional[int] = None
    """Classifier outputs. None = the number of classes found in the data."""
    small_input: bool = False
    """3x3 stride-1 stem without max-pool, for images of 64 px or less (Tiny ImageNet)."""
    zero_init_residual: bool = True
    """Zero the last BatchNorm gamma of each residual block (Goyal et al. 2017)."""
    blurpool: bool = False
    """Low-pass (3x3 binomial, depthwise) the input of each strided conv with >= 16 input channels (BlurPool: Zhang 2019; FFCV's ImageNet configs). The state_dict keys are torchvision's either way; a checkpoint is evaluated and exported with the setting it was trained with."""
    channels_last: bool = True
    """Use the channels_last memory format for the model and its inputs, on CUDA (tensor-core convolutions) and on the CPU (oneDNN's blocked kernels; BENCHMARKS.md has the measured gain); ignored on MPS."""
    compile: bool = False
    """torch.compile the model (TorchInductor) for training and evaluation; each new crop size of progressive resizing compiles once more (the first steps of a run or of a new size are slow)."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    """torch.compile mode: 'reduce-overhead' adds CUDA graphs, 'max-autotune' also searches kernel configurations (minutes of compiling)."""
    sync_batchnorm: bool = False
    """Under DDP on GPUs, compute BatchNorm statistics over all processes (SyncBatchNorm)."""


@dataclass
class TrainingConfig:
    """Optimisation, schedule, precision, checkpointing and resume."""

    epochs: int = 90
    """Number of training epochs."""
    batch_size: int = 256
    """Images per micro-batch per process."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    optimizer: Literal["sgd", "adamw"] = "sgd"
    """Optimizer. BatchNorm parameters and biases get no weight decay."""
    lr: float = 0.1
    """Peak learning rate after warmup; with lr_scaling 'linear', the LR per lr_reference_batch images."""
    lr_scaling: Literal["none", "linear"] = "none"
    """'linear': peak LR = lr x effective batch / lr_reference_batch (Goyal et al. 2017)."""
    lr_reference_batch: int = 256
    """Reference batch size of the linear scaling rule."""
    momentum: float = 0.9
    """SGD momentum (AdamW uses it as beta1)."""
    nesterov: bool = False
    """Nesterov momentum for SGD."""
    weight_decay: float = 1e-4
    """L2 weight decay (decoupled for AdamW), applied to conv and linear weights only."""
    scheduler: Literal["cosine", "linear", "onecycle", "step"] = "cosine"
    """LR schedule, stepped once per optimizer step: linear warmup + cosine, linear warmup + linear decay to min_lr (FFCV's triangular schedule), OneCycle, or warmup + step decay."""
    warmup_epochs: float = 0.0
    """Linear warmup length in epochs (cosine, linear and step schedules)."""
    min_lr: float = 0.0
    """Final LR of the cosine and linear schedules."""
    step_epochs: int = 30
    """Step schedule: epochs between LR decays."""
    step_gamma: float = 0.1
    """Step schedule: LR multiplier at each decay."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss, in [0, 1) (Szegedy et al. 2016)."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient L2 norm to this value (0 disables)."""
    mixup_alpha: float = 0.0
    """MixUp Beta(alpha, alpha) on batches (Zhang et al. 2018); 0 disables. With cutmix_alpha too, one is picked per batch."""
    cutmix_alpha: float = 0.0
    """CutMix Beta(alpha, alpha) on batches (Yun et al. 2019); 0 disables."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the weights, updated every ema_every_steps (0 disables; e.g. 0.9998)."""
    ema_every_steps: int = 1
    """Optimizer steps between EMA updates."""
    init_from: Optional[Path] = None
    """Start from this checkpoint's weights (a fresh optimizer and schedule), e.g. the previous phase's best.pt."""
    reinit_head: bool = False
    """With init_from: load everything but the classifier, which is re-initialised for this data's classes."""
    lr_finder: bool = False
    """Before a fresh run, run the LR range test on the initial weights and train at its suggested LR; applied by the entry points before they build the trainer (core.cli.build_trainer), not by the trainer itself."""
    lr_finder_steps: int = 100
    """Optimizer steps of that sweep, log-spaced from 1e-7 to 10 (100: fastai's lr_find and torch-lr-finder's default; python -m services.lr_finder has its own --lr_finder.num_steps)."""
    freeze_backbone: bool = False
    """Train only the classifier: conv1, bn1 and layer1-4 are frozen, their BatchNorm kept in eval mode."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Autocast precision. auto = bf16 on CUDA/CPU-capable GPUs, off on CPU and MPS; fp16 uses a GradScaler and needs CUDA."""
    seed: int = 0
    """Seed of weights, shuffling and augmentation."""
    deterministic: bool = False
    """Deterministic algorithms (bitwise-reproducible on CPU, slower on CUDA)."""
    device: str = "auto"
    """'auto' (CUDA, then MPS, then CPU), or a torch device string such as 'cuda:0' or 'cpu'."""
    resume: str = "auto"
    """'auto': continue from models/last.pt when it exists; 'none': start fresh; or a checkpoint path."""
    checkpoint_every_steps: int = 0
    """Also write last.pt every this many optimizer steps inside an epoch (0 = at epoch ends only)."""
    save_every_epochs: int = 5
    """Write epoch_NNN.pt every this many epochs (0 = never)."""
    keep_best_k: int = 3
    """Keep the k epoch_NNN.pt checkpoints with the best val top-1."""
    early_stopping_patience: int = 0
    """Stop after this many epochs without a val top-1 improvement (0 = never)."""
    eval_every_epochs: int = 1
    """Evaluate on the val split every this many epochs (and always after the last)."""
    eval_hflip: bool = False
    """Evaluate on each val image and its mirror image and average the logits (flip test-time augmentation, as FFCV's ImageNet example does): 2x the evaluation cost."""
    record_dynamics: bool = False
    """Record every training sample's margin (given-label logit minus the highest other) in every epoch, from the
    training pass's own logits, to logs/dynamics.npz (core.dynamics: the Area Under the Margin ranking of label
    issues, Pleiss et al. 2020). 8 bytes per sample and epoch on the training device; no extra forward pass.
    Not with MixUp/CutMix (a mixed batch has no single given label)."""
    elr_lambda: float = 0.0
    """Weight of the early-learning regularization term, lambda * log(1 - <t, p>) per sample (core.elr: Liu et al.
    2020, a loss that keeps a network from memorising wrong labels; 3 in the paper's CIFAR-10 setting); 0 disables.
    Keeps an (N, C) float32 table of targets on the training device and in the checkpoint; the logged train loss
    includes the term (<= 0). Not with MixUp/CutMix."""
    elr_beta: float = 0.7
    """Momentum of ELR's per-sample temporal ensemble of predictions, in [0, 1) (the paper's CIFAR-10 value)."""
    log_every_steps: int = 20
    """Refresh the progress bar and check the loss for NaN/Inf every this many optimizer steps."""

    @property
    def effective_batch_size(self) -> int:
        """Images per optimizer step in one process: batch_size x grad_accum_steps (multiply by the world size under DDP)."""
        return self.batch_size * self.grad_accum_steps

    def peak_lr(self, world_size: int = 1) -> float:
        """The LR reached after warmup: ``lr``, or with linear scaling ``lr x effective batch / reference batch``."""
        if self.lr_scaling == "linear":
            return self.lr * self.effective_batch_size * world_size / self.lr_reference_batch
        return self.lr

    def lr_from_peak(self, peak: float) -> float:
        """The ``lr`` whose :meth:`peak_lr` on one process is ``peak`` (an absolute LR at this effective batch, as
        the LR range test finds it): ``peak`` itself with ``lr_scaling`` 'none', ``peak`` per
        ``lr_reference_batch`` images with 'linear' (so that DDP's extra processes then scale it linearly)."""
        if self.lr_scaling == "linear":
            return peak * self.lr_reference_batch / self.effective_batch_size
        return peak


@dataclass
class LoggingConfig:
    """Where a run writes, and what it reports."""

    output_dir: Optional[Path] = None
    """Folder that receives logs/ and models/. None = the experiment script's own folder."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Console and file log level."""
    progress_bar: bool = True
    """Show tqdm bars with an ETA for every long loop: training epochs, evaluation, the LR finder, dataset indexing, the device cache (and, in the tools, Grad-CAM, K-fold label-issue runs, dataset statistics, val sorting)."""
    tensorboard: bool = False
    """Write TensorBoard event files to logs/tensorboard: per-epoch scalars (train/val loss, top-1/top-5, LR, images/s, the EMA metrics) and per-layer weight and gradient histograms (`tensorboard --logdir <output_dir>/logs/tensorboard`)."""
    wandb: bool = False
    """Log to Weights & Biases: the config, the per-epoch metrics and per-layer weight/gradient mean and std in the history; the summary shows val top-1, best top-1 and epochs."""
    wandb_project: str = "resnet-imagenet"
    """W&B project name."""
    wandb_mode: Literal["offline", "online"] = "offline"
    """W&B mode: offline writes under logs/wandb and can be synced later with `wandb sync`."""
    wandb_group: Optional[str] = None
    """W&B group, to gather related runs (for example a label-noise study)."""
    run_name: Optional[str] = None
    """Name shown in W&B and the log. None = '<model>-<source folder>'."""

    @property
    def logs_dir(self) -> Path:
        """The run's log folder: output_dir/logs."""
        return _required(self.output_dir, "--logging.output_dir") / "logs"

    @property
    def models_dir(self) -> Path:
        """The run's checkpoint folder: output_dir/models."""
        return _required(self.output_dir, "--logging.output_dir") / "models"


def _required(path: Optional[Path], flag: str) -> Path:
    if path is None:
        raise ValueError(f"{flag} is not set; experiment scripts set it to their own folder, library callers must pass it")
    return Path(path)


@dataclass
class ExperimentConfig:
    """Everything one training run needs. Validated when built: all problems are reported in one ValueError."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid configuration:\n  - " + "\n  - ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid value, each message naming its flag and what is allowed."""
        from core.model import available_models  # local import: the model module imports torch

        d, m, t = self.data, self.model, self.training
        p: list[str] = []

        def check(ok: bool, flag: str, allowed: str, value: Any) -> None:
            if not ok:
                p.append(f"--{flag} must be {allowed}, got {value!r}")

        check(0 < d.fraction <= 1, "data.fraction", "in (0, 1]", d.fraction)
        check(0 < d.val_fraction <= 1, "data.val_fraction", "in (0, 1]", d.val_fraction)
        check(d.image_size >= 8, "data.image_size", ">= 8 px", d.image_size)
        check(d.val_image_size >= 8, "data.val_image_size", ">= 8 px", d.val_image_size)
        check(0 < d.val_crop_ratio <= 1, "data.val_crop_ratio", "in (0, 1]", d.val_crop_ratio)
        check(0 < d.min_scale <= 1, "data.min_scale", "in (0, 1]", d.min_scale)
        check(d.color_jitter >= 0, "data.color_jitter", ">= 0", d.color_jitter)
        check(len(d.mean) == 3, "data.mean", "3 values (RGB)", d.mean)
        check(len(d.std) == 3 and all(s > 0 for s in d.std), "data.std", "3 positive values (RGB)", d.std)
        check(d.num_workers >= 0, "data.num_workers", ">= 0", d.num_workers)
        check(d.prefetch_factor >= 1, "data.prefetch_factor", ">= 1", d.prefetch_factor)
        check(d.randaugment_num_ops >= 1, "data.randaugment_num_ops", ">= 1", d.randaugment_num_ops)
        check(0 <= d.randaugment_magnitude <= 30, "data.randaugment_magnitude", "in [0, 30]", d.randaugment_magnitude)
        check(0 <= d.random_erasing <= 1, "data.random_erasing", "in [0, 1]", d.random_erasing)
        check(d.start_image_size >= 8, "data.start_image_size", ">= 8 px", d.start_image_size)
        check(d.resolution_step >= 1, "data.resolution_step", ">= 1 px", d.resolution_step)
        check(not d.progressive_resizing or 0 <= d.ramp_start_epoch <= d.ramp_end_epoch, "data.ramp_end_epoch",
              ">= --data.ramp_start_epoch >= 0", d.ramp_end_epoch)
        check(d.device_cache_size >= 0, "data.device_cache_size", ">= 0 px", d.device_cache_size)
        if d.device_cache:
            unsupported = {"data.color_jitter": d.color_jitter > 0, "data.auto_augment": d.auto_augment != "none",
                           "data.random_erasing": d.random_erasing > 0, "data.reduced_decode": d.reduced_decode}
            for flag, on in unsupported.items():
                check(not on, flag, "off (0, none or false) with --data.device_cache, which runs only "
                      "RandomResizedCrop and flip on the device", getattr(d, flag.split(".")[1]))
        check(d.train_split != d.val_split, "data.val_split", "different from --data.train_split", d.val_split)
        check(m.name in available_models(), "model.name", f"one of {', '.join(available_models())}", m.name)
        check(m.num_classes is None or m.num_classes >= 1, "model.num_classes", ">= 1 or null", m.num_classes)
        check(t.epochs >= 1, "training.epochs", ">= 1", t.epochs)
        check(t.batch_size >= 1, "training.batch_size", ">= 1", t.batch_size)
        check(t.grad_accum_steps >= 1, "training.grad_accum_steps", ">= 1", t.grad_accum_steps)
        check(t.lr > 0 and math.isfinite(t.lr), "training.lr", "a positive number", t.lr)
        check(0 <= t.momentum < 1, "training.momentum", "in [0, 1)", t.momentum)
        check(t.weight_decay >= 0, "training.weight_decay", ">= 0", t.weight_decay)
        check(0 <= t.warmup_epochs <= t.epochs, "training.warmup_epochs", "in [0, --training.epochs]",
              t.warmup_epochs)
        check(0 <= t.min_lr <= t.lr, "training.min_lr", "in [0, --training.lr]", t.min_lr)
        check(t.step_epochs >= 1, "training.step_epochs", ">= 1", t.step_epochs)
        check(0 < t.step_gamma <= 1, "training.step_gamma", "in (0, 1]", t.step_gamma)
        check(0 <= t.label_smoothing < 1, "training.label_smoothing", "in [0, 1)", t.label_smoothing)
        check(t.lr_reference_batch >= 1, "training.lr_reference_batch", ">= 1", t.lr_reference_batch)
        check(t.mixup_alpha >= 0, "training.mixup_alpha", ">= 0", t.mixup_alpha)
        check(t.cutmix_alpha >= 0, "training.cutmix_alpha", ">= 0", t.cutmix_alpha)
        check(0 <= t.ema_decay < 1, "training.ema_decay", "in [0, 1)", t.ema_decay)
        check(t.ema_every_steps >= 1, "training.ema_every_steps", ">= 1", t.ema_every_steps)
        check(t.lr_finder_steps >= 10, "training.lr_finder_steps",
              ">= 10 (the suggestion's edge checks use the first and last 10 %)", t.lr_finder_steps)
        check(not t.reinit_head or t.init_from is not None, "training.reinit_head",
              "false unless --training.init_from is set", t.reinit_head)
        check(t.grad_clip_norm >= 0, "training.grad_clip_norm", ">= 0 (0 disables)", t.grad_clip_norm)
        check(not (t.nesterov and t.optimizer != "sgd"), "training.nesterov", "false unless --training.optimizer sgd",
              t.nesterov)
        check(not (t.nesterov and t.momentum == 0), "training.nesterov", "false when --training.momentum is 0",
              t.nesterov)
        check(t.checkpoint_every_steps >= 0, "training.checkpoint_every_steps", ">= 0", t.checkpoint_every_steps)
        check(t.save_every_epochs >= 0, "training.save_every_epochs", ">= 0", t.save_every_epochs)
        check(t.keep_best_k >= 1, "training.keep_best_k", ">= 1", t.keep_best_k)
        check(t.early_stopping_patience >= 0, "training.early_stopping_patience", ">= 0",
              t.early_stopping_patience)
        check(t.eval_every_epochs >= 1, "training.eval_every_epochs", ">= 1", t.eval_every_epochs)
        check(not (t.record_dynamics and (t.mixup_alpha > 0 or t.cutmix_alpha > 0)), "training.record_dynamics",
              "false with --training.mixup_alpha or --training.cutmix_alpha (a mixed batch has no single given "
              "label)", t.record_dynamics)
        check(t.elr_lambda >= 0, "training.elr_lambda", ">= 0 (0 disables)", t.elr_lambda)
        check(0 <= t.elr_beta < 1, "training.elr_beta", "in [0, 1)", t.elr_beta)
        check(not (t.elr_lambda > 0 and (t.mixup_alpha > 0 or t.cutmix_alpha > 0)), "training.elr_lambda",
              "0 with --training.mixup_alpha or --training.cutmix_alpha (a mixed image is two samples, its "
              "prediction no single sample's target)", t.elr_lambda)
        check(t.log_every_steps >= 1, "training.log_every_steps", ">= 1", t.log_every_steps)
        check(t.device == "auto" or t.device.split(":")[0] in ("cpu", "cuda", "mps"), "training.device",
              "'auto', 'cpu', 'cuda[:N]' or 'mps'", t.device)
        return p

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of str/int/float/bool/None/list (Paths as strings), safe for YAML, JSON and
        ``torch.load(weights_only=True)``."""
        return _plain(dataclasses.asdict(self))

    def result_settings(self) -> dict[str, Any]:
        """The settings that decide what a run computes: :meth:`to_dict` without ``logging``, ``training.resume`` and
        ``data.num_workers`` and ``training.record_dynamics`` (where outputs go, how a run restarts, how many processes
        load data and whether margins are recorded change nothing computed: each sample's augmentation is seeded by
        itself). Finished results are reused only under equal
        settings (:func:`settings_conflicts`)."""
        d = self.to_dict()
        d.pop("logging")
        d["training"].pop("resume", None)
        d["data"].pop("num_workers", None)
        d["training"].pop("record_dynamics", None)  # a recorded run trains the same model
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming them.

        Raises:
            ValueError: unknown section or field names, or invalid values.
        """
        sections = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig, "logging": LoggingConfig}
        unknown = sorted(set(d) - set(sections))
        if unknown:
            raise ValueError(f"unknown config sections {unknown}; expected {sorted(sections)}")
        built = {}
        for name, section_cls in sections.items():
            values = dict(d.get(name) or {})
            fields = {f.name: f for f in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - set(fields))
            if bad:
                raise ValueError(f"unknown fields in section '{name}': {bad}; valid: {sorted(fields)}")
            for key, value in values.items():
                if value is not None and "Path" in str(fields[key].type):
                    values[key] = Path(value)
                elif isinstance(value, list):
                    values[key] = tuple(value)
            built[name] = section_cls(**values)
        return cls(**built)

    def save_yaml(self, path: Path) -> Path:
        """Write the resolved config as YAML (atomically) and return the path."""
        from core.atomic import atomic_write_text

        return atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def settings_conflicts(saved: Any, now: Any, path: str = "") -> list[str]:
    """Settings that differ between a saved settings record and the current one, as 'section/field: old -> new'.

    Below the top level, keys present on one side only are not conflicts: a config field added to the library
    since (with its default) must not invalidate finished runs. At the top level they are: those keys say what
    decided a result (a noise seed, cleanlab settings, a fold config), so one set on one side only is a change.
    """
    if isinstance(saved, dict) and isinstance(now, dict):
        def state(d: dict, key: str) -> str:
            return "(set)" if key in d else "(none)"

        one_sided = [] if path else [f"{k}: {state(saved, k)} -> {state(now, k)}"
                                     for k in sorted(set(saved) ^ set(now))]
        both = sorted(set(saved) & set(now))
        return one_sided + [c for k in both for c in settings_conflicts(saved[k], now[k], f"{path}/{k}")]
    return [] if saved == now else [f"{path.lstrip('/')}: {saved!r} -> {now!r}"]


def build_parser(description: str = "Train a ResNet on ImageNet-style data."):
    """The command-line parser: ``--config FILE.yaml`` (repeatable, later files win), then ``--section.field VALUE``.

    Built on jsonargparse (the CLI library litgpt uses), which reads each field's docstring for ``--help``. The
    description keeps its line breaks (usage examples stay one per line).
    """
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(description=description, exit_on_error=True, default_env=False,
                            formatter_class=_help_formatter())
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file of settings (repeatable; later wins).")
    for name, section_cls in (("data", DataConfig), ("model", ModelConfig), ("training", TrainingConfig),
                              ("logging", LoggingConfig)):
        parser.add_class_arguments(section_cls, nested_key=name)
    return parser


def _help_formatter():
    import argparse

    from jsonargparse import DefaultHelpFormatter

    class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's help (types and defaults per flag) with the description printed as written."""

    return HelpFormatter


def parse_config(argv: Optional[Sequence[str]] = None, config_files: Sequence[Path] = (),
                 description: str = "Train a ResNet on ImageNet-style data.",
                 sample_files: Sequence[Path] = (), defaults: Optional[dict[str, Any]] = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from YAML files and command-line flags.

    Precedence, lowest first: dataclass defaults, ``defaults`` (``{"section.field": value}``, e.g. an experiment's
    own output folder), ``config_files`` in order, ``sample_files`` (only when neither the files nor ``argv`` set
    ``--data.root``), ``--config`` files given in argv, then ``--section.field`` flags.
    ``--help`` and ``--print_config`` show the values so resolved (see :func:`parse_sections`).

    Raises:
        SystemExit: on unknown flags or values of the wrong type (jsonargparse prints usage and the problem), and
            after printing ``--help`` or ``--print_config``.
        ValueError: on values of the right type that are out of range, all reported together.
    """
    init = parse_sections(argv, config_files, description, sample_files=sample_files, defaults=defaults)
    return ExperimentConfig(data=init.data, model=init.model, training=init.training, logging=init.logging)


_PRINT_ONLY_FLAGS = ("-h", "--help", "--print_config")


def _without_print_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--help``/``-h`` and ``--print_config[=FLAGS]`` (with a separate FLAGS word), which print and
    exit: what is left is the settings part of the command line."""
    out: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value and not arg.startswith("-"):
            skip_value = False
            continue
        skip_value = arg == "--print_config"
        if arg in _PRINT_ONLY_FLAGS or arg.startswith("--print_config="):
            continue
        out.append(arg)
    return out


def parse_sections(argv: Optional[Sequence[str]] = None, config_files: Sequence[Path] = (),
                   description: str = "Train a ResNet on ImageNet-style data.", parser: Any = None,
                   sample_files: Sequence[Path] = (), defaults: Optional[dict[str, Any]] = None):
    """The config sections parsed as :func:`parse_config` does, but not yet validated together.

    The YAML layers and the flags are first resolved without ``--help``/``--print_config``; the result becomes the
    parser's defaults, and then ``argv`` is parsed as given. So ``--help`` lists, as each flag's default, the value
    this command would run with (YAML layers and the other flags applied), and ``--print_config`` prints it.

    Args:
        parser: a parser from :func:`build_parser`, possibly with more sections added (None = a new one).
        sample_files: YAML layers applied after ``config_files`` only when ``data.root`` stays unset (the quick
            run on the bundled sample; the experiment scripts' ``sample.yaml``).
        defaults: ``{"section.field": value}`` replacing dataclass defaults, below every YAML layer.

    Returns:
        a namespace with ``data``, ``model``, ``training`` and ``logging`` dataclass instances (and any section
        the caller's parser adds).

    Raises:
        SystemExit: unknown flags or values of the wrong type (jsonargparse prints usage and the problem), and
            after printing ``--help`` or ``--print_config``.
    """
    argv = list(argv if argv is not None else [])
    settings = _without_print_flags(argv)
    parser = parser if parser is not None else build_parser(description)
    if defaults:
        parser.set_defaults(dict(defaults))

    def files_args(files: Sequence[Path]) -> list[str]:
        return [a for f in files for a in ("--config", str(f))]

    layers = list(config_files)
    resolved = parser.parse_args(files_args(layers) + settings)
    if sample_files and resolved.get("data.root") is None:
        layers += list(sample_files)
        resolved = parser.parse_args(files_args(layers) + settings)
    if len(settings) < len(argv):  # --help or --print_config: print the resolved values, then exit
        if any(a in ("-h", "--help") for a in argv):
            parser.set_defaults({k: v for k, v in resolved.items() if k != "config"})
            if layers:
                parser.description = (f"{parser.description or ''}\n\nDefaults below are the values this command "
                                      f"runs with: dataclass defaults < {' < '.join(Path(f).name for f in layers)}"
                                      f" < the flags given.")
        parser.parse_args(files_args(layers) + argv)
    return parser.instantiate(resolved) if hasattr(parser, "instantiate") else parser.instantiate_classes(resolved)


def load_yaml_config(path: Path) -> ExperimentConfig:
    """Read a YAML file written by :meth:`ExperimentConfig.save_yaml` (or a hand-written one).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown keys or invalid values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return ExperimentConfig.from_dict(yaml.safe_load(path.read_text()) or {})


def reference_markdown() -> str:
    """Markdown tables of every flag, its default and its docstring (the README's "Configuration flags")."""
    import ast

    docs: dict[tuple[str, str], str] = {}
    for node in ast.parse(Path(__file__).read_text()).body:
        if isinstance(node, ast.ClassDef):
            for stmt, nxt in zip(node.body, node.body[1:]):
                if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                    docs[(node.name, stmt.target.id)] = str(nxt.value.value)
    lines: list[str] = []
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("training", TrainingConfig),
                         ("logging", LoggingConfig)):
        lines += [f"**{section}**", "", "| flag | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            meaning = " ".join(docs[(cls.__name__, f.name)].split()).replace("|", "/")  # one table row per flag
            lines.append(f"| `--{section}.{f.name}` | `{shown}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
