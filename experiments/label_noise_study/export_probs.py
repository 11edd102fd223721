"""Write a kept K-fold detection's whole-set files, so that ``--cl.ensemble`` can average it in (issue 13).

    python experiments/label_noise_study/export_probs.py <the study's own flags> --noise_rate 0.2 \\
        --detection runs/noise_study_b15/noise20_cleanlab_seed1/detection --out runs/ensemble/s1

A detection kept by keep_results.py holds only its ``fold_k/`` files (each fold's out-of-sample probabilities and
the ids it scored); a later round is its ``round_r/`` folder, beside round 1's folds. This rebuilds the study's
noisy labels at ``--noise_rate`` and the stratified folds as run_study.py does, checks every fold against them as
compare_folds.py does (the ids it scored, the digests of the ids and labels it trained on), and writes what a
finished detection writes and :mod:`services.detection_ensemble` reads: ``pred_probs.npy`` (M, C),
``train_ids.npy`` (M,) and ``given_labels.npy`` (M,) to ``--out``. Trains nothing (seconds of CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from experiments.label_noise_study.compare_folds import detection_fold_count, kfold_probs
from services.detection_ensemble import MEMBER_FILES
from services.noise_study import study_setup


def run(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--noise_rate", type=float, default=0.2, help="the detection's symmetric noise rate")
    extra.add_argument("--detection", type=Path, required=True,
                       help="a cleanlab row's detection/ folder (every fold finished), or one of its later rounds")
    extra.add_argument("--out", type=Path, required=True, help="folder for the three files")
    args, rest = extra.parse_known_args(argv)
    setup = study_setup(Path(__file__).parent, rest, __doc__, args.noise_rate)
    cl, ids, given = setup.cl, setup.data.train_ids, setup.noisy.labels
    folds = detection_fold_count("export", args.detection, ids.size)
    probs = kfold_probs(args.detection, ids, given, folds, cl.fold_seed, cl.filter_by)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, arr in zip(MEMBER_FILES, (probs, ids, given)):
        np.save(args.out / name, arr)
    print(f"{args.out}: {folds}-fold probabilities of {ids.size} samples, top-1 against the given labels "
          f"{(probs.argmax(1) == given).mean():.3f}")
    return 0


if __name__ == "__main__":
    from core.cli import run_entry

    sys.exit(run_entry(lambda: run(sys.argv[1:])))
