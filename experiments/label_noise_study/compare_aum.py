"""Score the Area Under the Margin of a label-noise study's AUM run against the injected flips (issue 13): per window
of epochs, at a threshold, at cleanlab's count of a K-fold detection, and rank-averaged with that detection.

    python experiments/label_noise_study/compare_aum.py <the study's own flags> --noise_rate 0.2 \\
        --aum_run runs/noise_study_aum/noise20_cleanlab/detection/aum_run --windows 1-15 1-8 9-15 \\
        --kfold runs/noise_study_b15/noise20_cleanlab/detection --out runs/aum_compare

``--aum_run`` is the folder of a ``--cl.scores aum`` detection's training run; its ``logs/dynamics.npz`` holds each
sample's margin in every epoch. The study's noisy labels at ``--noise_rate`` are rebuilt as run_study.py does and
checked against the ids and labels the run trained on. ``--kfold`` (optional) is a K-fold detection of the same
noisy labels (all folds finished; checked as compare_folds.py does): its out-of-sample self-confidence is scored
beside AUM and rank-averaged with it, and cleanlab's estimate of the number of issues from it is the count every
ranking is also cut at. Windows are 1-based epoch ranges, inclusive. Writes ``compare_aum.csv`` and
``compare_aum.md`` to ``--out``; trains nothing (seconds of CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from cleanlab.count import num_label_issues

from core.dynamics import DYNAMICS_FILE, load_dynamics
from experiments.label_noise_study.compare_folds import kfold_probs
from services.aum_sweep import SWEEP_COLUMNS, aum_sweep
from services.detection_sweep import write_sweep_table
from services.noise_study import study_setup


def parse_window(text: str) -> tuple[int, int]:
    """'1-8' -> (0, 7): a 1-based inclusive epoch range as 0-based (first, last).

    Raises:
        argparse.ArgumentTypeError: not 'A-B' with 1 <= A <= B.
    """
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit() and 1 <= int(first) <= int(last)):
        raise argparse.ArgumentTypeError(f"a window is FIRST-LAST epochs, 1-based (e.g. 1-15), got {text!r}")
    return int(first) - 1, int(last) - 1


def run(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--noise_rate", type=float, default=0.2, help="the study's symmetric noise rate")
    extra.add_argument("--aum_run", type=Path, required=True, help="an AUM detection's aum_run/ folder")
    extra.add_argument("--windows", nargs="+", type=parse_window, default=None,
                       help="epoch ranges FIRST-LAST (1-based, inclusive); default all epochs")
    extra.add_argument("--threshold", type=float, default=0.0, help="the AUM rule's threshold, in logits")
    extra.add_argument("--kfold", type=Path, default=None, help="a K-fold detection/ folder of the same labels")
    extra.add_argument("--out", type=Path, required=True, help="folder for compare_aum.csv and .md")
    args, rest = extra.parse_known_args(argv)
    setup = study_setup(Path(__file__).parent, rest, __doc__, args.noise_rate)
    cl, base, noisy = setup.cl, setup.data, setup.noisy
    rec = load_dynamics(args.aum_run / "logs" / DYNAMICS_FILE)
    ids, given, mask = base.train_ids, noisy.labels, noisy.noise_mask
    if not (np.array_equal(rec["sample_ids"], ids) and np.array_equal(rec["labels"], given)):
        raise ValueError(f"{args.aum_run} trained on other samples or labels than these flags give: pass the study's "
                         f"flags and the --noise_rate of that run")
    epochs = int(rec["epochs_done"])
    windows = args.windows or [(0, epochs - 1)]
    others, count, notes = {}, None, []
    if args.kfold is not None:
        probs = kfold_probs(args.kfold, ids, given, cl.folds, cl.fold_seed, cl.filter_by)
        others[f"{cl.folds}-fold self-confidence"] = -probs[np.arange(ids.size), given]
        count = int(num_label_issues(given, probs))
        notes.append(f"Counts: cleanlab's estimate of the number of issues from the {cl.folds}-fold probabilities.")
    rows = aum_sweep(rec["margin"][:epochs], mask, windows, args.threshold, count, others)
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_sweep_table(args.out, "compare_aum", rows, SWEEP_COLUMNS,
                            f"AUM of {args.aum_run} at {args.noise_rate:g} noise: {ids.size} samples, "
                            f"{int(mask.sum())} flipped, {epochs} epochs recorded", notes), end="")
    return 0


if __name__ == "__main__":
    from core.cli import run_entry

    sys.exit(run_entry(lambda: run(sys.argv[1:])))
