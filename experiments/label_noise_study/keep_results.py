"""Keep a study's small result files in git, and put them back on a fresh machine so that finished rows are skipped.

    python experiments/label_noise_study/keep_results.py RUNS_DIR KEPT_DIR            # copy, as rows land
    python experiments/label_noise_study/keep_results.py RUNS_DIR KEPT_DIR --restore  # before rerunning the study

A study's run folder (``--logging.output_dir``) holds checkpoints and fold models of about 100 MB per run; what a
table, a later session or a reader needs is a few kB per row: ``result.json`` (the row and the settings
fingerprint that lets run_study.py skip it), ``labels.json`` (label counts and digest), the training curve and
summary, and for cleanlab rows the detection metrics, the ablation and the manifest. ``--restore`` copies the
``result.json`` files back: run_study.py with the same flags then skips those rows and runs the rest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

STUDY_FILES = ("results.csv", "runs.csv", "results.md", "results.png", "config.yaml", "study.json")
ROW_FILES = ("result.json", "labels.json", "logs/metrics.jsonl", "logs/summary.json", "logs/run_info.json",
             "logs/config.yaml", "logs/curves.png", "detection/detection_metrics.json", "detection/ablation.csv",
             "detection/ablation.md", "detection/removal_list.txt", "detection/relabel_map.json",
             "detection/label_issues.csv")


def keep(runs: Path, kept: Path) -> list[Path]:
    """Copy the study's and each row's small files from ``runs`` to ``kept`` (same layout); return the copies.

    Raises:
        FileNotFoundError: ``runs`` is not a study folder (no study.json).
    """
    if not (runs / "study.json").is_file():
        raise FileNotFoundError(f"{runs} has no study.json: pass the study's --logging.output_dir")
    wanted = [runs / f for f in STUDY_FILES]
    wanted += [row / f for row in sorted(p for p in runs.iterdir() if (p / "labels.json").is_file()) for f in ROW_FILES]
    copied = []
    for src in wanted:
        if src.is_file():
            dst = kept / src.relative_to(runs)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def restore(kept: Path, runs: Path) -> list[Path]:
    """Copy every kept ``<row>/result.json`` into ``runs/<row>/`` (existing ones are left alone); return the new
    files. run_study.py with the same flags then skips those rows."""
    restored = []
    for src in sorted(kept.glob("*/result.json")):
        dst = runs / src.relative_to(kept)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            restored.append(dst)
    return restored


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="the study's --logging.output_dir")
    parser.add_argument("kept", type=Path, help="the folder kept in git")
    parser.add_argument("--restore", action="store_true", help="copy kept result.json files back into runs")
    args = parser.parse_args(argv)
    try:
        files = restore(args.kept, args.runs) if args.restore else keep(args.runs, args.kept)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'restored' if args.restore else 'kept'} {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
