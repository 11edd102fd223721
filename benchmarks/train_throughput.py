"""Training throughput in images/s: the ceiling, the project's full pipeline, and a torchvision-style baseline.

    python benchmarks/train_throughput.py                                  # resnet18+50 x 128/176/224 px
    python benchmarks/train_throughput.py --models resnet18 --sizes 128 --amp bf16 --batch-size 64
    python benchmarks/train_throughput.py --loader-only --sizes 128 224    # decode + augment only, no model

Modes (each with a fresh model and the trainer's own step, ``core.step.forward_backward`` + ``optimizer_step``,
the same autocast dtype and channels_last rule as ``ImageNetTrainer``):

- ``ceiling`` (a): one random batch already on the device, reused every step: the speed of the step alone.
- ``pipeline`` (b): ``ImageNetDataManager.train_loader`` (Albumentations, ``EpochSampler``, the manager's worker,
  prefetch and pin-memory settings) on a real ImageFolder, then the step.
- ``baseline`` (c): written as torchvision's reference ``train.py`` does it: ``torchvision.datasets.ImageFolder``,
  PIL decode, ``transforms.RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` (float32
  on the CPU), a ``DataLoader`` with default settings except ``batch_size``, ``shuffle`` and ``num_workers``, and
  the reference script's default step: fp32, NCHW, eager (``--baseline-step same`` gives it (b)'s step settings
  instead, so that (b)/(c) isolates the input pipeline).

The pipeline (b) runs with the project's fast input options unless told otherwise: ``--decoder opencv``,
``--normalize-on-device`` (uint8 batches, Normalize on the device), and optionally ``--reduced-decode`` and
``--compile``; each maps to the ``--data.*``/``--model.*`` flag of the same name.

images/s = batch size / median step time over ``--steps`` timed steps after ``--warmup`` untimed ones; a step is
timed from asking the loader for a batch to the end of the optimizer step (``torch.cuda.synchronize`` on CUDA), so
waiting for data is included. ``images_per_s_mean`` (all timed images / total time) is recorded too: where the
loader stalls only now and then, the median hides the stalls and the mean does not.

For a like-for-like comparison the pipeline runs with ``--color-jitter 0`` by default (the baseline has no jitter);
pass ``--color-jitter 0.4`` for the project's default recipe. The data default is ``../shared/data/imagenette2-224``
beside the repository when present, else the bundled sample.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from bench_common import PROJECT_ROOT, load_average, machine_info, write_record

import torch
import torch.nn as nn

from core.config import BUNDLED_SAMPLE_ROOT, DataConfig, TrainingConfig
from core.data.manager import ImageNetDataManager
from core.data.transforms import to_device
from core.model import available_models, build_model
from core.step import (build_optimizer, forward_backward, memory_format_for, optimizer_step, resolve_amp,
                       select_device)

SHARED_IMAGENETTE = PROJECT_ROOT.parent / "shared" / "data" / "imagenette2-224"
MODES = ("ceiling", "pipeline", "baseline")
CACHE_BUILD_S: list[dict[str, Any]] = []  # --device-cache: time to decode the subset into the cache, per build
LOADERS = ("ours", "pil_baseline")


def default_data_root() -> Path:
    """``<repo>/../shared/data/imagenette2-224`` when present, else the bundled 10-class sample."""
    return SHARED_IMAGENETTE if SHARED_IMAGENETTE.is_dir() else BUNDLED_SAMPLE_ROOT


# ----------------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------------

def data_config(args: argparse.Namespace, size: int) -> DataConfig:
    """The project's data config for the pipeline (b): the whole train split at ``size`` px."""
    return DataConfig(root=args.data_root, image_size=size, val_image_size=size, color_jitter=args.color_jitter,
                      num_workers=args.workers, index_cache_dir=args.index_cache_dir, decoder=args.decoder,
                      normalize_on_device=args.normalize_on_device, reduced_decode=args.reduced_decode,
                      prefetch_factor=args.prefetch_factor, device_cache=args.device_cache,
                      device_cache_size=args.device_cache_size)


def our_batches(args: argparse.Namespace, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (B, 3, size, size) batches from ``ImageNetDataManager.train_loader``, epoch after epoch: float32,
    or uint8 with ``--normalize-on-device`` (then :func:`to_device` normalises on the device)."""
    manager = ImageNetDataManager(data_config(args, size), seed=args.seed)
    t0 = time.perf_counter()
    loader = manager.train_loader(args.batch_size, device=select_device(args.device))
    if args.device_cache:  # built eagerly by train_loader, once; not part of the timed steps
        CACHE_BUILD_S.append({"image_size": size, "seconds": time.perf_counter() - t0,
                              "images": len(manager.train_ids)})
        print(f"  device cache of {len(manager.train_ids)} images built in {CACHE_BUILD_S[-1]['seconds']:.1f} s",
              flush=True)
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def baseline_batches(args: argparse.Namespace, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches as torchvision's reference script makes them: PIL + torchvision.transforms, float32 on
    the CPU, a default DataLoader (no pin_memory, no persistent workers, default prefetch)."""
    import torchvision
    from torchvision import transforms as T

    cfg = DataConfig()
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(mean=cfg.mean, std=cfg.std)])
    ds = torchvision.datasets.ImageFolder(str(Path(args.data_root) / cfg.train_split), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         drop_last=True)
    for _ in itertools.count():
        yield from loader


def make_batches(which: str, args: argparse.Namespace, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return our_batches(args, size) if which in ("pipeline", "ours") else baseline_batches(args, size)


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(mode: str, model_name: str, size: int, num_classes: int, args: argparse.Namespace,
                  device: torch.device) -> dict[str, Any]:
    """Time ``--steps`` training steps of ``mode`` (ceiling, pipeline or baseline) after ``--warmup`` steps.

    Returns:
        images_per_s (batch / median step), images_per_s_mean, step_ms_median and the raw step times (ms).
    """
    torch.manual_seed(args.seed)
    reference_step = mode == "baseline" and args.baseline_step == "reference"
    # torchvision's reference train.py by default: fp32 (no --amp), NCHW, eager (no --torchcompile)
    amp_dtype = None if reference_step else resolve_amp(args.amp, device)
    memory_format = torch.preserve_format if reference_step else {
        "auto": memory_format_for(True, device), "on": torch.channels_last, "off": torch.preserve_format
    }[args.channels_last]
    channels_last = memory_format == torch.channels_last
    compile_model = args.compile and not reference_step
    model = build_model(model_name, num_classes=num_classes, blurpool=args.blurpool and not reference_step)
    model.to(device, memory_format=memory_format)
    model.train()
    optimizer = build_optimizer(model, TrainingConfig(lr=0.01))
    if compile_model:  # as --model.compile does; the warm-up steps absorb the compilation
        model = torch.compile(model, mode=args.compile_mode, dynamic=False)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss()
    if mode == "ceiling":
        images = torch.randn(args.batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format)
        targets = torch.randint(0, num_classes, (args.batch_size,), device=device)
        batches: Iterator = itertools.repeat((images, targets))
    else:
        batches = make_batches(mode, args, size)

    step_s: list[float] = []
    _sync(device)
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        images, targets = next(batches)
        images = to_device(images, device, DataConfig.mean, DataConfig.std, memory_format)
        targets = targets.to(device, non_blocking=True)
        loss, _ = forward_backward(model, images, targets, criterion, amp_dtype, scaler, 1)
        optimizer_step(optimizer, scaler, model)
        _sync(device)
        if i >= args.warmup:
            step_s.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{model_name} {size} px {mode}: the loss became {loss.item()}")
    _close(batches)
    median = statistics.median(step_s)
    return {"mode": mode, "model": model_name, "image_size": size, "batch_size": args.batch_size,
            "compile": compile_model,
            "blurpool": args.blurpool and not reference_step,
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off", "channels_last": channels_last,
            "steps": args.steps, "warmup": args.warmup,
            "images_per_s": args.batch_size / median,
            "images_per_s_mean": args.batch_size * len(step_s) / sum(step_s),
            "step_ms_median": median * 1e3, "step_ms": [round(s * 1e3, 3) for s in step_s]}


def time_loader(which: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Decode + augment + collate only (no model): images/s over ``--steps`` batches after ``--warmup``, and per
    worker (divided by ``max(1, --workers)``: with 0 workers the main process is the one worker)."""
    batches = make_batches(which, args, size)
    for _ in range(args.warmup):
        next(batches)
    t0 = time.perf_counter()
    images = 0
    for _ in range(args.steps):
        x, _ = next(batches)
        images += x.shape[0]
    elapsed = time.perf_counter() - t0
    _close(batches)
    rate = images / elapsed
    workers = max(1, args.workers)
    return {"loader": which, "image_size": size, "batch_size": args.batch_size, "workers": args.workers,
            "batches": args.steps, "warmup": args.warmup, "images_per_s": rate,
            "images_per_s_per_worker": rate / workers, "output_dtype": str(x.dtype).replace("torch.", "")}


def _close(batches: Iterator) -> None:
    """Stop a batch generator and let its DataLoader workers exit before the next measurement starts."""
    close = getattr(batches, "close", None)
    if close is not None:
        close()
    gc.collect()


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, size): the median images/s of each mode over the rounds, and (b)/(a), (b)/(c) as the median of
    the per-round ratios, with their min and max (None where a mode was not run)."""
    by_key: dict[tuple[str, int], dict[str, dict[int, float]]] = {}
    for r in results:
        by_key.setdefault((r["model"], r["image_size"]), {}).setdefault(r["mode"], {})[r.get("round", 0)] = \
            r["images_per_s"]
    out = []
    for (model, size), v in by_key.items():
        row: dict[str, Any] = {"model": model, "image_size": size}
        for mode in MODES:
            row[mode] = statistics.median(v[mode].values()) if mode in v else None
        for other, name in (("ceiling", "pipeline_over_ceiling"), ("baseline", "pipeline_over_baseline")):
            per_round = [v["pipeline"][k] / v[other][k] for k in v.get("pipeline", {}) if k in v.get(other, {})]
            row[name] = statistics.median(per_round) if per_round else None
            row[name + "_range"] = [min(per_round), max(per_round)] if per_round else None
        out.append(row)
    return out


def loader_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per image size: the median per-worker images/s of each loader over the rounds, and the median, min and max
    of the per-round ratio ours / PIL baseline."""
    out = []
    for size in sorted({r["image_size"] for r in rows}):
        per = {w: {r["round"]: r["images_per_s_per_worker"] for r in rows if r["image_size"] == size
                   and r["loader"] == w} for w in LOADERS}
        ratios_ = [per["ours"][k] / per["pil_baseline"][k] for k in per["ours"] if k in per["pil_baseline"]]
        out.append({"image_size": size, "rounds": len(ratios_),
                    "ours_per_worker": statistics.median(per["ours"].values()),
                    "pil_baseline_per_worker": statistics.median(per["pil_baseline"].values()),
                    "ratio_median": statistics.median(ratios_), "ratio_min": min(ratios_),
                    "ratio_max": max(ratios_)})
    return out


def _f(x: Optional[float], spec: str) -> str:
    return format(x, spec) if x is not None else "-"


def print_report(record: dict[str, Any]) -> None:
    s, m = record["settings"], record["machine"]
    print(f"device {s['device']}, batch {s['batch_size']}, amp {s['amp']}, workers {s['workers']}, "
          f"{s['steps']} timed steps after {s['warmup']}, data {s['data_root']}")
    if record["training"]:
        print(f"{'model':<10}{'px':>5}{'(a) ceiling':>13}{'(b) ours':>11}{'(c) baseline':>14}{'b/a':>7}{'b/c':>7}"
              "   images/s = batch / median step")
        for r in record["ratios"]:
            print(f"{r['model']:<10}{r['image_size']:>5}{_f(r['ceiling'], '.1f'):>13}{_f(r['pipeline'], '.1f'):>11}"
                  f"{_f(r['baseline'], '.1f'):>14}{_f(r['pipeline_over_ceiling'], '.2f'):>7}"
                  f"{_f(r['pipeline_over_baseline'], '.2f'):>7}")
    if record["loader_only"]:
        print(f"{'px':>5}{'ours/worker':>13}{'PIL/worker':>12}{'ratio':>8}{'ratio range':>15}"
              f"   images/s per worker, median of {s['repeats']} interleaved rounds")
        for r in record["loader_summary"]:
            print(f"{r['image_size']:>5}{r['ours_per_worker']:>13.1f}{r['pil_baseline_per_worker']:>12.1f}"
                  f"{r['ratio_median']:>8.2f}{r['ratio_min']:>8.2f}-{r['ratio_max']:.2f}")
    gpu = f", GPU {m['gpu_name']}" if m["gpu_name"] else ""
    print(f"machine: {m['cpu_model']} ({m['cpu_usable']} usable cores){gpu}, torch {m['torch']}, "
          f"load average {m['load_average_start']} -> {m['load_average_end']}")


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"], help="architectures")
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 176, 224], help="training crop sides (px)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="training modes to run")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--steps", type=int, default=30, help="timed steps (batches in --loader-only)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cudnn autotuning, worker start-up)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: usable CPU cores)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA, MPS, CPU) or a torch device string")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                   help="autocast dtype, as --training.amp (auto: bf16/fp16 on CUDA, off elsewhere)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="auto: on CUDA and the CPU, as the trainer does (core.step.memory_format_for)")
    p.add_argument("--baseline-step", choices=["reference", "same"], default="reference",
                   help="(c)'s step: 'reference' = torchvision's defaults (fp32, NCHW, eager), as a user of the "
                        "reference script gets; 'same' = (b)'s --amp/--channels-last/--compile, isolating the loader")
    p.add_argument("--compile", action="store_true", help="torch.compile the model, as --model.compile does")
    p.add_argument("--blurpool", action="store_true", help="BlurPool on the strided convs, as --model.blurpool does")
    p.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--color-jitter", type=float, default=0.0,
                   help="the pipeline's ColorJitter strength (0 = the same augmentation as the baseline)")
    p.add_argument("--decoder", choices=["pil", "opencv"], default="opencv", help="the pipeline's --data.decoder")
    p.add_argument("--normalize-on-device", action=argparse.BooleanOptionalAction, default=True,
                   help="the pipeline's --data.normalize_on_device (uint8 batches, Normalize on the device)")
    p.add_argument("--reduced-decode", action=argparse.BooleanOptionalAction, default=False,
                   help="the pipeline's --data.reduced_decode (JPEG DCT-scaled decoding for small crops)")
    p.add_argument("--device-cache", action=argparse.BooleanOptionalAction, default=False,
                   help="the pipeline's --data.device_cache (decoded uint8 subset on the device; crops there)")
    p.add_argument("--device-cache-size", type=int, default=0, help="the pipeline's --data.device_cache_size")
    p.add_argument("--prefetch-factor", type=int, default=DataConfig.prefetch_factor,
                   help="the pipeline's --data.prefetch_factor (batches each worker loads ahead)")
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"ImageFolder root with train/ (default: {SHARED_IMAGENETTE} if present, else the sample)")
    p.add_argument("--index-cache-dir", type=Path, default=None, help="the data manager's index cache")
    p.add_argument("--loader-only", action="store_true", help="time decode + augment only: ours vs PIL baseline")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved rounds (of the modes, or with --loader-only of ours and PIL); medians reported")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads of the main process (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON record (default: benchmarks/results/train_throughput-<UTC time>.json)")
    args = p.parse_args(argv)
    problems = []
    unknown = [m for m in args.models if m not in available_models()]
    if unknown:
        problems.append(f"--models: unknown {unknown}; choose from {', '.join(available_models())}")
    for flag in ("batch_size", "steps", "repeats"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.threads is not None and args.threads < 1:
        problems.append(f"--threads must be >= 1, got {args.threads}")
    if args.warmup < 0:
        problems.append(f"--warmup must be >= 0, got {args.warmup}")
    if any(s < 16 for s in args.sizes):
        problems.append(f"--sizes must be >= 16 px, got {args.sizes}")
    if problems:
        p.error("; ".join(problems))
    if args.workers is None:
        import os
        args.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.data_root = args.data_root or default_data_root()
    if args.device_cache and args.color_jitter > 0:
        p.error("--device-cache runs only RandomResizedCrop and flip on the device: use --color-jitter 0")
    if not (Path(args.data_root) / "train").is_dir():
        p.error(f"--data-root {args.data_root} has no train/ folder (an ImageFolder root is expected)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as ImageNetTrainer does when not deterministic
    training, loader_only = [], []
    if args.loader_only:
        for size in args.sizes:
            for round_ in range(args.repeats):  # interleaved, so drifts of a shared VM hit both loaders alike
                for which in LOADERS:
                    loader_only.append({**time_loader(which, size, args), "round": round_})
                    print(f"  loader {which:<13} {size:>4} px, round {round_ + 1}/{args.repeats}: "
                          f"{loader_only[-1]['images_per_s']:.1f} images/s", flush=True)
    else:
        num_classes = ImageNetDataManager(data_config(args, args.sizes[0]), seed=args.seed).num_classes
        for model_name in args.models:
            for size in args.sizes:
                for round_ in range(args.repeats):  # interleaved rounds, as for --loader-only
                    for mode in args.modes:
                        training.append({**time_training(mode, model_name, size, num_classes, args, device),
                                         "round": round_})
                        print(f"  {model_name} {size:>4} px {mode:<9} round {round_ + 1}/{args.repeats}: "
                              f"{training[-1]['images_per_s']:.1f} images/s", flush=True)
    machine["load_average_end"] = load_average()
    record = {
        "benchmark": "train_throughput",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "settings": {"device": str(device), "amp": args.amp, "channels_last": args.channels_last,
                     "compile": args.compile, "compile_mode": args.compile_mode if args.compile else None,
                     "baseline_step": args.baseline_step,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None,
                     "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
                     "workers": args.workers, "color_jitter": args.color_jitter, "data_root": str(args.data_root),
                     "decoder": args.decoder, "normalize_on_device": args.normalize_on_device,
                     "reduced_decode": args.reduced_decode, "prefetch_factor": args.prefetch_factor,
                     "device_cache": args.device_cache, "device_cache_size": args.device_cache_size,
                     "models": args.models, "sizes": args.sizes, "modes": args.modes,
                     "loader_only": args.loader_only, "repeats": args.repeats, "threads": torch.get_num_threads(),
                     "seed": args.seed},
        "training": training,
        "ratios": ratios(training),
        "loader_only": loader_only,
        "loader_summary": loader_summary(loader_only),
        "device_cache_build": CACHE_BUILD_S,
    }
    print_report(record)
    print(f"wrote {write_record(record, args.out, 'train_throughput')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
