"""Detection ablation (issue 13): how well each cleanlab rule, label-quality ranking and scoring finds the injected
flips of a finished cleanlab row of the label-noise study, on the fold models that row already trained.

    python experiments/label_noise_study/detection_ablation.py <the study's own flags> \\
        --experiment noise20_cleanlab [--hflip] [--in_sample] [--ensemble noise20_cleanlab_seed1 ...]

Rebuilds the row's noisy labels exactly as run_study.py does and checks them against the detection folder's
``train_ids.npy`` and ``noise_mask.npy``. Scores the plain out-of-sample probabilities and, with ``--hflip``, the
same fold models with flip TTA (scoring only: the fold models are finished, nothing trains; about 3 min for
Imagenette on the 2-core CPU). ``--in_sample`` also scores the training set with the study's own noisy row at the
same rate (``noise20`` for ``noise20_cleanlab``): one model trained on all the noisy labels, so in-sample, which
cleanlab warns against because a model that memorised the noise trusts it; a short schedule may not have.
``--ensemble`` averages the row's out-of-sample probabilities with those of other finished cleanlab rows on the same
flips (the further seeds' detections, e.g. ``noise20_cleanlab_seed1``): each sample is then scored by one fold
model per seed, none of which saw it, at no training cost. With more than one probability set, their mean (each set
once) is swept too. Writes ``<row>/detection/ablation.csv`` and ``ablation.md``: one line per (scoring, rule) from
:func:`services.detection_sweep.detection_sweep`. The truth is used only to score.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from core.config import ExperimentConfig
from core.data.manager import ImageNetDataManager
from services.detection_sweep import detection_sweep, write_sweep_table
from services.label_issues import ConfidentLearningConfig, eval_loader, out_of_sample_pred_probs, predict_proba
from services.noise_study import (StudyConfig, detection_config, detection_folds_dir, parse_study_config, run_config,
                                  study_noise, study_runs, with_seed)

log = logging.getLogger(__name__)
COLUMNS = ("scoring", "rule", "num_flagged", "precision", "recall", "f1", "meets_targets", "average_precision",
           "precision_at_recall", "recall_at_precision", "curve_meets_targets")


def in_sample_probs(run_cfg: ExperimentConfig, study: StudyConfig, data: ImageNetDataManager, name: str,
                    hflip: bool) -> dict[str, np.ndarray]:
    """The (M, C) probabilities that the study's finished noisy row ``name`` (trained on all of ``data``'s labels)
    gives its own training set, centre crop and, with ``hflip``, flip TTA, keyed by scoring name.

    Raises:
        FileNotFoundError: that row has not finished (no result.json).
    """
    from core.cli import build_trainer

    row_dir = Path(run_cfg.logging.output_dir) / name
    if not (row_dir / "result.json").is_file():
        raise FileNotFoundError(f"--in_sample needs the finished {name} row ({row_dir / 'result.json'}); run the "
                                f"study first")
    trainer = build_trainer(run_config(run_cfg, row_dir, name, study.group), data=data)
    trainer.fit()  # complete already: trains nothing, loads the final weights
    loader = eval_loader(data, data.train_ids, data.train_labels, max(1, 2 * run_cfg.training.batch_size))
    probs = {f"in-sample ({name}), {'flip TTA' if flip else 'centre crop'}": predict_proba(
        trainer.unwrapped_model(), loader, trainer.device, trainer.amp_dtype, progress=run_cfg.logging.progress_bar,
        desc=f"scoring with {name}", hflip=flip) for flip in ((False, True) if hflip else (False,))}
    trainer.close()
    return probs


def fold_probs(cfg: ExperimentConfig, study: StudyConfig, cl: ConfidentLearningConfig, data: ImageNetDataManager,
               noise_mask: np.ndarray, row: str, seed: int, hflip: bool) -> dict[str, np.ndarray]:
    """The (M, C) out-of-sample probabilities of cleanlab row ``row``'s finished fold models (trained with training
    seed ``seed``) on ``data``, centre crop and, with ``hflip``, flip TTA (rescoring the fold models once),
    keyed 'centre crop' / 'flip TTA'.

    Works on a fresh machine from the fold files that ``keep_results.py --restore`` puts back (no fold model
    needed unless ``hflip``).

    Raises:
        FileNotFoundError: the row's detection has not finished, and its folds were not restored.
        ValueError: its detection was made on other samples or flips than ``data`` / ``noise_mask``; or ``hflip``
            where a fold has neither its model nor its flip-TTA probabilities.
    """
    det_dir = Path(cfg.logging.output_dir) / row / "detection"
    folds_dir, row_cfg = detection_config(with_seed(cfg, seed), row, study)
    restored = all((folds_dir / f"fold_{k}" / "pred_probs.npy").is_file() for k in range(cl.folds))
    if not (det_dir / "pred_probs.npy").is_file() and not restored:
        raise FileNotFoundError(f"{det_dir / 'pred_probs.npy'} does not exist: run the study's {row} row first "
                                f"(run_study.py with the same flags), or restore its folds (keep_results.py "
                                f"--restore)")
    scorable = [(folds_dir / f"fold_{k}" / "pred_probs_hflip.npy").is_file()
                or any((folds_dir / f"fold_{k}" / "models").glob("*.pt")) for k in range(cl.folds)]
    if hflip and not all(scorable):  # rather than retrain a fold model whose probabilities alone were restored
        raise ValueError(f"--hflip needs {row}'s fold models or their flip-TTA probabilities, and fold(s) "
                         f"{[k for k, ok in enumerate(scorable) if not ok]} in {folds_dir} have neither (restored "
                         f"from kept files?): drop --hflip, or run the ablation where the study ran")
    # a row restored on a fresh machine has only its folds' files, whose fold_settings.json digests of the ids and
    # labels out_of_sample_pred_probs checks; a row run here is checked against its own record too
    if (det_dir / "train_ids.npy").is_file() and not (
            np.array_equal(np.load(det_dir / "train_ids.npy"), data.train_ids)
            and np.array_equal(np.load(det_dir / "noise_mask.npy"), noise_mask)):
        raise ValueError(f"{det_dir} was not made with these flags (its train_ids.npy or noise_mask.npy differ from "
                         f"the rebuilt ones): pass exactly the study's flags")
    return {"flip TTA" if flip else "centre crop": out_of_sample_pred_probs(row_cfg, data, folds_dir, cl.folds,
                                                                            cl.fold_seed, hflip=flip)
            for flip in ((False, True) if hflip else (False,))}


def run(argv: list[str]) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--experiment", default="noise20_cleanlab",
                       help="the cleanlab row's run folder, e.g. noise20_cleanlab or noise20_cleanlab_seed1")
    extra.add_argument("--hflip", action="store_true", help="also score the fold models with flip TTA")
    extra.add_argument("--in_sample", action="store_true",
                       help="also score with the finished noisy row's model (in-sample probabilities)")
    extra.add_argument("--ensemble", nargs="+", default=[], metavar="ROW",
                       help="other finished cleanlab rows on the same flips whose fold models join an ensemble")
    args, rest = extra.parse_known_args(argv)
    cfg, study, cl = parse_study_config(Path(__file__).parent, rest, __doc__)
    if cl.rounds > 1:
        raise ValueError(f"--cl.rounds {cl.rounds}: the ablation scores a detection's first-round fold models only; "
                         f"compare later rounds with compare_folds.py --detection NAME=<row>/detection/round_2")
    runs = {name: (spec, seed) for spec, seed, name in study_runs(study, cfg.training.seed)}
    if args.experiment not in runs or not runs[args.experiment][0].cleanlab:
        cleanlab_rows = [n for n, (s, _) in runs.items() if s.cleanlab]
        raise ValueError(f"--experiment {args.experiment!r} is not a cleanlab row of this study; pass one of "
                         f"{', '.join(cleanlab_rows)}")
    spec, seed = runs[args.experiment]
    out = Path(cfg.logging.output_dir)
    folds_of = {args.experiment: detection_folds_dir(out, args.experiment)}
    for other in args.ensemble:
        if other not in runs or not runs[other][0].cleanlab or runs[other][0].noise_rate != spec.noise_rate:
            raise ValueError(f"--ensemble {other!r} is not a cleanlab row at noise rate {spec.noise_rate:g} of this "
                             f"study; pass rows such as {args.experiment}_seed1")
        twin = next((row for row, d in folds_of.items() if d == detection_folds_dir(out, other)), None)
        if twin is not None:
            raise ValueError(f"--ensemble {other!r} shares its fold models with {twin!r} (the same detection): pass "
                             f"rows of other seeds, such as {args.experiment}_seed1")
        folds_of[other] = detection_folds_dir(out, other)
    base = ImageNetDataManager(cfg.data, seed=seed, progress=cfg.logging.progress_bar)
    noisy = study_noise(base, spec.noise_rate, study)
    data = base.with_train_subset(base.train_ids, noisy.labels, seed=seed)
    det_dir = out / args.experiment / "detection"
    rows_probs = {row: fold_probs(cfg, study, cl, data, noisy.noise_mask, row, runs[row][1], args.hflip)
                  for row in (args.experiment, *args.ensemble)}
    scorings = {f"{cl.folds}-fold, {flip}": probs for flip, probs in rows_probs[args.experiment].items()}
    independent = list(scorings.values())  # each probability set once, for the overall mean below
    if args.ensemble:
        independent += [p for row in args.ensemble for p in rows_probs[row].values()]
        for flip in rows_probs[args.experiment]:
            scorings[f"{cl.folds}-fold x {len(rows_probs)} seeds ({', '.join(rows_probs)}), {flip}"] = np.mean(
                [p[flip] for p in rows_probs.values()], axis=0)
    if args.in_sample:
        noisy_row = next((name for name, (s, sd) in runs.items() if sd == seed and s.noise_rate == spec.noise_rate
                          and s.cleaning == "none"), None)  # the same flips, kept: e.g. noise20 for noise20_cleanlab
        if noisy_row is None:
            raise ValueError(f"--in_sample: this study has no noisy row at {spec.noise_rate:g} with seed {seed} "
                             f"(--study.repeat_experiments must include it for seed {seed})")
        in_sample = in_sample_probs(with_seed(cfg, seed), study, data, noisy_row, args.hflip)
        scorings.update(in_sample)
        independent += list(in_sample.values())
    if len(independent) > 1:  # an ensemble: the mean of every probability set above, each counted once
        scorings["mean of every probability set above"] = np.mean(independent, axis=0)
    rows = [{"scoring": scoring, **r} for scoring, probs in scorings.items()
            for r in detection_sweep(data.train_labels, probs, noisy.noise_mask)]

    print(write_sweep_table(det_dir, "ablation", rows, COLUMNS, f"Detection ablation: {args.experiment} "
                            f"({int(noisy.noise_mask.sum())} of {noisy.noise_mask.size} labels flipped)"), end="")
    return 0


if __name__ == "__main__":
    from core.cli import run_entry

    sys.exit(run_entry(lambda: run(sys.argv[1:])))
