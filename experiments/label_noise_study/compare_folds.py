"""Compare the fold models of several detections of the label-noise study on the samples they have all scored
(issue 13): which fold recipe, or how many folds, finds the injected flips best, before a whole K-fold detection is
paid for.

    python experiments/label_noise_study/compare_folds.py <the study's own flags> --noise_rate 0.2 \\
        --detection b15=runs/noise_study_b15/noise20_cleanlab/detection \\
                    f32=runs/noise_study_f32/noise20_cleanlab/detection --out runs/fold_probes

Each detection is the ``detection/`` folder of a cleanlab row (``--study.fold_config`` may differ between them, and
so may the training seed and ``--cl.folds``): its ``fold_k/pred_probs.npy`` are the out-of-sample probabilities of
fold model k on the fold it did not see. Each detection's K is read from the size of a finished fold (about 1/K of
the samples) and checked. A later round of a detection (``--cl.rounds``: ``detection/round_2``) compares as well;
its folds are checked against the samples the round before did not flag (that round must be finished; a round
built on an ``--cl.ensemble`` estimate, whose flags this script does not rebuild, is refused unless it is a soft
round, ``--cl.round_targets soft``, which trains on every sample and whose targets are checked by their digest
only when it trains), and its
rankings are also cut at the round before's estimate of the number of issues on the same samples (rows "lowest n:
round 1's count"). Rebuilds the study's noisy labels at ``--noise_rate`` and each detection's stratified folds
exactly as run_study.py does, and checks every fold against them: the ids it scored (``scored_ids.npy``) and the
digests of the ids and labels it trained on (``fold_settings.json``). Only the samples scored by a finished fold in
every detection count, so a detection interrupted after one fold already compares (with the same K, each fold holds
1/K of the samples and of the flips, the same ones for every detection; with another K, the samples its folds share:
a paired comparison either way). On those samples it scores each detection's probabilities, and with more than one
detection their mean (an ensemble: each sample scored by one fold model per detection, none of which saw it), with
every rule and ranking of :func:`services.detection_sweep.detection_sweep`, beside each fold model set's top-1 against
the true labels. cleanlab's rules estimate their thresholds from the samples given, so on a subset of the samples
they are close to, not equal to, what the whole detection gives. Writes ``compare_folds.csv`` and
``compare_folds.md`` to ``--out``; trains nothing (seconds of CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
from cleanlab.count import num_label_issues

from services.detection_sweep import detection_sweep, write_sweep_table
from services.label_issues import array_digest, find_label_issues, stratified_folds
from services.noise_study import study_setup

log = logging.getLogger(__name__)

COLUMNS = ("fold_models", "top1_true", "agreement_given", "rule", "num_flagged", "precision", "recall", "f1",
           "average_precision", "precision_at_recall")


def _check_folder(name: str, det_dir: Path) -> None:
    """Raises FileNotFoundError, naming the fix, when detection ``det_dir`` is not a folder."""
    if not det_dir.is_dir():
        raise FileNotFoundError(f"--detection {name}={det_dir}: no such folder; give a cleanlab row's detection/ "
                                f"folder (e.g. runs/noise_study_b15/noise20_cleanlab/detection)")


def finished_folds(name: str, det_dir: Path, ids: np.ndarray, labels: np.ndarray, fold_of: np.ndarray,
                   train_mask: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """The (M_k, C) probabilities of each finished fold k of detection ``det_dir``, checked against the study's
    samples ``ids`` (M,), noisy labels ``labels`` (M,) and fold assignment ``fold_of`` (M,); ``train_mask`` (M,)
    bool: the samples its fold models could train on (a later round's, :func:`round_train_mask`; default all; a
    soft round's folds, ``"soft_targets"`` in their settings, trained on every sample of their other folds).

    Raises:
        FileNotFoundError: ``det_dir`` is not a folder.
        ValueError: a fold scored other samples, or trained on other samples or labels (another noise rate, noise
            seed, fold seed or data flags than the ones given).
    """
    _check_folder(name, det_dir)
    out = {}
    for k in range(int(fold_of.max()) + 1):
        fold_dir = det_dir / f"fold_{k}"
        if not ((fold_dir / "pred_probs.npy").is_file() and (fold_dir / "scored_ids.npy").is_file()):
            continue
        held = fold_of == k
        settings = fold_dir / "fold_settings.json"
        saved = json.loads(settings.read_text()) if settings.is_file() else {}
        if not saved:  # made before fold_settings.json existed: only its scored ids can be checked
            log.warning("--detection %s: %s has no %s; its training samples and labels are unchecked", name,
                        fold_dir, settings.name)
        # a soft round (--cl.round_targets soft) trains on every sample of its other folds, the flagged on soft
        # targets (checked by their digest when it trained)
        train = ~held if train_mask is None or "soft_targets" in saved else ~held & train_mask
        trained_on = {"train_ids": array_digest(ids[train]), "train_labels": array_digest(labels[train])}
        if not np.array_equal(np.load(fold_dir / "scored_ids.npy"), ids[held]) or any(
                saved.get(key, digest) != digest for key, digest in trained_on.items()):
            raise ValueError(f"--detection {name}: {fold_dir} was made on other samples or labels than these flags "
                             f"give (scored ids or the digests in {settings.name} differ): pass the study's flags "
                             f"and --noise_rate of that detection, and the same --cl.folds / --cl.fold_seed (a "
                             f"later round that removed an --cl.ensemble estimate's flags cannot be checked here)")
        out[k] = np.load(fold_dir / "pred_probs.npy")
    return out


def previous_round(det_dir: Path) -> tuple[Path, int] | None:
    """The folder of the round before ``det_dir`` and that round's number, when ``det_dir`` is a later round of a
    detection (``<row>/detection/round_r``, r >= 2: round 1 is ``<row>/detection`` itself); None otherwise."""
    match = re.fullmatch(r"round_(\d+)", det_dir.name)
    if match is None or int(match.group(1)) < 2:
        return None
    r = int(match.group(1))
    return (det_dir.parent / f"round_{r - 1}" if r > 2 else det_dir.parent), r - 1


def detection_rounds(name: str, det_dir: Path, ids: np.ndarray, labels: np.ndarray, fold_of: np.ndarray,
                     filter_by: str) -> list[dict[int, np.ndarray]]:
    """:func:`finished_folds` of every round up to ``det_dir``'s, round 1 first: ``det_dir`` is a detection's folder
    (one round) or one of its later rounds (``.../round_r``: r rounds), each loaded once. A round r's fold models
    are checked against the samples round r-1 did not flag with ``filter_by``, which needs all of round r-1's folds
    (:func:`round_train_mask`).

    Raises:
        ValueError: as :func:`finished_folds`, or a round before ``det_dir``'s is not finished.
    """
    before = previous_round(det_dir)
    if before is None:
        return [finished_folds(name, det_dir, ids, labels, fold_of)]
    previous, r = before[0], before[1] + 1
    earlier = detection_rounds(name, previous, ids, labels, fold_of, filter_by)
    if len(earlier[-1]) <= int(fold_of.max()):
        raise ValueError(f"--detection {name}: {previous} has {len(earlier[-1])} of {int(fold_of.max()) + 1} folds "
                         f"finished; round {r} trains on what round {r - 1} did not flag, so that round must finish")
    return [*earlier, finished_folds(name, det_dir, ids, labels, fold_of,
                                     train_mask=round_train_mask(labels, fold_of, earlier[-1], filter_by))]


def detection_folds(name: str, det_dir: Path, ids: np.ndarray, labels: np.ndarray, fold_of: np.ndarray,
                    filter_by: str) -> dict[int, np.ndarray]:
    """The finished folds of ``det_dir``'s own round (the last of :func:`detection_rounds`).

    Raises:
        ValueError: as :func:`detection_rounds`.
    """
    return detection_rounds(name, det_dir, ids, labels, fold_of, filter_by)[-1]


def previous_round_count(rounds: list[dict[int, np.ndarray]], labels: np.ndarray, fold_of: np.ndarray,
                         sel: np.ndarray) -> dict[str, int]:
    """{"round r-1's count": n} when ``rounds`` (:func:`detection_rounds`) ends at a later round r, n being
    cleanlab's estimate of the number of issues (``cleanlab.count.num_label_issues``) from round r-1's
    probabilities on the samples ``sel`` ((S,) indices into ``labels``, in the order the rankings are cut in); {}
    for a first round. Round r's fold models train on what round r-1 kept, so their own estimate runs high (at 20 %
    noise on Imagenette, 2,382 for 1,894 flips, against round 1's 1,984): this count cut on round r's ranking is a
    rule to compare.
    """
    if len(rounds) < 2:
        return {}
    earlier = assembled_probs(fold_of, rounds[-2])[sel]
    return {f"round {len(rounds) - 1}'s count": int(num_label_issues(labels[sel], earlier))}


def scattered_probs(fold_of: np.ndarray, folds: dict[int, np.ndarray]) -> np.ndarray:
    """(M, C) float32 out-of-sample probabilities from the per-fold ``folds`` ({k: (M_k, C) probabilities of the
    samples with ``fold_of == k``, in sample order}), NaN in the rows of the folds not given."""
    probs = np.full((fold_of.size, next(iter(folds.values())).shape[1]), np.nan, dtype=np.float32)
    for k, p in folds.items():
        probs[fold_of == k] = p
    return probs


def assembled_probs(fold_of: np.ndarray, folds: dict[int, np.ndarray]) -> np.ndarray:
    """(M, C) float32 out-of-sample probabilities of every sample, from the complete per-fold ``folds`` ({k: (M_k,
    C) probabilities of the samples with ``fold_of == k``, in sample order}), as the detection's ``pred_probs.npy``.

    Raises:
        ValueError: a fold of ``fold_of`` is missing from ``folds``.
    """
    missing = sorted(set(np.unique(fold_of).tolist()) - set(folds))
    if missing:
        raise ValueError(f"folds {missing} are not finished; every fold is needed for the whole set's probabilities")
    return scattered_probs(fold_of, folds)


def kfold_probs(det_dir: Path, ids: np.ndarray, labels: np.ndarray, folds: int, fold_seed: int,
                filter_by: str) -> np.ndarray:
    """(M, C) out-of-sample probabilities of a finished K-fold detection (``det_dir``: a kept or live detection
    folder, or a later round's) of the samples ``ids`` with the noisy ``labels``, checked as :func:`finished_folds`.

    Raises:
        ValueError: a fold is not finished, or the folder holds other samples or labels.
    """
    fold_of = stratified_folds(labels, folds, fold_seed)
    done = detection_rounds("kfold", det_dir, ids, labels, fold_of, filter_by)[-1]
    if len(done) <= int(fold_of.max()):
        raise ValueError(f"{det_dir}: {len(done)} of {folds} folds finished; all are needed")
    return assembled_probs(fold_of, done)


def detection_fold_count(name: str, det_dir: Path, num_samples: int) -> int:
    """K of detection (or later round) ``det_dir`` of ``num_samples`` samples: a finished fold scores about 1/K of
    them (stratified folds differ in size by at most one sample a class), so K = round(M / its size). Checked
    afterwards by :func:`finished_folds`, which rebuilds the K folds and compares the scored ids.

    Raises:
        FileNotFoundError: ``det_dir`` is not a folder.
        ValueError: no fold of ``det_dir`` has finished.
    """
    _check_folder(name, det_dir)
    scored = sorted(det_dir.glob("fold_*/scored_ids.npy"))
    if not scored:
        raise ValueError(f"--detection {name}: {det_dir} has no finished fold (no fold_k/scored_ids.npy); let one "
                         f"fold finish first")
    return max(2, round(num_samples / np.load(scored[0]).size))


def shared_samples(dets: dict[str, Path], ids: np.ndarray, labels: np.ndarray, fold_seed: int,
                   filter_by: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, dict[str, int]], str]:
    """What :func:`run` compares: the samples scored by a finished fold of every detection in ``dets`` ({name:
    detection folder or later round}), each detection with its own K (:func:`detection_fold_count`) and the
    stratified folds of ``labels`` (M,) at ``fold_seed``, its folds checked as :func:`detection_rounds`.

    Returns:
        ``sel`` (S,) int64 sorted indices into ``ids``; {name: (S, C) float32 probabilities of those samples};
        {name: :func:`previous_round_count` on them}; a description ("s0 folds [1, 2] of 4, k8 folds [1] of 8").

    Raises:
        ValueError: as :func:`detection_rounds`, or no sample is scored in every detection.
    """
    rounds, fold_of, covered, described = {}, {}, np.ones(ids.size, dtype=bool), []
    for name, det_dir in dets.items():
        k = detection_fold_count(name, det_dir, ids.size)
        fold_of[name] = stratified_folds(labels, k, fold_seed)
        rounds[name] = detection_rounds(name, det_dir, ids, labels, fold_of[name], filter_by)
        done = sorted(rounds[name][-1])
        covered &= np.isin(fold_of[name], done)
        described.append(f"{name} folds {[f + 1 for f in done]} of {k}")
    sel = np.flatnonzero(covered)
    if not sel.size:
        raise ValueError(f"no sample is scored by a finished fold of every detection ({', '.join(described)}): let "
                         f"more folds finish first")
    counts = {name: previous_round_count(r, labels, fold_of[name], sel) for name, r in rounds.items()}
    probs = {name: scattered_probs(fold_of[name], r[-1])[sel] for name, r in rounds.items()}
    return sel, probs, counts, ", ".join(described)


def round_train_mask(labels: np.ndarray, fold_of: np.ndarray, folds: dict[int, np.ndarray],
                     filter_by: str) -> np.ndarray:
    """(M,) bool: the samples a round's fold models trained on, those the previous round (its complete per-fold
    probabilities ``folds``) did not flag with ``filter_by`` (as ``services.label_issues.detect_label_issues``)."""
    return ~find_label_issues(labels, assembled_probs(fold_of, folds), filter_by)


def run(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--noise_rate", type=float, default=0.2, help="the detections' symmetric noise rate")
    extra.add_argument("--detection", nargs="+", required=True, metavar="NAME=DIR",
                       help="detections to compare: a name and a cleanlab row's detection/ folder, or one of "
                            "its later rounds (detection/round_2)")
    extra.add_argument("--out", type=Path, required=True, help="folder for compare_folds.csv and .md")
    args, rest = extra.parse_known_args(argv)
    pairs = [d.partition("=") for d in args.detection]
    if any(not name or not sep or not path for name, sep, path in pairs) or len({n for n, _, _ in pairs}) < len(pairs):
        raise ValueError(f"--detection takes distinct NAME=DIR pairs, got {args.detection}")
    setup = study_setup(Path(__file__).parent, rest, __doc__, args.noise_rate)
    cl, base, noisy = setup.cl, setup.data, setup.noisy
    ids, given, true, mask = base.train_ids, noisy.labels, base.train_labels, noisy.noise_mask
    sel, probs, counts, described = shared_samples({name: Path(path) for name, _, path in pairs}, ids, given,
                                                   cl.fold_seed, cl.filter_by)
    if len(probs) > 1:
        probs[f"mean of {' + '.join(counts)}"] = np.mean(list(probs.values()), axis=0)
    rows = [{"fold_models": name, "top1_true": float((p.argmax(1) == true[sel]).mean()),
             "agreement_given": float((p.argmax(1) == given[sel]).mean()), **r}
            for name, p in probs.items() for r in detection_sweep(given[sel], p, mask[sel], counts=counts.get(name))]

    args.out.mkdir(parents=True, exist_ok=True)
    print(write_sweep_table(args.out, "compare_folds", rows, COLUMNS,
                            f"Fold models compared at {args.noise_rate:g} noise on the {sel.size} samples every "
                            f"detection scored ({int(mask[sel].sum())} of them flipped): {described}",
                            ["top1_true: the fold models' top-1 against the true labels on the samples they did not "
                             "see."]), end="")
    return 0


if __name__ == "__main__":
    from core.cli import run_entry

    sys.exit(run_entry(lambda: run(sys.argv[1:])))
