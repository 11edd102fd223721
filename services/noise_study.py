"""The label-noise study: clean, noisy, simulated-cleaning and cleanlab-cleaned training runs with one seed, one
subset, one model and one schedule, gathered into results.csv, results.md and a bar chart."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from core.config import ExperimentConfig, build_parser, parse_sections, settings_conflicts
from core.data.manager import ImageNetDataManager
from core.label_noise import (NoisyLabels, apply_manifest_to, exact_count, inject_symmetric_noise,
                              simulate_cleaning, write_training_labels)
from core.logger import setup_logging
from core.soft_targets import apply_soft_label_cleaning
from core.trainer import RunInterrupted
from services.detection_ensemble import check_study_members, member_digests
from services.label_issues import ConfidentLearningConfig, detect_label_issues

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CSV_COLUMNS = ("experiment", "description", "noise_rate", "cleaning", "train_images", "flipped", "restored",
               "removed", "relabelled", "wrong_labels", "top1", "top5", "best_top1", "drop_from_clean",
               "recovered", "precision", "recall", "f1", "train_time_s", "run_time_s", "seeds", "top1_spread")
"""results.csv: one row per experiment; numbers are means over its seeds, top1_spread the half-range of top-1.
train_time_s is the wall time of the process that finished the row (detection and training; less when it resumed
an interrupted row), run_time_s the final model's training, evaluation and checkpoints over every session."""
RUN_COLUMNS = ("run", "seed") + CSV_COLUMNS[:-2]
"""runs.csv: one row per training run (experiment and seed)."""


@dataclass
class StudyConfig:
    """Which noise levels and cleanings the study compares."""

    noise_rates: tuple[float, ...] = (0.2, 0.4)
    """Symmetric label-noise rates, each in (0, 1): every rate gets a noisy run, a simulated-cleaning run and a
    cleanlab run."""
    simulated_detection_rates: tuple[float, ...] = (0.8, 0.6)
    """Share of the flipped labels restored by simulated cleaning, one per noise rate, in [0, 1]."""
    noise_seed: int = 0
    """Seed of the noise injection and of the simulated cleaning."""
    cleanlab: bool = True
    """Run the cleanlab-cleaned experiments (K fold models + one training per noise rate)."""
    cleanlab_remove_only: bool = False
    """Also train each cleanlab row under the other cleaning policy: every flagged sample removed, none relabelled
    (rows '<noise>_cleanlab_remove'). They reuse the K fold models of the threshold rule's row at the same rate and
    seed (one detection, two policies), so each costs one training."""
    cleanlab_gap_rows: bool = False
    """Also train, after each cleanlab row, two rows that split its gap to the clean row in two (the truth is known
    in this study): '<noise>_cleanlab_gap_removals', the images the cleaning removed are gone and every kept image
    has its true label (what the removals alone cost), and '<noise>_cleanlab_gap_labels', every image kept, the
    removed ones with their true labels and the kept ones with the cleaned labels (what the wrong labels the
    cleaning leaves or makes alone cost; compare with simulated cleaning, whose wrong labels are uniform). They
    reuse the threshold rule's detection (one training each) and are diagnostics, not cleanings a user can run."""
    cleanlab_soft_labels: bool = False
    """Also train each cleanlab row under a third policy: every flagged sample kept, trained on its out-of-sample
    probabilities as a soft target (:mod:`core.soft_targets`), not relabelled or removed (rows
    '<noise>_cleanlab_soft'; one training each on the threshold rule's detection; K-fold scores, no MixUp/CutMix).
    Its 'relabelled' counts the soft samples, 'wrong_labels' those whose most probable class is wrong."""
    noise_only_rates: tuple[float, ...] = ()
    """More symmetric-noise rates, each trained without cleaning (e.g. 0.05 and 0.5, the Noisy Imagenette
    baselines' rates); each in (0, 1) and not in noise_rates."""
    seeds: tuple[int, ...] = ()
    """Training seeds (model init, augmentation, order). Empty: --training.seed alone. The first seed runs every
    experiment; each further seed runs repeat_experiments, in folders named '<experiment>_seed<s>'."""
    repeat_experiments: tuple[str, ...] = ("clean", "noise20", "noise20_cleanlab")
    """The experiments that the further seeds run again (names as in results.csv)."""
    group: str = "label-noise-study"
    """W&B group of the study's runs, and the prefix of their names."""
    fold_config: Optional[str] = None
    """A YAML file of data/model/training settings layered over each cleanlab row's config for its K fold models
    only (the detection), e.g. a longer schedule. cleanlab takes any model's out-of-sample probabilities and can
    find a flip only where the model disagrees with it, so a stronger fold model is a better detector, while the
    cleaned row's own training keeps the study's recipe and its top-1 compares with the other rows'. The data subset
    and labels stay the row's. None: the folds train with the row's config."""
    report_only: bool = False
    """Train nothing: write the tables and chart from the rows already finished with these settings (e.g. while
    another process runs the study, or on a fresh machine after keep_results.py --restore)."""

    def __post_init__(self) -> None:
        problems = []
        if len(self.noise_rates) != len(self.simulated_detection_rates):
            problems.append(f"--study.simulated_detection_rates needs one value per noise rate "
                            f"({len(self.noise_rates)}), got {len(self.simulated_detection_rates)}")
        if not all(0 < r < 1 for r in self.noise_rates):
            problems.append(f"--study.noise_rates must lie in (0, 1), got {list(self.noise_rates)}")
        if not all(0 <= r <= 1 for r in self.simulated_detection_rates):
            problems.append(f"--study.simulated_detection_rates must lie in [0, 1], "
                            f"got {list(self.simulated_detection_rates)}")
        if len(set(self.noise_rates)) != len(self.noise_rates):
            problems.append(f"--study.noise_rates must be distinct, got {list(self.noise_rates)}")
        extra = list(self.noise_only_rates)
        if not all(0 < r < 1 for r in extra) or len(set(extra)) != len(extra) or set(extra) & set(self.noise_rates):
            problems.append(f"--study.noise_only_rates must be distinct values in (0, 1) not in --study.noise_rates, "
                            f"got {extra}")
        if len(set(self.seeds)) != len(self.seeds):
            problems.append(f"--study.seeds must be distinct, got {list(self.seeds)}")
        if self.fold_config is not None and not Path(self.fold_config).is_file():
            problems.append(f"--study.fold_config {self.fold_config} is not a file; give the path of a YAML with "
                            f"data:/model:/training: sections")
        if problems:
            raise ValueError("invalid study configuration:\n  - " + "\n  - ".join(problems))


GAP_PARTS = {"removals": "removals", "labels": "wrong labels"}
"""The two halves of a cleanlab row's cleaning that ``--study.cleanlab_gap_rows`` trains apart (:func:`gap_labels`)."""


@dataclass(frozen=True)
class ExperimentSpec:
    """One row of the study: the labels it trains on."""

    name: str
    description: str
    noise_rate: float = 0.0
    detection_rate: Optional[float] = None  # simulated cleaning
    cleanlab: bool = False
    remove_only: bool = False  # cleanlab rows: remove every flagged sample instead of the relabel threshold rule
    soft: bool = False  # cleanlab rows: keep every flagged sample, trained on its out-of-sample probabilities
    gap: Optional[str] = None  # cleanlab rows: "removals" or "labels", a half of the cleaning (cleanlab_gap_rows)

    @property
    def cleaning(self) -> str:
        if self.gap is not None:
            return f"cleanlab, its {GAP_PARTS[self.gap]} alone"
        if self.cleanlab:
            return "cleanlab, remove only" if self.remove_only else "cleanlab, soft labels" if self.soft else "cleanlab"
        return f"simulated {self.detection_rate:.0%}" if self.detection_rate is not None else "none"


def study_experiments(study: StudyConfig) -> list[ExperimentSpec]:
    """The experiments in table order: clean; per rate, noisy then simulated cleaning; per rate, cleanlab.

    With the defaults these are the issue's seven: clean, 20 %, 20 % + 80 % simulated, 40 %, 40 % + 60 %
    simulated, 20 % + cleanlab, 40 % + cleanlab. ``noise_only_rates`` add noisy rows in rate order;
    ``cleanlab_remove_only`` puts each cleanlab row's remove-only twin after it, ``cleanlab_soft_labels`` its
    soft-label twin after that, ``cleanlab_gap_rows`` its two gap rows after those.
    """
    specs = [ExperimentSpec("clean", "clean labels")]
    detection = dict(zip(study.noise_rates, study.simulated_detection_rates))
    for rate in sorted(set(study.noise_rates) | set(study.noise_only_rates)):
        pct = f"{rate * 100:g}"
        specs.append(ExperimentSpec(f"noise{pct}", f"{pct} % symmetric noise", rate))
        if rate in detection:
            det = detection[rate]
            specs.append(ExperimentSpec(f"noise{pct}_sim{det * 100:g}", f"{pct} % noise, {det * 100:g} % "
                                        f"simulated cleaning", rate, detection_rate=det))
    if study.cleanlab:
        for rate in study.noise_rates:
            pct = f"{rate * 100:g}"
            specs.append(ExperimentSpec(f"noise{pct}_cleanlab", f"{pct} % noise, cleanlab manifest", rate,
                                        cleanlab=True))
            if study.cleanlab_remove_only:
                specs.append(ExperimentSpec(f"noise{pct}_cleanlab_remove", f"{pct} % noise, cleanlab, flagged "
                                            f"removed", rate, cleanlab=True, remove_only=True))
            if study.cleanlab_soft_labels:
                specs.append(ExperimentSpec(f"noise{pct}_cleanlab_soft", f"{pct} % noise, cleanlab, flagged "
                                            f"trained on soft labels", rate, cleanlab=True, soft=True))
            if study.cleanlab_gap_rows:
                specs += [ExperimentSpec(f"noise{pct}_cleanlab_gap_{part}", f"{pct} % noise, cleanlab's "
                                         f"{GAP_PARTS[part]} alone", rate, cleanlab=True, gap=part)
                          for part in GAP_PARTS]
    return specs


def study_runs(study: StudyConfig, default_seed: int) -> list[tuple[ExperimentSpec, int, str]]:
    """(experiment, training seed, run folder name) for every run: the first seed runs every experiment in
    folders named after them; each further seed of ``study.seeds`` runs ``repeat_experiments`` in
    '<name>_seed<s>'.

    Raises:
        ValueError: a name in ``repeat_experiments`` is not an experiment of the study (listing the names).
    """
    specs = study_experiments(study)
    seeds = list(study.seeds) or [default_seed]
    runs = [(spec, seeds[0], spec.name) for spec in specs]
    if len(seeds) > 1:
        names = [spec.name for spec in specs]
        unknown = [n for n in study.repeat_experiments if n not in names]
        if unknown:
            raise ValueError(f"--study.repeat_experiments names {unknown}, which are not experiments of this study "
                             f"({', '.join(names)})")
        runs += [(spec, seed, f"{spec.name}_seed{seed}") for seed in seeds[1:] for spec in specs
                 if spec.name in study.repeat_experiments]
    return runs


# ----------------------------------------------------------------------------------------------------------------
# Configuration: the experiment's sections plus study: and cl:, layered like core.cli.experiment_config
# ----------------------------------------------------------------------------------------------------------------

def parse_study_config(script_dir: Path, argv: Optional[Sequence[str]] = None, description: str = ""
                       ) -> tuple[ExperimentConfig, StudyConfig, ConfidentLearningConfig]:
    """Layers, lowest first: dataclass defaults, ``script_dir/config.yaml``, ``script_dir/sample.yaml`` (only
    without ``--data.root``), the command line (:func:`core.config.parse_sections`, so ``--help`` and
    ``--print_config`` show the resolved values). ``--logging.output_dir`` defaults to ``script_dir/runs``.

    Raises:
        SystemExit: unknown flags or wrong types (jsonargparse prints usage).
        ValueError: out-of-range values, all reported together.
    """
    script_dir = Path(script_dir).resolve()
    parser = build_parser(description or "Label-noise study.")
    parser.add_class_arguments(StudyConfig, nested_key="study")
    parser.add_class_arguments(ConfidentLearningConfig, nested_key="cl")
    base = [script_dir / "config.yaml"] if (script_dir / "config.yaml").is_file() else []
    sample = [script_dir / "sample.yaml"] if (script_dir / "sample.yaml").is_file() else []
    init = parse_sections(argv, base, parser=parser, sample_files=sample,
                          defaults={"logging.output_dir": str(script_dir / "runs")})
    cfg = ExperimentConfig(data=init.data, model=init.model, training=init.training, logging=init.logging)
    return cfg, init.study, init.cl


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------

class StudyInterrupted(RunInterrupted):
    """A training run was stopped by a signal (its checkpoint is saved); rerun the study to continue."""


def _fingerprint(cfg: ExperimentConfig, spec: ExperimentSpec, study: StudyConfig,
                 cl: ConfidentLearningConfig) -> dict[str, Any]:
    """Everything that decides a row's result; a saved result.json is reused only when this matches."""
    out = {"config": cfg.result_settings(), "experiment": dataclasses.asdict(spec)}
    if spec.noise_rate > 0:
        out["noise_seed"] = study.noise_seed
    if spec.cleanlab:
        out["cl"] = {k: v for k, v in dataclasses.asdict(cl).items() if k != "ensemble"}  # paths: digests below
        if study.fold_config is not None:  # the fold models' own settings, by content (absent without a fold config)
            out["fold_config"] = fold_overrides(study)
        if cl.rounds > 1:  # at the top level, so a one-round result (saved before rounds existed) is not reused
            out["detection_rounds"] = cl.rounds if cl.round_targets == "remove" else [cl.rounds, cl.round_targets]
        if cl.scores != "k_fold":  # likewise: a K-fold result (saved before scores existed) is not an AUM one
            out["detection_scores"] = {"scores": cl.scores, "aum_threshold": cl.aum_threshold}
        if cl.aum_fraction > 0:  # at the top level: a threshold-rule AUM result is not a count-cut one
            out["aum_fraction"] = cl.aum_fraction
        if cl.ensemble:  # at the top level, by content: the members' probabilities wherever their folders lie
            out["ensemble"] = member_digests(cl.ensemble)
    return json.loads(json.dumps(out))


def study_noise(base: ImageNetDataManager, rate: float, study: StudyConfig) -> NoisyLabels:
    """The study's flips at ``rate``: symmetric noise over ``base``'s training labels drawn with
    ``--study.noise_seed``, the same for every row and training seed at that rate (:func:`inject_symmetric_noise`)."""
    noisy = inject_symmetric_noise(base.train_labels, rate, base.num_classes, study.noise_seed)
    assert noisy.num_flipped == exact_count(rate, base.train_labels.size)
    return noisy


@dataclass(frozen=True)
class StudySetup:
    """What a script that reads a finished study's detections needs (:func:`study_setup`): the study's settings,
    its training set ``data`` (``train_ids`` (M,), true ``train_labels`` (M,)) and ``noisy``, the flips one of its
    rows trained on (:func:`study_noise`: ``labels`` (M,), ``noise_mask`` (M,))."""

    cfg: ExperimentConfig
    study: StudyConfig
    cl: ConfidentLearningConfig
    data: ImageNetDataManager
    noisy: NoisyLabels


def study_setup(script_dir: Path, argv: Optional[Sequence[str]], description: str, noise_rate: float) -> StudySetup:
    """The study's flags parsed (:func:`parse_study_config`), its training set built and its flips at ``noise_rate``
    drawn again: the set-up of the scripts that compare or export finished detections (``compare_*.py``,
    ``export_probs.py``), given the study's own flags so that they rebuild the labels its detections checked.

    Raises:
        SystemExit, ValueError: as :func:`parse_study_config`; the data manager's errors for a bad data root.
    """
    cfg, study, cl = parse_study_config(script_dir, argv, description)
    data = ImageNetDataManager(cfg.data, seed=cfg.training.seed, progress=cfg.logging.progress_bar)
    return StudySetup(cfg, study, cl, data, study_noise(data, noise_rate, study))


def detection_folds_dir(out: Path, name: str) -> Path:
    """Where the K fold runs of cleanlab row ``name`` live: its own ``detection/`` folder, or for a remove-only,
    soft-label or gap row ('noise20_cleanlab_remove[_seedS]', '..._soft', '..._gap_labels') the threshold rule's row's
    ('noise20_cleanlab[_seedS]'): one detection per noise rate and seed, whichever policy row runs first trains it."""
    return Path(out) / re.sub(r"_cleanlab_(remove|soft|gap_removals|gap_labels)(?=_seed|$)", "_cleanlab",
                              name) / "detection"


def gap_labels(part: str, ids: np.ndarray, true_labels: np.ndarray, kept_ids: np.ndarray,
               kept_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training set of one half of a cleaning (``--study.cleanlab_gap_rows``), vectorised.

    Args:
        part: "removals": the kept images with their true labels (only the removals differ from clean);
            "labels": every image, the kept ones with the cleaned labels, the removed ones with their true labels
            (only the cleaning's wrong labels differ from clean).
        ids: (N,) int64 the training ids before cleaning, unique; true_labels: (N,) their true labels.
        kept_ids: (M,) int64 the ids the cleaning kept (a subset of ``ids``); kept_labels: (M,) their labels.

    Returns:
        (ids, labels): (M,) for "removals", (N,) in the order of ``ids`` for "labels".

    Raises:
        ValueError: an unknown ``part``, or a kept id not in ``ids``.
    """
    if part not in GAP_PARTS:
        raise ValueError(f"gap part must be one of {sorted(GAP_PARTS)}, got {part!r}")
    ids, kept_ids = np.asarray(ids, dtype=np.int64), np.asarray(kept_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    at = order[np.searchsorted(ids, kept_ids, sorter=order).clip(max=ids.size - 1)] if ids.size else order
    if at.size != kept_ids.size or not np.array_equal(ids[at], kept_ids):
        raise ValueError("the cleaned training set has ids that are not in the set before cleaning; pass the ids the "
                         "cleaning started from")
    if part == "removals":
        return kept_ids, np.asarray(true_labels)[at]
    labels = np.array(true_labels, dtype=np.int64)
    labels[at] = kept_labels
    return ids, labels


def run_config(cfg: ExperimentConfig, run_dir: Path, name: str, group: str) -> ExperimentConfig:
    """``cfg`` writing to ``run_dir`` as run '<group>-<name>' (a study row, or its detection's fold runs)."""
    return dataclasses.replace(cfg, logging=dataclasses.replace(
        cfg.logging, output_dir=run_dir, run_name=f"{group}-{name}", wandb_group=cfg.logging.wandb_group or group))


def with_seed(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    """``cfg`` with training seed ``seed`` (one of ``--study.seeds``: init, augmentation, order)."""
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=seed))


FOLD_SECTIONS = ("data", "model", "training")
"""The config sections a ``--study.fold_config`` may set (logging stays the study's)."""


def fold_overrides(study: StudyConfig) -> dict[str, dict[str, Any]]:
    """The settings of ``--study.fold_config``, as {section: {field: value}}; {} without one.

    Raises:
        ValueError: the YAML is not a mapping of sections, or names a section other than data/model/training
            (its fields and values are checked when layered: :func:`detection_config`).
    """
    if study.fold_config is None:
        return {}
    path = Path(study.fold_config)
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise ValueError(f"--study.fold_config {path} must be a mapping of sections (data:, model:, training:) to "
                         f"settings")
    bad = sorted(set(d) - set(FOLD_SECTIONS))
    if bad:
        raise ValueError(f"--study.fold_config {path} sets sections {bad}; only {list(FOLD_SECTIONS)} apply to the "
                         f"fold models")
    return d


def detection_config(cfg: ExperimentConfig, name: str, study: StudyConfig) -> tuple[Path, ExperimentConfig]:
    """Cleanlab row ``name``'s K-fold runs: their folder (:func:`detection_folds_dir`) and config: ``cfg`` with
    ``--study.fold_config`` layered over it (:func:`fold_overrides`), writing there as
    '<group>-<row that owns the folds>-detect'.

    Raises:
        ValueError: the fold config is invalid, alone or layered over ``cfg``.
    """
    folds_dir = detection_folds_dir(cfg.logging.output_dir, name)
    overrides = fold_overrides(study)
    if overrides:
        d = cfg.to_dict()
        for section, values in overrides.items():
            d[section].update(values)
        try:
            cfg = ExperimentConfig.from_dict(d)
        except ValueError as e:
            raise ValueError(f"--study.fold_config {study.fold_config} over the study's config: {e}") from None
    return folds_dir, run_config(cfg, folds_dir, f"{folds_dir.parent.name}-detect", study.group)


def _row_cl(spec: ExperimentSpec, cl: ConfidentLearningConfig) -> ConfidentLearningConfig:
    """The confident-learning settings a row uses: a remove-only row's relabel threshold is 1.0 (no relabels)."""
    return dataclasses.replace(cl, relabel_threshold=1.0) if spec.remove_only else cl


def finished_row(spec: ExperimentSpec, cfg: ExperimentConfig, study: StudyConfig, cl: ConfidentLearningConfig,
                 name: str) -> Optional[dict[str, Any]]:
    """Run ``name``'s row from its result.json when it finished with these settings, else None (not finished, or
    ``--training.resume none``).

    Raises:
        ValueError: result.json exists but was made with other settings.
    """
    result_file = Path(cfg.logging.output_dir) / name / RESULT_FILE
    if not result_file.is_file() or cfg.training.resume == "none":
        return None
    saved = json.loads(result_file.read_text())
    conflicts = settings_conflicts(saved.get("fingerprint", {}), _fingerprint(cfg, spec, study, _row_cl(spec, cl)))
    if conflicts:
        raise ValueError(f"{result_file} was made with other settings ({', '.join(conflicts[:5])}); use another "
                         f"--logging.output_dir, or --training.resume none to redo the study")
    return {"run": name, "seed": cfg.training.seed, **saved["row"]}


def run_experiment(spec: ExperimentSpec, cfg: ExperimentConfig, study: StudyConfig, cl: ConfidentLearningConfig,
                   base: ImageNetDataManager, noisy: Optional[NoisyLabels], name: Optional[str] = None
                   ) -> dict[str, Any]:
    """Build the labels of ``spec``, record them in the run folder, train with ``cfg`` (its ``training.seed`` is
    the run's seed), and return the row.

    The run folder ``<output_dir>/<name>/`` (``name`` defaults to ``spec.name``) gets ``train_ids.npy``,
    ``train_labels.npy``, ``noise_mask.npy`` and ``labels.json`` (what it trained on), ``logs/`` and ``models/``
    (the trainer's), ``detection/`` for cleanlab rows, and ``result.json``. An unfinished row resumes from
    ``models/last.pt`` (unless ``--training.resume none``); a finished one is not looked up here: :func:`run_study`
    skips it (:func:`finished_row`).

    Raises:
        StudyInterrupted: the training was stopped by a signal.
    """
    from core.cli import build_trainer

    out = Path(cfg.logging.output_dir)
    name = name or spec.name
    run_dir = out / name
    row_cl = _row_cl(spec, cl)
    fingerprint = _fingerprint(cfg, spec, study, row_cl)
    result_file = run_dir / RESULT_FILE

    started = time.perf_counter()
    clean_ids, clean_labels = base.train_ids, base.train_labels
    data = base.clone(run_dir=run_dir / "logs", seed=cfg.training.seed)  # shares the file index and readers
    data.run_dir.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"run": name, "seed": cfg.training.seed, "experiment": spec.name,
                           "description": spec.description, "noise_rate": spec.noise_rate,
                           "cleaning": spec.cleaning, "flipped": 0, "restored": 0, "removed": 0, "relabelled": 0}
    provenance: dict[str, Any] = {"experiment": spec.name, "noise": "symmetric", "noise_rate": spec.noise_rate,
                                  "noise_seed": study.noise_seed, "base_subset_size": int(clean_ids.size),
                                  "data_root": str(base.root), "subset_fraction": base.cfg.fraction,
                                  "subset_seed": base.cfg.subset_seed}
    if noisy is not None:
        row["flipped"] = provenance["num_flipped"] = noisy.num_flipped
        data.set_train_subset(clean_ids, noisy.labels)
    if spec.detection_rate is not None:
        cleaned = simulate_cleaning(noisy, spec.detection_rate, study.noise_seed)
        data.set_train_subset(clean_ids, cleaned.labels)
        row["restored"] = provenance["num_restored"] = cleaned.num_restored
        provenance["simulated_detection_rate"] = spec.detection_rate
    if spec.cleanlab:
        det_dir = run_dir / "detection"
        folds_dir, fold_cfg = detection_config(cfg, name, study)
        if spec.remove_only or spec.soft or spec.gap:  # the threshold row's folds, trained before it in table order
            # (even under resume none)
            fold_cfg = dataclasses.replace(fold_cfg, training=dataclasses.replace(fold_cfg.training, resume="auto"))
        det = detect_label_issues(fold_cfg, data, det_dir, row_cl, noise_mask=noisy.noise_mask,
                                  original_labels=clean_labels, folds_dir=folds_dir)
        setup_logging(out, cfg.logging.log_level)
        if spec.soft:  # every image kept, the flagged ones on soft targets: not the manifest
            report = apply_soft_label_cleaning(data, det.pred_probs, det.issues)
            provenance["soft_targets"] = "soft_targets.npz"
        else:
            report = apply_manifest_to(data, det.manifest)
        row["removed"], row["relabelled"] = report.num_removed, report.num_relabelled
        if spec.gap is not None:  # one half of the cleaning, the other undone with the truth
            data.set_train_subset(*gap_labels(spec.gap, clean_ids, clean_labels, data.train_ids, data.train_labels))
            row["relabelled" if spec.gap == "removals" else "removed"] = 0
            provenance["gap"] = spec.gap
        row.update({k: det.metrics[k] for k in ("precision", "recall", "f1")})
        provenance.update(manifest=None if spec.soft else str(det_dir), cleanlab=dataclasses.asdict(row_cl),
                          **report.as_dict())
    wrong = data.train_labels != base.train_index.labels[data.train_ids]
    row["train_images"] = int(data.train_ids.size)
    row["wrong_labels"] = int(wrong.sum())
    write_training_labels(run_dir, data.train_ids, data.train_labels, noise_mask=wrong, **provenance)
    if data.train_soft_targets is not None:  # what the flagged samples trained on
        np.savez(run_dir / "soft_targets.npz", rows=data.train_soft_targets.rows, probs=data.train_soft_targets.probs)

    trainer = build_trainer(run_config(cfg, run_dir, name, study.group), data=data)
    result = trainer.fit()
    setup_logging(out, cfg.logging.log_level)
    if result["interrupted"]:
        raise StudyInterrupted(f"{name} was stopped by a signal; its checkpoint is saved, rerun the study to "
                               f"continue")
    final = result["final"] or trainer.evaluate()  # empty when the run had already finished (resumed complete)
    row.update(top1=final["val_top1"], top5=final["val_top5"], best_top1=result["best_top1"],
               train_time_s=round(time.perf_counter() - started, 1),
               run_time_s=math.nan if result["run_time_s"] is None else round(result["run_time_s"], 1))
    tmp = run_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "row": row}, indent=2) + "\n")
    tmp.replace(result_file)
    log.info("%s: top-1 %.2f %%, top-5 %.2f %% on %d images (%d wrong labels)", name, row["top1"],
             row["top5"], row["train_images"], row["wrong_labels"])
    return row


def aggregate_seeds(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per experiment (in first-seen order) from the per-run rows: numeric fields averaged over the seeds
    that ran it (NaN when some of them lack the field, e.g. rows written before it existed: no mean of a subset
    passed off as the mean), ``seeds`` the seeds ('0 1'), ``top1_spread`` half the range of top-1 (0 for one
    seed)."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_name.setdefault(r["experiment"], []).append(r)
    rows = []
    for group in by_name.values():
        keys = list(dict.fromkeys(k for g in group for k in g))  # every seed's fields, first-seen order
        row = {k: next((g[k] for g in group if g.get(k) is not None), None) for k in keys if k not in ("run", "seed")}
        for k in keys:
            values = [g.get(k) for g in group]
            if k in ("run", "seed", "noise_rate") or not any(number(x) for x in values):
                continue
            if all(number(x) for x in values):
                row[k] = float(np.mean(values)) if any(isinstance(x, float) for x in values) or len(set(values)) > 1 \
                    else values[0]
            else:
                row[k] = math.nan
        top1 = [g["top1"] for g in group]
        row["seeds"] = " ".join(str(g.get("seed", "")) for g in group).strip()
        row["top1_spread"] = (max(top1) - min(top1)) / 2
        rows.append(row)
    return rows


def add_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill ``drop_from_clean`` (top-1 points below the clean run) and, for cleaned rows, ``recovered``: the
    fraction of the noisy run's drop won back, (top1 - noisy) / (clean - noisy); NaN when the noise cost nothing."""
    clean = next((r for r in rows if r["noise_rate"] == 0), None)
    noisy_by_rate = {r["noise_rate"]: r for r in rows if r["noise_rate"] > 0 and r["cleaning"] == "none"}
    for r in rows:
        r["drop_from_clean"] = clean["top1"] - r["top1"] if clean else math.nan
        r["recovered"] = math.nan
        noisy = noisy_by_rate.get(r["noise_rate"])
        if clean and noisy and r["cleaning"] != "none":
            drop = clean["top1"] - noisy["top1"]
            r["recovered"] = (r["top1"] - noisy["top1"]) / drop if drop > 0 else math.nan
    return rows


def run_study(cfg: ExperimentConfig, study: StudyConfig, cl: ConfidentLearningConfig) -> list[dict[str, Any]]:
    """Run every experiment of :func:`study_experiments` (skipping finished ones) and write the reports; with
    ``--study.report_only``, only the reports, from the finished rows. The tables written after each trained row
    include the rows finished earlier that the loop has not reached yet.

    Returns:
        The table rows, one per experiment, averaged over its seeds (see :data:`CSV_COLUMNS`).

    Raises:
        StudyInterrupted: a run was stopped by a signal.
        ValueError: --study.repeat_experiments names an experiment the study does not have, a finished row's
            result.json was made with other settings (:func:`finished_row`), or --study.fold_config is invalid
            (:func:`detection_config`), or --study.cleanlab_soft_labels with --cl.scores aum or MixUp/CutMix, or
            --cl.ensemble with several cleanlab detections or members of other labels; all checked before anything
            trains.
    """
    if study.cleanlab_soft_labels and study.cleanlab:
        if cl.scores != "k_fold":
            raise ValueError("--study.cleanlab_soft_labels needs --cl.scores k_fold: the soft targets are "
                             "out-of-sample probabilities, and an AUM run's are in-sample (it trained on its labels)")
        if cfg.training.mixup_alpha > 0 or cfg.training.cutmix_alpha > 0:
            raise ValueError("--study.cleanlab_soft_labels cannot train with MixUp/CutMix (the mix takes hard "
                             "labels); set --training.mixup_alpha and --training.cutmix_alpha to 0")
    out = Path(cfg.logging.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out, cfg.logging.log_level)
    if not study.report_only:  # a report leaves the record of the study's own settings alone
        cfg.save_yaml(out / "config.yaml")
        (out / "study.json").write_text(json.dumps({"study": dataclasses.asdict(study), "cl": dataclasses.asdict(cl)},
                                                   indent=2) + "\n")
    base = ImageNetDataManager(cfg.data, seed=cfg.training.seed, run_dir=out / "data",
                               progress=cfg.logging.progress_bar)
    base.write_class_distribution(out / "data")
    if base.using_bundled_sample:
        log.warning("label-noise study on the BUNDLED SAMPLE (%d train / %d val images): a smoke run; pass "
                    "--data.root for a real one", len(base.train_ids), len(base.val_ids))
    noisy = {rate: study_noise(base, rate, study) for rate in (*study.noise_rates, *study.noise_only_rates)}
    planned = [(spec, with_seed(cfg, seed), name) for spec, seed, name in study_runs(study, cfg.training.seed)]
    if study.fold_config is not None and any(spec.cleanlab for spec, _, _ in planned):
        detection_config(cfg, "noise_cleanlab", study)  # a bad fold config fails now, not hours into the study
    check_study_members(cl.ensemble, {(s.noise_rate, c.training.seed) for s, c, _ in planned if s.cleanlab},
                        base.train_ids, {rate: n.labels for rate, n in noisy.items()})
    done = {name: row for spec, run_cfg, name in planned
            if (row := finished_row(spec, run_cfg, study, cl, name)) is not None}  # settings checked up front
    runs: list[dict[str, Any]] = []
    for i, (spec, run_cfg, name) in enumerate(planned):
        if name in done:
            log.info("%s: finished earlier (top-1 %.2f %%), not rerun", name, done[name]["top1"])
            runs.append(done[name])
            continue
        if study.report_only:
            log.info("%s: not finished, left out of the tables (--study.report_only)", name)
            continue
        log.info("=== %s: %s, seed %d ===", name, spec.description, run_cfg.training.seed)
        runs.append(run_experiment(spec, run_cfg, study, cl, base, noisy.get(spec.noise_rate), name))
        partial = runs + [done[n] for _, _, n in planned[i + 1:] if n in done]  # and finished rows not reached yet
        write_reports(add_comparisons(aggregate_seeds(partial)), out, cfg, partial)  # partial tables while it runs
    rows = add_comparisons(aggregate_seeds(runs))
    write_reports(rows, out, cfg, runs)
    if cfg.logging.wandb:
        log_study_to_wandb(rows, out, cfg, study)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------

def _count(value: Any) -> str:
    """A count for the table: '1,234', or '1,234.5' for a mean over seeds that is not whole."""
    return f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}"


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k, "")) for k in columns})


def write_reports(rows: list[dict[str, Any]], out_dir: Path, cfg: ExperimentConfig,
                  runs: Optional[list[dict[str, Any]]] = None) -> None:
    """``results.csv`` (one row per experiment, means over seeds), ``runs.csv`` (one row per run, when ``runs``
    is given), ``results.md`` (a readable table) and ``results.png`` (bar chart)."""
    out_dir = Path(out_dir)
    _write_csv(out_dir / "results.csv", rows, CSV_COLUMNS)
    if runs is not None:
        _write_csv(out_dir / "runs.csv", runs, RUN_COLUMNS)
    lines = ["| # | experiment | seeds | train images | flipped | restored | removed | relabelled | wrong labels "
             "| top-1 % | top-5 % | drop from clean (pt) | drop recovered | precision | recall |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(rows, 1):
        recovered = r.get("recovered", math.nan)
        recovered = "-" if math.isnan(recovered) else f"{100 * recovered:.0f} %"
        counts = " | ".join(_count(r[k]) for k in ("train_images", "flipped", "restored", "removed", "relabelled",
                                                     "wrong_labels"))
        top1 = _fmt(r["top1"]) + (f" ± {r['top1_spread']:.2f}" if len(str(r.get("seeds", "")).split()) > 1 else "")
        lines.append(
            f"| {i} | {r['description']} | {r.get('seeds', '')} | {counts} | {top1} | {_fmt(r['top5'])} | "
            f"{_fmt(r.get('drop_from_clean'), '+.2f')} | {recovered} | {_fmt(r.get('precision'), '.3f')} | "
            f"{_fmt(r.get('recall'), '.3f')} |")
    t, d, m = cfg.training, cfg.data, cfg.model
    header = (f"# Label-noise study\n\n{m.name}, {d.image_size} px train / {d.val_image_size} px val, "
              f"{t.epochs} epochs, batch {t.effective_batch_size}, lr {t.lr}; data {d.root or 'bundled sample'} "
              f"(fraction {d.fraction}). Top-1/top-5 are the last epoch's on the val split; with several seeds, "
              f"the mean ± half the range (runs.csv has each run).\n\n")
    (out_dir / "results.md").write_text(header + "\n".join(lines) + "\n")
    try:
        from utils.visualization import plot_noise_study  # matplotlib: imported when a chart is drawn

        plot_noise_study(rows, out_dir / "results.png",
                         title=f"Label noise and cleaning: {m.name}, {d.image_size} px, {t.epochs} epochs")
    except Exception as e:  # a plot is a report, never a reason to fail a finished study
        log.warning("could not draw the study chart (%s)", e)


def log_study_to_wandb(rows: list[dict[str, Any]], out_dir: Path, cfg: ExperimentConfig, study: StudyConfig) -> None:
    """One more run in the study's W&B group holding the table and the chart."""
    try:
        import wandb
    except ImportError:
        log.warning("wandb is not installed; the study table is not logged to W&B")
        return
    run = wandb.init(project=cfg.logging.wandb_project, group=cfg.logging.wandb_group or study.group,
                     name=f"{study.group}-summary", mode=cfg.logging.wandb_mode, dir=str(out_dir),
                     config={"experiment": cfg.to_dict(), "study": dataclasses.asdict(study)}, job_type="summary")
    table = wandb.Table(columns=list(CSV_COLUMNS))
    for r in rows:
        table.add_data(*[r.get(k) for k in CSV_COLUMNS])
    run.log({"results": table, "results_chart": wandb.Image(str(out_dir / "results.png"))})
    run.finish()


def main(script_file: str, argv: Optional[Sequence[str]] = None, description: str = "") -> int:
    """Parse, run the study, print the table; returns the exit code through :func:`core.cli.run_entry` (0 done
    or stopped by a signal with checkpoints saved, 1 a training diverged, 2 bad input)."""
    from core.cli import run_entry

    def body() -> int:
        cfg, study, cl = parse_study_config(Path(script_file).parent, argv, description)
        rows = run_study(cfg, study, cl)  # stopped by a signal: StudyInterrupted, exit 0 (run_entry)
        out = Path(cfg.logging.output_dir)
        print((out / "results.md").read_text())
        log.info("study done: %d experiments; results.csv, results.md and results.png in %s", len(rows), out)
        return 0

    return run_entry(body)
