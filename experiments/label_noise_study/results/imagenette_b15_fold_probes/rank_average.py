"""The 8-fold probe's self-confidence rank-averaged with the noisy row's Area Under the Margin (issue 13, 2026-12-07),
beside the 4-fold detection (seed 0), its second round (``imagenette_b15_rounds``) and the 8-fold detection at
training seed 1 (``k8_seed1``), on the samples every one of them scored: average precision and the best precision at
recall >= 0.8 (a bound set with the truth) of each ranking and of the mean rank of some combinations
(:func:`services.aum_sweep.rank_fraction`, as ``compare_aum.py`` averages them; ranks taken over these samples). Last,
what bounds the 8-fold rankings: how many clean images the fold models (of seed 0, and the two seeds' probabilities
averaged) predict another class for than their given one (each a likely false positive), against the flips to find.
Reads the kept files only (seconds). Run from the repository root with run.sh's flags:

    python experiments/label_noise_study/results/imagenette_b15_fold_probes/rank_average.py \\
        --data.root ../shared/data/imagenette2-224 --config experiments/label_noise_study/imagenette_cpu.yaml \\
        --config experiments/label_noise_study/imagenette_b15.yaml --logging.progress_bar false
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
from cleanlab.rank import get_label_quality_scores

from core.label_noise import ranking_metrics
from experiments.label_noise_study.compare_folds import shared_samples
from services.aum_sweep import rank_fraction
from services.noise_study import study_setup

KEPT = Path("experiments/label_noise_study/results")


def second_round(tmp: Path) -> Path:
    """The kept second round as ``compare_folds`` reads a later round (``<detection>/round_2`` beside its first
    round's folds, which were kept apart in ``imagenette_b15/``), laid out with links under ``tmp``."""
    det = tmp / "detection"
    det.mkdir()
    for fold in (KEPT / "imagenette_b15/noise20_cleanlab/detection").glob("fold_*"):
        (det / fold.name).symlink_to(fold.resolve())
    (det / "round_2").symlink_to((KEPT / "imagenette_b15_rounds/noise20_cleanlab/detection/round_2").resolve())
    return det / "round_2"


def main() -> None:
    """Print the figures (see the module docstring)."""
    s = study_setup(KEPT.parent, sys.argv[1:], __doc__, 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        dets = {"b15_s0": KEPT / "imagenette_b15/noise20_cleanlab/detection",
                "k8": KEPT / "imagenette_b15_fold_probes/k8/detection", "r2": second_round(Path(tmp)),
                "k8_s1": KEPT / "imagenette_b15_fold_probes/k8_seed1/detection"}
        sel, probs, _, described = shared_samples(dets, s.data.train_ids, s.noisy.labels, s.cl.fold_seed,
                                                 s.cl.filter_by)
    given, mask = s.noisy.labels[sel], s.noisy.noise_mask[sel]
    run = KEPT / "imagenette_b15_aum/noise20_cleanlab/detection/aum_run"
    row = {int(i): j for j, i in enumerate(np.load(run / "scored_ids.npy"))}
    wrong = {n: -get_label_quality_scores(given, p, method="self_confidence") for n, p in probs.items()}
    wrong["aum"] = -np.load(run / "aum.npy")[[row[int(i)] for i in s.data.train_ids[sel]]]
    ranks = {n: rank_fraction(w) for n, w in wrong.items()}
    for combo in (("b15_s0",), ("k8",), ("r2",), ("aum",), ("b15_s0", "aum"), ("k8", "aum"), ("r2", "aum"),
                  ("b15_s0", "k8"), ("k8", "r2"), ("b15_s0", "k8", "aum"), ("k8", "r2", "aum"),
                  ("k8_s1",), ("k8", "k8_s1"), ("k8", "k8_s1", "r2"), ("k8", "k8_s1", "aum"),
                  ("k8", "k8_s1", "r2", "aum")):
        r = ranking_metrics(sum(ranks[c] for c in combo), mask)
        print(f"{' + '.join(combo):26s} AP {r['average_precision']:.3f}  bound {r['precision_at_recall']:.3f}")
    print(f"{described}; {sel.size} samples, {int(mask.sum())} flipped")
    true, need = s.data.train_labels[sel], int(np.ceil(0.8 * mask.sum()))
    for name, p in (("k8", probs["k8"]), ("k8 + k8_s1 probabilities averaged", (probs["k8"] + probs["k8_s1"]) / 2)):
        pred = p.argmax(1)
        print(f"{name}: {int(((pred != given) & ~mask).sum())} of {int((~mask).sum())} clean images predicted as "
              f"another class than given, {int(((pred == true) & mask).sum())} of {int(mask.sum())} flips predicted as "
              f"their true class, held-out top-1 vs the true labels {(pred == true).mean():.3f}")
    print(f"P 0.9 at R 0.8 allows {need // 9} clean images among the first {need} flips flagged")


if __name__ == "__main__":
    main()
