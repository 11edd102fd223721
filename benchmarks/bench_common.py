"""Helpers shared by the benchmark scripts: machine description, timing statistics and the JSON record."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

BENCHMARKS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCHMARKS_DIR.parent
if str(PROJECT_ROOT) not in sys.path:  # `python benchmarks/x.py` works without `pip install -e .` too
    sys.path.insert(0, str(PROJECT_ROOT))

RESULTS_DIR = BENCHMARKS_DIR / "results"
"""Default folder of the JSON records (one file per run, named by benchmark and UTC time)."""

# CPU features that decide whether bf16 autocast can be fast on a CPU: without AVX-512 BF16 or AMX, oneDNN
# emulates bf16 matmuls/convolutions and a bf16 step is slower than fp32.
_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), [f for f in _CPU_FLAGS_OF_INTEREST if f in flags]


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, CPU features, GPU, library versions, date, load.

    ``load_average_start`` is taken here; the caller adds ``load_average_end`` when the run finishes.
    """
    import numpy as np
    import torch

    cpu_model, cpu_flags = _cpu_model_and_flags()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_flags": cpu_flags,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
        "load_average_start": load_average(),
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    try:
        from core.logger import git_commit
        info["git_commit"] = git_commit()
    except ImportError:
        pass
    return info


def summarise(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, max and mean of a list of durations (s)."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "mean_s": statistics.fmean(seconds), "repeats": len(seconds)}


def write_record(record: dict[str, Any], out: Optional[Path], name: str) -> Path:
    """Write ``record`` as indented JSON to ``out`` (default ``benchmarks/results/<name>-<UTC time>.json``)."""
    if out is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS_DIR / f"{name}-{stamp}.json"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return out
