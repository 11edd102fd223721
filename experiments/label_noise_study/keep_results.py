"""Keep a study's small result files in git, and put them back on a fresh machine so that finished rows are skipped.

    python experiments/label_noise_study/keep_results.py RUNS_DIR KEPT_DIR            # copy, as rows land
    python experiments/label_noise_study/keep_results.py RUNS_DIR KEPT_DIR --restore  # before rerunning the study

A study's run folder (``--logging.output_dir``) holds checkpoints and fold models of about 100 MB per run; what a
table, a later session or a reader needs is a few kB per row: ``result.json`` (the row and the settings fingerprint
that lets run_study.py skip it), ``labels.json`` (label counts and digest), the training curve and summary (once the
row has finished), and for cleanlab rows the detection metrics, the ablation, the manifest and the record of
``--cl.ensemble`` members. For each finished fold of a detection it also keeps the out-of-sample probabilities with
their ids and settings record (``fold_k/pred_probs.npy``, ``scored_ids.npy``, ``fold_settings.json``: about 95 kB a
fold on Imagenette; a later round's in ``detection/round_r/fold_k/``), unless one is larger than ``--max_fold_mb`` (an
ILSVRC fold's (320k, 1000) float32 probabilities are 1.3 GB: those stay out of git, and the list of what was left out
is printed); so is a row's file of :data:`LARGE_ROW_FILES` over that size (a soft-label row's ``soft_targets.npz``,
the flagged samples' (S, C) probabilities; an ILSVRC ``label_issues.csv``). ``--restore`` copies the ``result.json``
files and the kept fold files back: run_study.py with the same flags then skips the finished rows, and a cleanlab row
rerun with another rule (``--cl.filter_by``, ``--cl.relabel_threshold``; delete its ``result.json`` first) reuses the
fold probabilities instead of training the fold models again.
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
             "detection/label_issues.csv", "detection/ensemble.json", "soft_targets.npz")
LARGE_ROW_FILES = ("detection/label_issues.csv", "soft_targets.npz")
"""The row files that grow with the number of flagged samples (and classes), kept only under ``--max_fold_mb``."""
FOLD_FILES = ("fold_settings.json", "scored_ids.npy", "pred_probs.npy", "pred_probs_hflip.npy", "aum.npy",
              "logs/dynamics.npz")
"""What :func:`services.label_issues.out_of_sample_pred_probs` needs to reuse a finished fold without its model, and
:func:`services.label_issues.aum_pred_probs` a finished AUM run (``aum.npy``; its margins per epoch,
``logs/dynamics.npz``, 8 bytes per sample and epoch, are kept for analysis)."""
DETECTION_RUNS = ("*/detection/fold_*", "*/detection/round_*/fold_*", "*/detection/aum_run")
"""The folders of a detection's training runs (K-fold models, later rounds, the ``--cl.scores aum`` run)."""
MAX_FOLD_MB = 10.0


def fold_files(runs: Path, max_mb: float) -> tuple[list[Path], list[Path]]:
    """The files to keep of every finished detection fold in ``runs`` (:data:`FOLD_FILES`), and the fold folders
    left out whole because one of their files is larger than ``max_mb`` MB. A fold folder that is a link (a
    remove-only row sharing its twin's folds) is skipped: its target is kept."""
    wanted, too_big = [], []
    for fold in sorted(p for pattern in DETECTION_RUNS for p in runs.glob(pattern)):
        files = [fold / f for f in FOLD_FILES if (fold / f).is_file()]
        if fold.is_symlink() or fold.parent.is_symlink() or not any(f.name.startswith("pred_probs") for f in files):
            continue  # a link (or in a linked round folder), or unfinished
        if any(f.stat().st_size > max_mb * 2**20 for f in files):
            too_big.append(fold)
        else:
            wanted += files
    return wanted, too_big


def keep(runs: Path, kept: Path, max_fold_mb: float = MAX_FOLD_MB) -> list[Path]:
    """Copy the study's and each row's small files, and the fold files of :func:`fold_files`, from ``runs`` to
    ``kept`` (same layout); return the copies. A row's ``logs/`` files are kept only once it has its ``result.json``
    (a row writes ``labels.json`` and its detection files before it trains, so an unfinished row keeps those and
    its finished folds, not a partial curve). A fold with a file over ``max_fold_mb``, or a row file over it, is
    named on stdout and left out.

    Raises:
        FileNotFoundError: ``runs`` is not a study folder (no study.json).
    """
    if not (runs / "study.json").is_file():
        raise FileNotFoundError(f"{runs} has no study.json: pass the study's --logging.output_dir")
    wanted = [runs / f for f in STUDY_FILES]
    rows = sorted(p for p in runs.iterdir() if (p / "labels.json").is_file())
    for row in rows:
        # a row still training (or stopped) has a partial curve and summary until its result.json
        names = ROW_FILES if (row / "result.json").is_file() else [f for f in ROW_FILES if not f.startswith("logs/")]
        for name in names:
            src = row / name
            if name in LARGE_ROW_FILES and src.is_file() and src.stat().st_size > max_fold_mb * 2**20:
                print(f"left out {src} (a {src.stat().st_size / 2**20:.1f} MB file > --max_fold_mb {max_fold_mb:g})")
            else:
                wanted.append(src)
    folds, too_big = fold_files(runs, max_fold_mb)
    for fold in too_big:
        size = max(f.stat().st_size for f in fold.rglob("*.np[yz]")) / 2**20
        print(f"left out {fold} (a {size:.1f} MB file > --max_fold_mb {max_fold_mb:g}): that fold trains again on a "
              f"fresh machine")
    wanted += folds
    copied = []
    for src in wanted:
        if src.is_file():
            dst = kept / src.relative_to(runs)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def restore(kept: Path, runs: Path) -> list[Path]:
    """Copy every kept ``<row>/result.json`` and fold file (:data:`FOLD_FILES`) into ``runs`` (existing ones are left
    alone); return the new files. run_study.py with the same flags then skips those rows, and reuses those folds."""
    restored = []
    folds = (p for f in FOLD_FILES for pattern in DETECTION_RUNS for p in kept.glob(f"{pattern}/{f}"))
    for src in sorted([*kept.glob("*/result.json"), *folds]):
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
    parser.add_argument("--restore", action="store_true", help="copy the kept result.json and fold files back")
    parser.add_argument("--max_fold_mb", type=float, default=MAX_FOLD_MB,
                        help="leave out a fold or row file larger than this many MB (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        files = restore(args.kept, args.runs) if args.restore else keep(args.runs, args.kept, args.max_fold_mb)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'restored' if args.restore else 'kept'} {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
