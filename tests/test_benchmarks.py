"""Smoke tests of the benchmark scripts: tiniest settings on the bundled sample, on the CPU; no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import run_script_in_process
from core.config import BUNDLED_SAMPLE_ROOT, PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"


def run_benchmark(script: str, args: list[str], out: Path, fresh: bool = False) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with one intra-op thread; return its JSON. With ``fresh``, in a new interpreter
    from an unrelated cwd (scripts must not depend on it), as a user runs it; otherwise in this one
    (:func:`run_script_in_process`: the 7 s of imports saved)."""
    # One intra-op thread: on a small shared CPU, 2 threads per process oversubscribe and are several times slower.
    if fresh:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args, "--out", str(out)], cwd="/", env=env,
                              capture_output=True, text=True, timeout=300)
    else:
        proc = run_script_in_process(BENCHMARKS / script, [*args, "--out", str(out)], threads=1)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert f"wrote {out}" in proc.stdout
    return json.loads(out.read_text())


def check_machine(machine: dict[str, Any]) -> None:
    for key in ("cpu_model", "cpu_count", "torch", "date_utc", "load_average_start", "load_average_end",
                "gpu_name"):
        assert key in machine, key
    assert machine["cpu_count"] >= 1 and machine["cpu_model"]


TINY = ["--models", "resnet18", "--sizes", "32", "--batch-size", "4", "--steps", "2", "--warmup", "1",
        "--device", "cpu", "--data-root", str(BUNDLED_SAMPLE_ROOT)]


def test_train_throughput_all_modes(tmp_path: Path) -> None:
    rec = run_benchmark("train_throughput.py", TINY + ["--workers", "0", "--amp", "off",
                                                       "--index-cache-dir", str(tmp_path / "cache")],
                        tmp_path / "train.json", fresh=True)
    check_machine(rec["machine"])
    assert rec["benchmark"] == "train_throughput"
    assert rec["settings"]["device"] == "cpu" and rec["settings"]["batch_size"] == 4
    assert [r["mode"] for r in rec["training"]] == ["ceiling", "pipeline", "baseline"]
    for r in rec["training"]:
        assert r["model"] == "resnet18" and r["image_size"] == 32 and r["amp"] == "off"
        assert r["images_per_s"] > 0 and r["images_per_s_mean"] > 0 and r["step_ms_median"] > 0
        assert len(r["step_ms"]) == 2
    (ratio,) = rec["ratios"]
    assert ratio["pipeline_over_ceiling"] > 0 and ratio["pipeline_over_baseline"] > 0
    assert rec["loader_only"] == []


def test_train_throughput_interleaved_rounds(tmp_path: Path) -> None:
    rec = run_benchmark("train_throughput.py", TINY + ["--workers", "0", "--modes", "pipeline", "baseline",
                                                       "--repeats", "2", "--steps", "1",
                                                       "--index-cache-dir", str(tmp_path / "cache")],
                        tmp_path / "rounds.json")
    assert [(r["mode"], r["round"]) for r in rec["training"]] == [
        ("pipeline", 0), ("baseline", 0), ("pipeline", 1), ("baseline", 1)]
    (ratio,) = rec["ratios"]
    per_round = [rec["training"][0]["images_per_s"] / rec["training"][1]["images_per_s"],
                 rec["training"][2]["images_per_s"] / rec["training"][3]["images_per_s"]]
    assert ratio["pipeline_over_baseline_range"] == [min(per_round), max(per_round)]
    assert ratio["pipeline_over_baseline"] == pytest.approx(sum(per_round) / 2)  # the median of two
    assert ratio["ceiling"] is None and ratio["pipeline_over_ceiling"] is None


def test_train_throughput_loader_only(tmp_path: Path) -> None:
    rec = run_benchmark("train_throughput.py", TINY + ["--loader-only", "--workers", "1", "--repeats", "2",
                                                       "--index-cache-dir", str(tmp_path / "cache")],
                        tmp_path / "loader.json")
    check_machine(rec["machine"])
    assert rec["training"] == [] and rec["ratios"] == []
    assert [(r["loader"], r["round"]) for r in rec["loader_only"]] == [
        ("ours", 0), ("pil_baseline", 0), ("ours", 1), ("pil_baseline", 1)]
    for r in rec["loader_only"]:
        assert r["image_size"] == 32 and r["workers"] == 1
        assert r["output_dtype"] == ("uint8" if r["loader"] == "ours" else "float32")  # normalize_on_device
        assert r["images_per_s"] > 0 and r["images_per_s_per_worker"] > 0
    (summary,) = rec["loader_summary"]
    assert summary["image_size"] == 32 and summary["rounds"] == 2
    assert summary["ratio_min"] <= summary["ratio_median"] <= summary["ratio_max"]


def test_train_throughput_device_cache(tmp_path: Path) -> None:
    rec = run_benchmark("train_throughput.py", TINY + ["--modes", "pipeline", "--workers", "0", "--amp", "off",
                                                       "--device-cache", "--device-cache-size", "40",
                                                       "--index-cache-dir", str(tmp_path / "cache")],
                        tmp_path / "cache.json")
    assert rec["settings"]["device_cache"] is True and rec["settings"]["device_cache_size"] == 40
    (build,) = rec["device_cache_build"]
    assert build["images"] == 600 and build["seconds"] > 0
    (r,) = rec["training"]
    assert r["mode"] == "pipeline" and r["images_per_s"] > 0


def test_upscaled_imagenette(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "upscaled_imagenette.py"), str(tmp_path / "up"),
                           "--source", str(BUNDLED_SAMPLE_ROOT), "--side", "160", "--train-per-class", "3",
                           "--val-per-class", "1"], cwd="/", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = sorted((tmp_path / "up" / "train").rglob("*.JPEG"))
    assert len(train) == 30 and len(list((tmp_path / "up" / "val").rglob("*.JPEG"))) == 10
    from PIL import Image

    with Image.open(train[0]) as im:
        assert im.size == (160, 160) and im.format == "JPEG"


def test_label_ops(tmp_path: Path) -> None:
    rec = run_benchmark("label_ops.py", ["--num-samples", "20000", "--num-classes", "50", "--manifest-entries",
                                         "2000", "--repeats", "2"], tmp_path / "labels.json", fresh=True)
    check_machine(rec["machine"])
    assert rec["settings"]["num_samples"] == 20000
    ops = rec["operations"]
    assert "stratified_subset" in ops
    assert ops["stratified_subset"]["output_size"] == 4000  # 400 per class x 0.2 x 50 classes
    expected = {"symmetric_noise", "manifest_build", "manifest_apply", "manifest_read_files"}
    assert expected <= set(ops) or set(rec["skipped"]) == expected
    for op in ops.values():
        assert op["median_s"] > 0 and op["repeats"] == 2
    if "symmetric_noise" in ops:
        assert ops["symmetric_noise"]["num_flipped"] == 4000
        assert ops["manifest_apply"]["report"]["num_after"] == 19000
    assert rec["total"]["median_s_sum"] > 0


def test_train_throughput_rejects_bad_flags() -> None:
    # every problem is named in one error, with its flag
    proc = run_script_in_process(BENCHMARKS / "train_throughput.py", ["--models", "resnet51", "--steps", "0"])
    assert proc.returncode == 2
    assert "--models" in proc.stderr and "resnet51" in proc.stderr and "--steps must be >= 1" in proc.stderr
