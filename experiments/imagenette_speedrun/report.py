"""Time-to-accuracy table and plot of speedrun runs and reference runs.

    python experiments/imagenette_speedrun/report.py --runs RUN_DIR [RUN_DIR ...] --ref REF.json [REF.json ...] \
        --out experiments/imagenette_speedrun/results

RUN_DIR: a run's output folder (logs/metrics.jsonl, logs/summary.json, logs/config.yaml, logs/run_info.json).
REF.json: what ``ref_baseline.py`` printed, plus ``wall_time_s`` (the process's wall time) and ``seed``.
Writes ``<out>.csv`` (one row per run) and ``<out>.png`` (val top-1 against wall-clock time).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

from utils.visualization import load_metrics, plot_time_to_accuracy

FIELDS = ["run", "kind", "seed", "epochs", "resolutions", "val_resolution", "wall_min", "images_per_s", "top1",
          "top1_ema", "commit"]


def run_row(run_dir: Path) -> tuple[dict, list[float], list[float]]:
    """One run's table row and its (wall seconds, top-1) curve (the EMA weights' top-1 when EMA is on)."""
    logs = run_dir / "logs"
    records = load_metrics(logs / "metrics.jsonl")
    summary = json.loads((logs / "summary.json").read_text())
    cfg = yaml.safe_load((logs / "config.yaml").read_text())
    info = json.loads((logs / "run_info.json").read_text())
    d, t = cfg["data"], cfg["training"]
    key = "val_top1_ema" if t.get("ema_decay", 0) > 0 else "val_top1"
    evaluated = [r for r in records if r.get(key) is not None]
    sizes = (f"{d['start_image_size']}-{d['image_size']}" if d.get("progressive_resizing") else str(d["image_size"]))
    seen = sum(r["images_per_sec"] * r["epoch_time_s"] for r in records)
    row = {"run": run_dir.name, "kind": "recipe", "seed": t["seed"], "epochs": len(records),
           "resolutions": sizes, "val_resolution": d["val_image_size"],
           "wall_min": round(summary["wall_time_s"] / 60, 2),
           "images_per_s": round(seen / sum(r["epoch_time_s"] for r in records), 1),
           "top1": round(records[-1]["val_top1"], 2),
           "top1_ema": round(records[-1]["val_top1_ema"], 2) if "val_top1_ema" in records[-1] else "",
           "commit": (info.get("git_commit") or "")[:12]}
    return row, [r["wall_time_s"] for r in evaluated], [r[key] for r in evaluated]


def ref_row(path: Path) -> dict:
    """A reference run's row from the JSON line ``ref_baseline.py`` printed (plus wall_time_s and seed)."""
    ref = json.loads(path.read_text())
    return {"run": path.stem, "kind": "reference", "seed": ref.get("seed", 0), "epochs": ref["epochs"],
            "resolutions": str(ref["size"]), "val_resolution": ref["size"],
            "wall_min": round(ref["wall_time_s"] / 60, 2), "images_per_s": ref["images_per_s"],
            "top1": ref["val_top1"], "top1_ema": "", "commit": "ref_baseline.py"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    ap.add_argument("--ref", type=Path, nargs="*", default=[])
    ap.add_argument("--out", type=Path, required=True, help="output stem: <out>.csv and <out>.png")
    ap.add_argument("--targets", type=float, nargs="*", default=[59.0, 85.0, 90.0])
    a = ap.parse_args(argv)
    rows, series = [], {}
    for run in a.runs:
        row, times, top1 = run_row(run)
        rows.append(row)
        series[f"{run.name} (seed {row['seed']})"] = (times, top1)
    for ref in a.ref:
        row = ref_row(ref)
        rows.append(row)
        series[f"reference, {row['epochs']} epochs (seed {row['seed']})"] = ([row["wall_min"] * 60], [row["top1"]])
    if not rows:
        print("error: give --runs and/or --ref", file=sys.stderr)
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    plot_time_to_accuracy(series, a.out.with_suffix(".png"), a.targets,
                          title="ResNet-18 from scratch on Imagenette (full val), 2-core CPU")
    print(f"wrote {a.out.with_suffix('.csv')} and {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
