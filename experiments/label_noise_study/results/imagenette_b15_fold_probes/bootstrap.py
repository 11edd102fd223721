"""Paired bootstrap of a fold probe against the b15 detections (issue 13, 2026-12-06; first written for the k8
probe) on the samples compare_folds.py compares (those a finished fold of every detection scored). Resamples those
samples with replacement and recomputes, for each detection's self-confidence ranking, the best precision at
recall >= 0.8 (the bound), average precision and top-1 against the true labels; prints each figure (the bound with
its 95 % interval) and the 95 % interval of the last detection named (the probe) minus each other one; with
``--mean``, of the mean of all the detections' probabilities (an ensemble, each sample scored by one fold model of
each) minus each of them. ``--subsets`` prints instead the figures of the mean of every non-empty subset of the
detections, best bound first (chosen with the truth: the best of many subsets is an optimistic figure). Run from the
repository root with run.sh's flags:

    python experiments/label_noise_study/results/imagenette_b15_fold_probes/bootstrap.py \
        --data.root ../shared/data/imagenette2-224 --config experiments/label_noise_study/imagenette_cpu.yaml \
        --config experiments/label_noise_study/imagenette_b15.yaml --logging.progress_bar false \
        --detection b15_s0=runs/noise_study_b15/noise20_cleanlab/detection \
                    b15_s1=runs/noise_study_b15/noise20_cleanlab_seed1/detection \
                    k8=runs/noise_study_fold_k8/noise20_cleanlab/detection
"""
import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from cleanlab.rank import get_label_quality_scores

from core.label_noise import ranking_metrics
from experiments.label_noise_study.compare_folds import shared_samples
from services.noise_study import study_setup

def main() -> None:
    """Print the figures and the intervals (see the module docstring)."""
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--detection", nargs="+", required=True)
    extra.add_argument("--resamples", type=int, default=2000)
    extra.add_argument("--mean", action="store_true", help="the probe is the mean of all the detections")
    extra.add_argument("--subsets", action="store_true", help="the mean of every subset of the detections")
    args, rest = extra.parse_known_args(sys.argv[1:])
    setup = study_setup(Path("experiments/label_noise_study"), rest, __doc__, 0.2)
    cl, base, noisy = setup.cl, setup.data, setup.noisy
    dets = {n: Path(p) for n, _, p in (d.partition("=") for d in args.detection)}
    sel, probs, _, described = shared_samples(dets, base.train_ids, noisy.labels, cl.fold_seed, cl.filter_by)
    given, true, mask = noisy.labels[sel], base.train_labels[sel], noisy.noise_mask[sel]
    if args.subsets:
        subset_figures(probs, given, true, mask)
        return
    if args.mean:
        probs["mean"] = np.mean(list(probs.values()), axis=0)
        dets["mean"] = Path("")
    wrong = {n: -get_label_quality_scores(given, p, method="self_confidence") for n, p in probs.items()}

    def figures(idx: np.ndarray) -> dict[str, tuple[float, float, float]]:
        """{name: (bound, AP, top-1)} on the resampled positions idx (S,) of the compared samples."""
        out = {}
        for n, w in wrong.items():
            r = ranking_metrics(w[idx], mask[idx])
            top1 = float((probs[n][idx].argmax(1) == true[idx]).mean())
            out[n] = (r["precision_at_recall"], r["average_precision"], top1)
        return out

    rng = np.random.default_rng(0)
    point = figures(np.arange(sel.size))
    boots = [figures(rng.integers(0, sel.size, sel.size)) for _ in range(args.resamples)]
    print(f"{described}; {sel.size} samples, {int(mask.sum())} flipped; {args.resamples} paired resamples")
    for n, (b, ap, top1) in point.items():
        lo, hi = np.percentile([x[n][0] for x in boots], [2.5, 97.5])
        print(f"{n}: bound {b:.3f} (95 % interval {lo:.3f} .. {hi:.3f})  AP {ap:.3f}  top-1 {top1:.3f}")
    probe = list(dets)[-1]
    for other in list(dets)[:-1]:
        for i, name in enumerate(("bound", "AP", "top-1")):
            d = np.array([x[probe][i] - x[other][i] for x in boots])
            lo, hi = np.percentile(d, [2.5, 97.5])
            diff = point[probe][i] - point[other][i]
            print(f"{probe} - {other} {name}: {diff:+.3f} (95 % interval {lo:+.3f} .. {hi:+.3f}, "
                  f"{probe} ahead in {100 * (d > 0).mean():.0f} % of resamples)")


def subset_figures(probs: dict[str, np.ndarray], given: np.ndarray, true: np.ndarray, mask: np.ndarray) -> None:
    """Print bound, AP and top-1 of the mean of every non-empty subset of ``probs`` ({name: (S, C)}), best bound
    first; given, true (S,) labels and mask (S,) the flips."""
    rows = []
    for k in range(1, len(probs) + 1):
        for combo in itertools.combinations(probs, k):
            p = np.mean([probs[n] for n in combo], axis=0)
            r = ranking_metrics(-get_label_quality_scores(given, p, method="self_confidence"), mask)
            rows.append((r["precision_at_recall"], r["average_precision"], float((p.argmax(1) == true).mean()),
                         " + ".join(combo)))
    for bound, ap, top1, combo in sorted(rows, reverse=True):
        print(f"bound {bound:.3f}  AP {ap:.3f}  top-1 {top1:.3f}  {combo}")


if __name__ == "__main__":
    main()
