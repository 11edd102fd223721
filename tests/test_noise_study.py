"""The label-noise study: its experiment list, comparisons, and a smoke run of the whole loop on the bundled sample."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import yaml

from conftest import run_script, run_script_in_process
from core.config import PROJECT_ROOT
from core.label_noise import labels_digest
from services.detection_sweep import LABEL_QUALITY_SCORES, detection_sweep
from services.label_issues import FILTER_METHODS
from services.noise_study import (CSV_COLUMNS, StudyConfig, add_comparisons, aggregate_seeds, parse_study_config,
                                  study_experiments, study_runs)

STUDY_SCRIPT = PROJECT_ROOT / "experiments" / "label_noise_study" / "run_study.py"
KEEP_SCRIPT = PROJECT_ROOT / "experiments" / "label_noise_study" / "keep_results.py"
ABLATION_SCRIPT = PROJECT_ROOT / "experiments" / "label_noise_study" / "detection_ablation.py"
COMPARE_SCRIPT = PROJECT_ROOT / "experiments" / "label_noise_study" / "compare_folds.py"


def test_default_study_is_the_seven_experiments_of_the_issue():
    specs = study_experiments(StudyConfig())
    assert [s.name for s in specs] == ["clean", "noise20", "noise20_sim80", "noise40", "noise40_sim60",
                                       "noise20_cleanlab", "noise40_cleanlab"]
    assert [s.noise_rate for s in specs] == [0, 0.2, 0.2, 0.4, 0.4, 0.2, 0.4]
    assert [s.cleaning for s in specs] == ["none", "none", "simulated 80%", "none", "simulated 60%", "cleanlab",
                                           "cleanlab"]
    assert len(study_experiments(StudyConfig(cleanlab=False))) == 5
    both = study_experiments(StudyConfig(cleanlab_remove_only=True))  # the other policy, each after its twin
    assert [s.name for s in both[5:]] == ["noise20_cleanlab", "noise20_cleanlab_remove", "noise40_cleanlab",
                                          "noise40_cleanlab_remove"]
    assert [s.cleaning for s in both[5:7]] == ["cleanlab", "cleanlab, remove only"]
    gaps = study_experiments(StudyConfig(noise_rates=(0.2,), simulated_detection_rates=(0.8,),
                                         cleanlab_remove_only=True, cleanlab_gap_rows=True))
    assert [s.name for s in gaps[3:]] == ["noise20_cleanlab", "noise20_cleanlab_remove",
                                          "noise20_cleanlab_gap_removals", "noise20_cleanlab_gap_labels"]
    assert [s.cleaning for s in gaps[5:]] == ["cleanlab, its removals alone", "cleanlab, its wrong labels alone"]
    soft = study_experiments(StudyConfig(noise_rates=(0.2,), simulated_detection_rates=(0.8,),
                                         cleanlab_remove_only=True, cleanlab_soft_labels=True, cleanlab_gap_rows=True))
    assert [s.name for s in soft[3:6]] == ["noise20_cleanlab", "noise20_cleanlab_remove", "noise20_cleanlab_soft"]
    assert soft[5].cleaning == "cleanlab, soft labels" and soft[5].soft and not soft[5].remove_only
    assert soft[6].name == "noise20_cleanlab_gap_removals"


def test_gap_rows_undo_one_half_of_the_cleaning_with_the_truth(tmp_path):
    from services.noise_study import detection_folds_dir, gap_labels

    ids = np.array([7, 3, 9, 0, 5])
    true = np.array([1, 2, 3, 4, 0])
    kept_ids, kept_labels = np.array([3, 0, 5]), np.array([2, 1, 3])  # 7 and 9 removed; 0 relabelled wrongly, 5 too
    got_ids, got = gap_labels("removals", ids, true, kept_ids, kept_labels)
    np.testing.assert_array_equal(got_ids, kept_ids)  # the removals alone: kept images, true labels
    np.testing.assert_array_equal(got, [2, 4, 0])
    got_ids, got = gap_labels("labels", ids, true, kept_ids, kept_labels)
    np.testing.assert_array_equal(got_ids, ids)  # the wrong labels alone: every image, removed ones true
    np.testing.assert_array_equal(got, [1, 2, 3, 1, 3])
    with pytest.raises(ValueError, match="not in the set before cleaning"):
        gap_labels("labels", ids, true, np.array([3, 4]), np.array([0, 0]))
    with pytest.raises(ValueError, match="not in the set before cleaning"):
        gap_labels("removals", ids[:0], true[:0], kept_ids, kept_labels)
    assert [a.size for a in gap_labels("labels", ids[:0], true[:0], ids[:0], true[:0])] == [0, 0]
    with pytest.raises(ValueError, match="gap part must be one of"):
        gap_labels("both", ids, true, kept_ids, kept_labels)
    # a gap row's folds are the threshold rule's row's, at each seed
    for name, owner in (("noise20_cleanlab_gap_labels", "noise20_cleanlab"),
                        ("noise20_cleanlab_gap_removals_seed1", "noise20_cleanlab_seed1"),
                        ("noise40_cleanlab_remove_seed2", "noise40_cleanlab_seed2"),
                        ("noise20_cleanlab_soft", "noise20_cleanlab"),
                        ("noise20_cleanlab_soft_seed1", "noise20_cleanlab_seed1"),
                        ("noise40_cleanlab", "noise40_cleanlab")):
        assert detection_folds_dir(tmp_path, name) == tmp_path / owner / "detection"


def test_noise_only_rates_and_further_seeds():
    study = StudyConfig(noise_only_rates=(0.5, 0.05), seeds=(0, 1, 2))
    assert [s.name for s in study_experiments(study)] == [
        "clean", "noise5", "noise20", "noise20_sim80", "noise40", "noise40_sim60", "noise50", "noise20_cleanlab",
        "noise40_cleanlab"]
    runs = study_runs(study, default_seed=7)
    assert [(name, seed) for _, seed, name in runs[9:]] == [
        ("clean_seed1", 1), ("noise20_seed1", 1), ("noise20_cleanlab_seed1", 1),
        ("clean_seed2", 2), ("noise20_seed2", 2), ("noise20_cleanlab_seed2", 2)]
    assert {seed for _, seed, _ in runs[:9]} == {0}
    assert [seed for _, seed, _ in study_runs(StudyConfig(), default_seed=7)] == [7] * 7  # no seeds: --training.seed
    with pytest.raises(ValueError, match="noise20_cleanlab, noise40_cleanlab"):
        study_runs(StudyConfig(seeds=(0, 1), repeat_experiments=("noise30",)), 0)
    with pytest.raises(ValueError, match="--study.noise_only_rates"):
        StudyConfig(noise_only_rates=(0.2,))
    with pytest.raises(ValueError, match="--study.seeds"):
        StudyConfig(seeds=(1, 1))


def test_seeds_are_averaged_per_experiment():
    runs = [dict(run="clean", seed=0, experiment="clean", noise_rate=0.0, cleaning="none", top1=80.0, removed=0,
                 precision=None, run_time_s=100.0),
            dict(run="noise20", seed=0, experiment="noise20", noise_rate=0.2, cleaning="none", top1=70.0, removed=0,
                 precision=None, run_time_s=50.0),
            dict(run="clean_seed1", seed=1, experiment="clean", noise_rate=0.0, cleaning="none", top1=83.0,
                 removed=0, precision=None)]
    rows = aggregate_seeds(runs)
    assert [r["experiment"] for r in rows] == ["clean", "noise20"]
    assert rows[0]["top1"] == pytest.approx(81.5) and rows[0]["top1_spread"] == pytest.approx(1.5)
    assert rows[0]["seeds"] == "0 1" and rows[1]["seeds"] == "0" and rows[1]["top1_spread"] == 0
    assert rows[0]["removed"] == 0 and "run" not in rows[0]
    assert math.isnan(rows[0]["run_time_s"]) and rows[1]["run_time_s"] == 50.0  # seed 1 lacks it: no false mean
    assert add_comparisons(rows)[1]["drop_from_clean"] == pytest.approx(11.5)


def test_study_config_is_validated():
    with pytest.raises(ValueError) as e:
        StudyConfig(noise_rates=(0.2, 1.0), simulated_detection_rates=(0.5,))
    assert "--study.simulated_detection_rates" in str(e.value) and "--study.noise_rates" in str(e.value)


@pytest.mark.parametrize("cl, training, match", [
    (dict(scores="aum"), {}, "needs --cl.scores k_fold"),
    ({}, {"mixup_alpha": 0.2}, "cannot train with MixUp/CutMix"),
    ({}, {"cutmix_alpha": 1.0}, "cannot train with MixUp/CutMix")])
def test_soft_label_rows_are_refused_before_anything_trains(tmp_path, cl, training, match):
    from conftest import tiny_config
    from services.label_issues import ConfidentLearningConfig
    from services.noise_study import run_study

    cfg = tiny_config(tmp_path, training=training)
    with pytest.raises(ValueError, match=match):
        run_study(cfg, StudyConfig(cleanlab_soft_labels=True), ConfidentLearningConfig(**cl))
    assert not cfg.logging.output_dir.exists()  # refused before the study folder is written


def test_fold_config_is_layered_over_the_row_config_for_the_folds_only(tmp_path):
    from services.noise_study import detection_config

    cfg, _, _ = parse_study_config(STUDY_SCRIPT.parent, ["--data.root", str(tmp_path), "--config",
                                                         str(STUDY_SCRIPT.parent / "imagenette_cpu.yaml")])
    folds15 = STUDY_SCRIPT.parent / "folds_15ep.yaml"
    folds_dir, fold_cfg = detection_config(cfg, "noise20_cleanlab_remove", StudyConfig(fold_config=str(folds15)))
    assert folds_dir == cfg.logging.output_dir / "noise20_cleanlab" / "detection"
    assert (fold_cfg.training.epochs, fold_cfg.data.ramp_start_epoch, fold_cfg.data.ramp_end_epoch) == (15, 7, 11)
    assert (cfg.training.epochs, cfg.data.ramp_start_epoch) == (8, 4)  # the row's own config is left alone
    assert fold_cfg.training.lr == cfg.training.lr and fold_cfg.data.root == cfg.data.root  # the rest is the row's
    _, plain = detection_config(cfg, "noise20_cleanlab", StudyConfig())
    assert plain.training.epochs == 8 and plain.logging.output_dir == folds_dir

    with pytest.raises(ValueError, match="--study.fold_config .* is not a file"):
        StudyConfig(fold_config=str(tmp_path / "missing.yaml"))
    bad_section = tmp_path / "bad_section.yaml"
    bad_section.write_text("logging:\n  wandb: true\n")
    with pytest.raises(ValueError, match=r"sets sections \['logging'\]"):
        detection_config(cfg, "noise20_cleanlab", StudyConfig(fold_config=str(bad_section)))
    typo = tmp_path / "typo.yaml"
    typo.write_text("training:\n  epoch: 15\n")
    with pytest.raises(ValueError, match="fold_config .*unknown fields in section 'training': \\['epoch'\\]"):
        detection_config(cfg, "noise20_cleanlab", StudyConfig(fold_config=str(typo)))
    inconsistent = tmp_path / "inconsistent.yaml"
    inconsistent.write_text("data:\n  ramp_start_epoch: 9\n")  # past the row's ramp_end_epoch 6
    with pytest.raises(ValueError, match="data.ramp_end_epoch"):
        detection_config(cfg, "noise20_cleanlab", StudyConfig(fold_config=str(inconsistent)))


def test_sample_settings_apply_only_without_a_data_root(tmp_path):
    script_dir = STUDY_SCRIPT.parent
    cfg, study, cl = parse_study_config(script_dir, [])
    assert cfg.data.root is None and cfg.data.image_size == 32 and cl.folds == 2
    assert cfg.logging.output_dir == script_dir / "runs"
    cfg, study, cl = parse_study_config(script_dir, ["--data.root", str(tmp_path), "--cl.folds", "3"])
    assert cfg.data.image_size == 128 and cfg.model.name == "resnet50" and cl.folds == 3
    assert study.noise_rates == (0.2, 0.4)


def test_cpu_study_config_is_the_speedrun_recipe_with_two_seeds(tmp_path):
    cpu = STUDY_SCRIPT.parent / "imagenette_cpu.yaml"
    cfg, study, cl = parse_study_config(STUDY_SCRIPT.parent, ["--data.root", str(tmp_path), "--config", str(cpu)])
    assert (cfg.model.name, cfg.training.epochs, cfg.training.lr, cfg.training.scheduler) == ("resnet18", 8, 0.25,
                                                                                              "linear")
    assert cfg.data.progressive_resizing and (cfg.data.start_image_size, cfg.data.image_size) == (64, 128)
    runs = study_runs(study, cfg.training.seed)
    assert len(runs) == 14 and cl.folds == 4
    assert {name for _, _, name in runs} >= {"noise5", "noise50", "clean_seed1", "noise20_cleanlab_seed1",
                                             "noise20_cleanlab_remove", "noise40_cleanlab_remove"}
    # the long setting (>= 85 % clean) layered on it is the speedrun's 60-minute recipe, schedule and all
    speedrun_long = yaml.safe_load((PROJECT_ROOT / "experiments" / "imagenette_speedrun" / "long.yaml").read_text())
    long_yaml = cpu.with_name("imagenette_long.yaml")
    long_cfg, long_study, _ = parse_study_config(STUDY_SCRIPT.parent, ["--data.root", str(tmp_path), "--config",
                                                                       str(cpu), "--config", str(long_yaml)])
    assert long_cfg.training.epochs == speedrun_long["training"]["epochs"] == 30
    assert (long_cfg.data.ramp_start_epoch, long_cfg.data.ramp_end_epoch) == (
        speedrun_long["data"]["ramp_start_epoch"], speedrun_long["data"]["ramp_end_epoch"])
    assert long_cfg.training.label_smoothing == 0 and long_study == study
    # and the 30-minute setting is the speedrun's config.yaml: 15 epochs, its ramp, BlurPool
    speedrun = yaml.safe_load((PROJECT_ROOT / "experiments" / "imagenette_speedrun" / "config.yaml").read_text())
    b15_yaml = cpu.with_name("imagenette_b15.yaml")
    b15_cfg, b15_study, _ = parse_study_config(STUDY_SCRIPT.parent, ["--data.root", str(tmp_path), "--config",
                                                                     str(cpu), "--config", str(b15_yaml)])
    assert b15_cfg.training.epochs == speedrun["training"]["epochs"] == 15 and b15_study == study
    assert (b15_cfg.data.ramp_start_epoch, b15_cfg.data.ramp_end_epoch) == (
        speedrun["data"]["ramp_start_epoch"], speedrun["data"]["ramp_end_epoch"])
    assert b15_cfg.model.blurpool == speedrun["model"]["blurpool"] is True and long_cfg.model.blurpool
    assert not cfg.model.blurpool  # the study as it ran


def test_comparisons_drop_and_recovered_fraction():
    rows = [dict(noise_rate=0.0, cleaning="none", top1=80.0), dict(noise_rate=0.2, cleaning="none", top1=70.0),
            dict(noise_rate=0.2, cleaning="simulated 80%", top1=77.5), dict(noise_rate=0.4, cleaning="none", top1=81.0),
            dict(noise_rate=0.4, cleaning="cleanlab", top1=81.0)]
    add_comparisons(rows)
    assert [r["drop_from_clean"] for r in rows] == [0.0, 10.0, 2.5, -1.0, -1.0]
    assert rows[2]["recovered"] == pytest.approx(0.75)
    assert math.isnan(rows[1]["recovered"]) and math.isnan(rows[4]["recovered"])  # no drop: nothing to recover


@pytest.mark.slow
def test_study_smoke_run_on_the_bundled_sample(tmp_path):
    out = tmp_path / "study"
    args = ["--logging.output_dir", str(out), "--logging.progress_bar", "false",
            "--data.index_cache_dir", str(tmp_path / "cache"), "--data.fraction", "0.25", "--data.val_fraction",
            "0.25", "--data.num_workers", "0", "--data.image_size", "32", "--data.val_image_size", "32",
            "--model.name", "resnet18", "--training.epochs", "1", "--training.batch_size", "8",
            "--cl.folds", "2", "--study.seeds", "[0, 1]", "--study.repeat_experiments", "[clean]",
            "--study.noise_seed", "3"]
    proc = run_script(STUDY_SCRIPT, args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "BUNDLED SAMPLE" in proc.stderr

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["experiment"] for r in rows] == ["clean", "noise20", "noise20_sim80", "noise40", "noise40_sim60",
                                               "noise20_cleanlab", "noise40_cleanlab"]
    assert list(rows[0]) == list(CSV_COLUMNS)
    n = int(rows[0]["train_images"])
    assert n == 150  # 25 % of 60 images in each of 10 classes
    flipped = {0.2: round(0.2 * n), 0.4: round(0.4 * n)}
    expected_restored = {"noise20_sim80": round(0.8 * flipped[0.2]), "noise40_sim60": round(0.6 * flipped[0.4])}
    for r in rows:
        rate = float(r["noise_rate"])
        assert int(r["flipped"]) == flipped.get(rate, 0), r
        assert int(r["restored"]) == expected_restored.get(r["experiment"], 0), r
        assert 0 <= float(r["top1"]) <= float(r["top5"]) <= 100
        assert 0 < float(r["run_time_s"]) < float(r["train_time_s"])  # one session: training within the row's time
        run = out / r["experiment"]
        ids, labels = np.load(run / "train_ids.npy"), np.load(run / "train_labels.npy")
        info = json.loads((run / "labels.json").read_text())
        assert ids.size == labels.size == int(r["train_images"]) == info["num_samples"]
        assert int(r["wrong_labels"]) == info["num_wrong_labels"] == int(np.load(run / "noise_mask.npy").sum())
        if "cleanlab" in r["experiment"]:
            det = run / "detection"
            removed = [s for s in (det / "removal_list.txt").read_text().splitlines() if s and s[0] != "#"]
            relabelled = json.loads((det / "relabel_map.json").read_text())
            assert int(r["removed"]) == len(removed) and int(r["relabelled"]) == len(relabelled)
            assert int(r["train_images"]) == n - len(removed)
            assert not set(map(int, removed)) & set(ids.tolist())
            metrics = json.loads((det / "detection_metrics.json").read_text())
            assert float(r["precision"]) == pytest.approx(metrics["precision"])
            assert metrics["tp"] + metrics["fn"] == flipped[rate]
            assert r["recovered"] != "" or float(rows[1 if rate == 0.2 else 3]["drop_from_clean"]) <= 0
        else:
            assert int(r["train_images"]) == n and r["precision"] == ""
            assert int(r["wrong_labels"]) == int(r["flipped"]) - int(r["restored"])
    assert float(rows[0]["drop_from_clean"]) == 0
    metrics_20 = json.loads((out / "noise20_cleanlab" / "detection" / "detection_metrics.json").read_text())
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert [r["run"] for r in runs[-2:]] == ["noise40_cleanlab", "clean_seed1"] and runs[-1]["seed"] == "1"
    clean = [float(r["top1"]) for r in runs if r["experiment"] == "clean"]
    assert float(rows[0]["top1"]) == pytest.approx(sum(clean) / 2) and rows[0]["seeds"] == "0 1"
    assert (out / "clean_seed1" / "result.json").is_file()
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == 8  # header + 7 rows
    assert (out / "results.png").stat().st_size > 5000

    # a second run trains nothing; changed settings are refused rather than mixed into the table
    again = run_script_in_process(STUDY_SCRIPT, args)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("not rerun") == 8
    with open(out / "results.csv") as f:
        assert [r["top1"] for r in csv.DictReader(f)] == [r["top1"] for r in rows]
    # the detection ablation rescores the finished fold models with flip TTA and sweeps the rules; nothing trains
    det = out / "noise20_cleanlab" / "detection"
    model_times = sorted(p.stat().st_mtime_ns for p in det.glob("fold_*/models/*.pt"))
    ablation = run_script_in_process(ABLATION_SCRIPT,
                                     args + ["--experiment", "noise20_cleanlab", "--hflip", "--in_sample"])
    assert ablation.returncode == 0, ablation.stderr[-4000:]
    assert sorted(p.stat().st_mtime_ns for p in det.glob("fold_*/models/*.pt")) == model_times
    assert len(list(det.glob("fold_*/pred_probs_hflip.npy"))) == 2
    with open(det / "ablation.csv") as f:
        sweep = list(csv.DictReader(f))
    per_scoring = len(FILTER_METHODS) + len(LABEL_QUALITY_SCORES)
    assert len(sweep) == 5 * per_scoring  # (K-fold, in-sample) x (centre crop, flip TTA), and their mean
    assert sum(r["scoring"].startswith("in-sample (noise20)") for r in sweep) == 2 * per_scoring
    plain_default = next(r for r in sweep if r["rule"] == "filter_by=prune_by_noise_rate")  # the study's own rule
    assert float(plain_default["precision"]) == pytest.approx(metrics_20["precision"])
    assert float(plain_default["recall"]) == pytest.approx(metrics_20["recall"])
    assert sweep[-1]["scoring"] == "mean of every probability set above" and (det / "ablation.md").is_file()
    wrong_row = run_script_in_process(ABLATION_SCRIPT, args + ["--experiment", "noise20"])
    assert wrong_row.returncode == 2 and "not a cleanlab row" in wrong_row.stderr

    # the other cleaning policies on the same detections: every flagged sample removed, or kept on soft labels, no
    # fold model retrained; and the two halves of its gap to the clean row (removals alone, wrong labels alone),
    # told apart with the truth. At 20 % only (40 % runs the same code), which keeps the 20 % rows' results
    policies = run_script_in_process(STUDY_SCRIPT, args + ["--study.noise_rates", "[0.2]",
                                                    "--study.simulated_detection_rates", "[0.8]",
                                                    "--study.cleanlab_remove_only", "true",
                                                    "--study.cleanlab_soft_labels", "true",
                                                    "--study.cleanlab_gap_rows", "true"])
    assert policies.returncode == 0, policies.stderr[-4000:]
    assert policies.stderr.count("not rerun") == 5  # clean (2 seeds), noise20, noise20_sim80, noise20_cleanlab
    assert sorted(p.stat().st_mtime_ns for p in det.glob("fold_*/models/*.pt")) == model_times
    with open(out / "results.csv") as f:
        by_name = {r["experiment"]: r for r in csv.DictReader(f)}
    reused = rows[:3] + rows[5:6]
    assert [by_name[r["experiment"]]["top1"] for r in reused] == [r["top1"] for r in reused]
    pct = "20"
    rule, remove = by_name[f"noise{pct}_cleanlab"], by_name[f"noise{pct}_cleanlab_remove"]
    removals, labels = by_name[f"noise{pct}_cleanlab_gap_removals"], by_name[f"noise{pct}_cleanlab_gap_labels"]
    assert (int(removals["train_images"]), int(removals["wrong_labels"])) == (int(rule["train_images"]), 0)
    assert (int(labels["train_images"]), int(labels["wrong_labels"])) == (n, int(rule["wrong_labels"]))
    assert int(removals["removed"]) == int(rule["removed"]) and int(labels["relabelled"]) == int(rule["relabelled"])
    assert labels["recovered"] != "" or float(by_name[f"noise{pct}"]["drop_from_clean"]) <= 0
    rule_ids, rule_labels = (np.load(out / f"noise{pct}_cleanlab" / f) for f in ("train_ids.npy",
                                                                                  "train_labels.npy"))
    np.testing.assert_array_equal(np.load(out / f"noise{pct}_cleanlab_gap_removals" / "train_ids.npy"), rule_ids)
    gap_ids, gap_given = (np.load(out / f"noise{pct}_cleanlab_gap_labels" / f) for f in ("train_ids.npy",
                                                                                          "train_labels.npy"))
    clean_ids, true_labels = (np.load(out / "clean" / f) for f in ("train_ids.npy", "train_labels.npy"))
    np.testing.assert_array_equal(gap_ids, clean_ids)
    kept = np.isin(gap_ids, rule_ids)
    np.testing.assert_array_equal(gap_given[kept], rule_labels)  # same order: kept ids keep their place
    np.testing.assert_array_equal(gap_given[~kept], true_labels[~kept])  # the removed ones: their true labels
    assert int(remove["relabelled"]) == 0 and remove["cleaning"] == "cleanlab, remove only"
    assert int(remove["removed"]) == int(rule["removed"]) + int(rule["relabelled"])
    assert (remove["precision"], remove["recall"]) == (rule["precision"], rule["recall"])
    assert int(remove["train_images"]) == n - int(remove["removed"])
    rule_det = out / f"noise{pct}_cleanlab" / "detection"
    remove_det = out / f"noise{pct}_cleanlab_remove" / "detection"
    links = sorted(remove_det.glob("fold_*"))  # the twin's fold runs, linked: the label review finds its models
    assert len(links) == 2 and all(p.is_symlink() for p in links)
    assert (remove_det / "fold_1" / "models").resolve() == (rule_det / "fold_1" / "models").resolve()
    np.testing.assert_array_equal(np.load(remove_det / "folds.npy"), np.load(rule_det / "folds.npy"))
    # soft labels: every image kept, each flagged one trains on its out-of-sample probabilities
    soft = by_name[f"noise{pct}_cleanlab_soft"]
    assert soft["cleaning"] == "cleanlab, soft labels" and (soft["precision"], soft["recall"]) == (
        rule["precision"], rule["recall"])
    assert (int(soft["train_images"]), int(soft["removed"])) == (n, 0)
    with open(rule_det / "label_issues.csv") as f:
        flagged_ids = [int(r["sample_id"]) for r in csv.DictReader(f)]
    issues = np.isin(np.load(rule_det / "train_ids.npy"), flagged_ids)
    assert int(soft["relabelled"]) == int(issues.sum()) == int(rule["removed"]) + int(rule["relabelled"])
    targets = np.load(out / f"noise{pct}_cleanlab_soft" / "soft_targets.npz")
    probs = np.load(rule_det / "pred_probs.npy")
    np.testing.assert_array_equal(targets["rows"] >= 0, issues)
    np.testing.assert_allclose(targets["probs"], probs[issues])
    soft_ids, soft_labels = (np.load(out / f"noise{pct}_cleanlab_soft" / f) for f in ("train_ids.npy",
                                                                                     "train_labels.npy"))
    given = np.load(rule_det / "given_labels.npy")
    np.testing.assert_array_equal(soft_ids, np.load(rule_det / "train_ids.npy"))
    np.testing.assert_array_equal(soft_labels, np.where(issues, probs.argmax(1), given))
    assert int(soft["wrong_labels"]) == int((soft_labels != true_labels).sum())
    # a second seed's detection on the same flips joins an ensemble; the remove-only twin (the same folds) may not
    seeded = args + ["--study.repeat_experiments", "[clean, noise20_cleanlab]"]
    assert run_script_in_process(STUDY_SCRIPT, seeded).returncode == 0  # trains noise20_cleanlab_seed1 alone
    ensemble = run_script_in_process(ABLATION_SCRIPT, seeded + ["--experiment", "noise20_cleanlab", "--ensemble",
                                                         "noise20_cleanlab_seed1"])
    assert ensemble.returncode == 0, ensemble.stderr[-4000:]
    with open(det / "ablation.csv") as f:
        sweep = list(csv.DictReader(f))
    assert len(sweep) == 3 * per_scoring and "x 2 seeds" in sweep[per_scoring]["scoring"]
    both = np.mean([np.load(det / "pred_probs.npy"),
                    np.load(out / "noise20_cleanlab_seed1" / "detection" / "pred_probs.npy")], axis=0)
    expected = detection_sweep(np.load(det / "given_labels.npy"), both, np.load(det / "noise_mask.npy"))
    for got in (sweep[per_scoring:2 * per_scoring], sweep[2 * per_scoring:]):  # the ensemble; the overall mean
        assert [float(r["precision"]) for r in got] == pytest.approx([e["precision"] for e in expected])
    twin = run_script_in_process(ABLATION_SCRIPT, args + ["--study.cleanlab_remove_only", "true", "--ensemble",
                                                   "noise20_cleanlab_remove"])
    assert twin.returncode == 2 and "shares its fold models" in twin.stderr
    other_rate = run_script_in_process(ABLATION_SCRIPT, args + ["--ensemble", "noise40_cleanlab"])
    assert other_rate.returncode == 2 and "not a cleanlab row at noise rate 0.2" in other_rate.stderr

    # the small files go to git; on a fresh machine they make the same command skip the finished rows
    kept, fresh = tmp_path / "kept", tmp_path / "fresh"
    assert run_script_in_process(KEEP_SCRIPT, [str(out), str(kept)]).returncode == 0
    assert (kept / "noise20_cleanlab" / "detection" / "ablation.csv").is_file()
    assert not list(kept.rglob("*.pt"))
    # each detection's fold probabilities travel too (not the models, nor the remove-only twins' links to them)
    real_folds = [f for f in out.glob("*/detection/fold_*") if not f.is_symlink()]
    assert len(real_folds) == 6  # noise20_cleanlab, noise40_cleanlab, noise20_cleanlab_seed1: 2 folds each
    kept_folds = sorted(p.relative_to(out) for f in real_folds for p in f.iterdir()
                        if p.suffix == ".npy" or p.name == "fold_settings.json")
    assert sorted(p.relative_to(kept) for p in kept.glob("*/detection/fold_*/*")) == kept_folds
    assert sorted(p.relative_to(kept) for p in kept.rglob("*.npy")) == [p for p in kept_folds if p.suffix == ".npy"]
    assert len(kept_folds) == 6 * 3 + 2  # settings, ids, probabilities; and the flip-TTA probabilities of the ablation
    np.testing.assert_array_equal(np.load(kept / "noise20_cleanlab" / "detection" / "fold_1" / "pred_probs.npy"),
                                  np.load(det / "fold_1" / "pred_probs.npy"))
    capped = run_script_in_process(KEEP_SCRIPT, [str(out), str(tmp_path / "capped"), "--max_fold_mb", "0.001"])
    left_out = [line for line in capped.stdout.splitlines() if line.startswith("left out")]
    assert capped.returncode == 0 and sum("/detection/fold_" in line for line in left_out) == 6, capped.stdout
    assert all("/detection/fold_" in line or "label_issues.csv" in line or "soft_targets.npz" in line
               for line in left_out), left_out  # a fold goes whole or not; of a row, only the files that grow
    assert (kept / "noise20_cleanlab_soft" / "soft_targets.npz").is_file()
    assert not (tmp_path / "capped" / "noise20_cleanlab_soft" / "soft_targets.npz").exists()
    assert not list((tmp_path / "capped").glob("*/detection/fold_*"))
    assert (tmp_path / "capped" / "noise20_cleanlab" / "result.json").is_file()
    assert run_script_in_process(KEEP_SCRIPT, [str(fresh), str(kept), "--restore"]).returncode == 0
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()) == \
        sorted([*(p.relative_to(out) for p in out.glob("*/result.json")), *kept_folds])
    skipped = run_script_in_process(STUDY_SCRIPT, [*args[:1], str(fresh), *args[2:]])
    assert skipped.returncode == 0 and skipped.stderr.count("not rerun") == 8, skipped.stderr[-4000:]
    # the tables alone, from the kept result.json files (no model there), leaving out a row that never ran
    (fresh / "results.csv").unlink()
    settings = (fresh / "study.json").read_text()
    reported = run_script_in_process(STUDY_SCRIPT, [*args[:1], str(fresh), *args[2:], "--study.report_only", "true",
                                             "--study.noise_only_rates", "[0.5]"])
    assert reported.returncode == 0 and "noise50: not finished" in reported.stderr, reported.stderr[-4000:]
    assert not (fresh / "noise50").exists() and not list(fresh.rglob("*.pt"))
    assert (fresh / "study.json").read_text() == settings  # the study's own record is left alone
    with open(fresh / "results.csv") as f:
        assert [r["top1"] for r in csv.DictReader(f)] == [r["top1"] for r in rows]
    assert run_script_in_process(KEEP_SCRIPT, [str(tmp_path / "nowhere"), str(kept)]).returncode == 2

    # the ablation runs there too, from the kept fold probabilities alone
    fresh_ablation = run_script_in_process(ABLATION_SCRIPT, [*args[:1], str(fresh), *args[2:], "--experiment",
                                                      "noise20_cleanlab"])
    assert fresh_ablation.returncode == 0, fresh_ablation.stderr[-4000:]
    with open(fresh / "noise20_cleanlab" / "detection" / "ablation.csv") as f:
        fresh_default = next(r for r in csv.DictReader(f) if r["rule"] == "filter_by=prune_by_noise_rate")
    assert float(fresh_default["precision"]) == pytest.approx(metrics_20["precision"])
    # its flip-TTA probabilities were never made; no model here
    no_models = run_script_in_process(ABLATION_SCRIPT, [*args[:1], str(fresh), *args[2:], "--experiment",
                                                        "noise40_cleanlab", "--hflip"])
    assert no_models.returncode == 2 and "--hflip needs noise40_cleanlab's fold models" in no_models.stderr
    # two detections compared on their shared folds: all of them here, so each alone is the detection itself and
    # their mean the ablation's 2-seed ensemble; a detection with one fold unfinished narrows them to the other
    detections = [f"s0={fresh / 'noise20_cleanlab' / 'detection'}",
                  f"s1={fresh / 'noise20_cleanlab_seed1' / 'detection'}"]
    compared = run_script_in_process(COMPARE_SCRIPT,
                                     args + ["--detection", *detections, "--out", str(tmp_path / "cmp")])
    assert compared.returncode == 0, compared.stderr[-4000:]
    with open(tmp_path / "cmp" / "compare_folds.csv") as f:
        by_models = {}
        for r in csv.DictReader(f):
            by_models.setdefault(r["fold_models"], []).append(r)
    assert list(by_models) == ["s0", "s1", "mean of s0 + s1"] and "folds [1, 2] of 2" in compared.stdout
    s0_default = next(r for r in by_models["s0"] if r["rule"] == "filter_by=prune_by_noise_rate")
    assert float(s0_default["precision"]) == pytest.approx(metrics_20["precision"])
    assert [float(r["precision"]) for r in by_models["mean of s0 + s1"]] == \
        pytest.approx([e["precision"] for e in expected])
    partial = tmp_path / "partial"
    shutil.copytree(fresh / "noise20_cleanlab_seed1" / "detection", partial)
    (partial / "fold_1" / "pred_probs.npy").unlink()
    narrowed = run_script_in_process(COMPARE_SCRIPT, args + ["--detection", detections[0], f"p={partial}", "--out",
                                                      str(tmp_path / "cmp")])
    assert narrowed.returncode == 0 and "folds [1] of 2" in narrowed.stdout, narrowed.stderr[-4000:]
    other = run_script_in_process(COMPARE_SCRIPT, args + ["--detection",  # its folds hold the 40 % flips
                                                          f"x={fresh / 'noise40_cleanlab' / 'detection'}",
                                                          "--out", str(tmp_path / "cmp")])
    assert other.returncode == 2 and "made on other samples or labels" in other.stderr

    changed = run_script_in_process(STUDY_SCRIPT, args[:-1] + ["4"])
    assert changed.returncode == 2 and "other settings" in changed.stderr
    # a cleanlab row redone on the fresh machine (no fold model there) reuses the kept fold probabilities
    (fresh / "noise20_cleanlab" / "result.json").unlink()
    redone = run_script_in_process(STUDY_SCRIPT, [*args[:1], str(fresh), *args[2:]])
    assert redone.returncode == 0 and redone.stderr.count("/2: reusing") == 2, redone.stderr[-4000:]
    assert "unchecked" not in redone.stderr and not list((fresh / "noise20_cleanlab" / "detection").rglob("*.pt"))
    assert json.loads((fresh / "noise20_cleanlab" / "result.json").read_text())["row"]["precision"] == \
        pytest.approx(metrics_20["precision"])

    # stronger fold models for the detection only (--study.fold_config): a cleanlab row made without it is refused;
    # redone, its folds train 2 epochs while the row itself (and every other row, skipped) keeps 1
    fold_yaml = tmp_path / "folds.yaml"
    fold_yaml.write_text("training:\n  epochs: 2\n")
    with_folds = [*args[:1], str(fresh), *args[2:], "--study.fold_config", str(fold_yaml),
                  "--study.noise_rates", "[0.2]", "--study.simulated_detection_rates", "[0.8]"]
    refused = run_script_in_process(STUDY_SCRIPT, with_folds)
    assert refused.returncode == 2 and "fold_config: (none) -> (set)" in refused.stderr, refused.stderr[-4000:]
    (fresh / "noise20_cleanlab" / "result.json").unlink()
    stale = run_script_in_process(STUDY_SCRIPT, with_folds)  # the kept folds' records say 1 epoch: not reused for 2
    assert stale.returncode == 2 and "made with other settings" in stale.stderr, stale.stderr[-4000:]
    shutil.rmtree(fresh / "noise20_cleanlab" / "detection")
    # the row's own checkpoint (trained above on the 1-epoch folds' cleaning) holds other labels: not reused
    row_labels = [np.load(fresh / "noise20_cleanlab" / f) for f in ("train_ids.npy", "train_labels.npy")]
    other_labels = run_script_in_process(STUDY_SCRIPT, with_folds)
    new_labels = [np.load(fresh / "noise20_cleanlab" / f) for f in ("train_ids.npy", "train_labels.npy")]
    assert labels_digest(*new_labels) != labels_digest(*row_labels), "the 2-epoch folds must clean otherwise"
    assert other_labels.returncode == 2, other_labels.stderr[-4000:]
    assert "was trained on other labels" in other_labels.stderr
    assert f"delete {fresh / 'noise20_cleanlab' / 'models'} to train this run afresh" in other_labels.stderr
    shutil.rmtree(fresh / "noise20_cleanlab" / "models")
    folds = run_script_in_process(STUDY_SCRIPT, with_folds)
    assert folds.returncode == 0 and folds.stderr.count("not rerun") == 4, folds.stderr[-4000:]
    det15 = fresh / "noise20_cleanlab" / "detection"
    for k in range(2):
        assert yaml.safe_load((det15 / f"fold_{k}" / "logs" / "config.yaml").read_text())["training"]["epochs"] == 2
        records = (det15 / f"fold_{k}" / "logs" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in records] == [1, 2]  # one record per epoch: both epochs trained
    row_cfg = yaml.safe_load((fresh / "noise20_cleanlab" / "logs" / "config.yaml").read_text())
    assert row_cfg["training"]["epochs"] == 1
    saved = json.loads((fresh / "noise20_cleanlab" / "result.json").read_text())
    assert saved["fingerprint"]["fold_config"] == {"training": {"epochs": 2}}


def test_a_finished_run_is_reused_unless_a_setting_it_used_changed():
    from core.config import settings_conflicts

    saved = {"config": {"training": {"lr": 0.1, "epochs": 3}}, "noise_seed": 0}
    assert settings_conflicts(saved, {"config": {"training": {"lr": 0.1, "epochs": 3, "new_field": None}},
                                      "noise_seed": 0}) == []
    assert settings_conflicts(saved, {"config": {"training": {"lr": 0.2, "epochs": 3}}, "noise_seed": 0}) == [
        "config/training/lr: 0.1 -> 0.2"]
    # a top-level key on one side only (here a --study.fold_config the saved row was not made with) is a change
    assert settings_conflicts(saved, {**saved, "fold_config": {"training": {"epochs": 15}}}) == [
        "fold_config: (none) -> (set)"]


def test_a_two_round_row_is_not_taken_for_a_one_round_one_and_its_round_folds_are_kept(tmp_path):
    import importlib.util

    from core.config import settings_conflicts
    from services.label_issues import ConfidentLearningConfig
    from services.noise_study import ExperimentSpec, _fingerprint

    cfg, study, _ = parse_study_config(STUDY_SCRIPT.parent, ["--logging.output_dir", str(tmp_path)])
    spec = ExperimentSpec("noise20_cleanlab", "20 % + cleanlab", noise_rate=0.2, cleanlab=True)
    one, two = (_fingerprint(cfg, spec, study, ConfidentLearningConfig(rounds=r)) for r in (1, 2))
    assert "detection_rounds" not in one  # rows saved before --cl.rounds existed still match one round
    assert "detection_rounds: (none) -> (set)" in settings_conflicts(one, two)

    spec_ = importlib.util.spec_from_file_location("keep_results", KEEP_SCRIPT)
    keep_results = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(keep_results)
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    (runs / "study.json").parent.mkdir()
    (runs / "study.json").write_text("{}")
    for row in ("noise20_cleanlab", "noise20_cleanlab_remove"):
        (runs / row).mkdir()
        (runs / row / "labels.json").write_text("{}")
    for fold in ("fold_0", "round_2/fold_0"):
        d = runs / "noise20_cleanlab" / "detection" / fold
        d.mkdir(parents=True)
        for f in ("pred_probs.npy", "scored_ids.npy", "fold_settings.json"):
            (d / f).write_text(fold)
    (runs / "noise20_cleanlab" / "detection" / "round_2" / "fold_1").mkdir()  # unfinished: nothing to keep
    for row in ("noise20_cleanlab", "noise20_cleanlab_remove"):  # the first finished, the second still training
        (runs / row / "logs").mkdir()
        (runs / row / "logs" / "metrics.jsonl").write_text("{}")
        (runs / row / "detection").mkdir(exist_ok=True)
        (runs / row / "detection" / "removal_list.txt").write_text("")
    (runs / "noise20_cleanlab" / "result.json").write_text("{}")
    (runs / "noise20_cleanlab" / "detection" / "ensemble.json").write_text("{}")  # an ensemble's members
    (runs / "noise20_cleanlab_remove" / "detection" / "round_2").symlink_to(
        runs / "noise20_cleanlab" / "detection" / "round_2", target_is_directory=True)
    copied = {p.relative_to(kept).as_posix() for p in keep_results.keep(runs, kept)}
    assert "noise20_cleanlab/detection/round_2/fold_0/pred_probs.npy" in copied
    assert "noise20_cleanlab/detection/fold_0/pred_probs.npy" in copied
    assert not any(p.startswith("noise20_cleanlab_remove/detection/round") for p in copied)  # a link's target is kept
    assert {"noise20_cleanlab/logs/metrics.jsonl", "noise20_cleanlab_remove/detection/removal_list.txt",
            "noise20_cleanlab/detection/ensemble.json"} <= copied
    assert "noise20_cleanlab_remove/logs/metrics.jsonl" not in copied  # an unfinished row's partial curve
    fresh = tmp_path / "fresh"
    restored = {p.relative_to(fresh).as_posix() for p in keep_results.restore(kept, fresh)}
    assert {f"noise20_cleanlab/detection/round_2/fold_0/{f}" for f in keep_results.FOLD_FILES[:3]} <= restored
    assert (fresh / "noise20_cleanlab/detection/round_2/fold_0/pred_probs.npy").read_text() == "round_2/fold_0"


def test_an_aum_row_is_not_taken_for_a_k_fold_one_and_its_run_is_kept(tmp_path):
    import importlib.util

    from core.config import settings_conflicts
    from services.label_issues import AUM_RUN, ConfidentLearningConfig
    from services.noise_study import ExperimentSpec, _fingerprint, detection_folds_dir

    cfg, study, _ = parse_study_config(STUDY_SCRIPT.parent, ["--logging.output_dir", str(tmp_path)])
    spec = ExperimentSpec("noise20_cleanlab", "20 % + cleanlab", noise_rate=0.2, cleanlab=True)
    k_fold, aum = (_fingerprint(cfg, spec, study, ConfidentLearningConfig(scores=s)) for s in ("k_fold", "aum"))
    assert "detection_scores" not in k_fold  # rows saved before --cl.scores existed still match K-fold scores
    assert "detection_scores: (none) -> (set)" in settings_conflicts(k_fold, aum)
    other = _fingerprint(cfg, spec, study, ConfidentLearningConfig(scores="aum", aum_threshold=1.0))
    assert settings_conflicts(aum, other)
    # a count-cut row is not taken for a threshold one, either way round
    count = _fingerprint(cfg, spec, study, ConfidentLearningConfig(scores="aum", aum_fraction=0.2))
    assert "aum_fraction: (none) -> (set)" in settings_conflicts(aum, count)
    assert "aum_fraction: (set) -> (none)" in settings_conflicts(count, aum)
    assert "aum_fraction" not in aum  # a row saved before --cl.aum_fraction existed still matches
    saved = json.loads(json.dumps(aum))
    del saved["cl"]["aum_fraction"]
    assert settings_conflicts(saved, aum) == []
    # the remove-only row shares the threshold row's AUM run, as it shares K-fold runs
    assert detection_folds_dir(tmp_path, "noise20_cleanlab_remove_seed1") == \
        tmp_path / "noise20_cleanlab_seed1" / "detection"

    spec_ = importlib.util.spec_from_file_location("keep_results", KEEP_SCRIPT)
    keep_results = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(keep_results)
    runs, kept = tmp_path / "runs", tmp_path / "kept"
    run = runs / "noise20_cleanlab" / "detection" / AUM_RUN
    (run / "logs").mkdir(parents=True)
    (runs / "study.json").write_text("{}")
    (runs / "noise20_cleanlab" / "labels.json").write_text("{}")
    files = ("fold_settings.json", "scored_ids.npy", "pred_probs.npy", "aum.npy", "logs/dynamics.npz")
    for f in files:
        (run / f).write_text(f)
    (run / "models").mkdir()
    (run / "models" / "last.pt").write_text("a checkpoint: not kept")
    copied = {p.relative_to(kept).as_posix() for p in keep_results.keep(runs, kept)}
    assert {f"noise20_cleanlab/detection/{AUM_RUN}/{f}" for f in files} <= copied
    assert not any(p.endswith(".pt") for p in copied)
    fresh = tmp_path / "fresh"
    restored = {p.relative_to(fresh).as_posix() for p in keep_results.restore(kept, fresh)}
    assert {f"noise20_cleanlab/detection/{AUM_RUN}/{f}" for f in files} <= restored


def test_an_ensemble_row_is_fingerprinted_by_its_members_contents_and_export_writes_them(tmp_path):
    from core.config import settings_conflicts
    from experiments.label_noise_study.compare_folds import kfold_probs
    from experiments.label_noise_study.export_probs import run as export_probs
    from services.detection_ensemble import check_study_members, member_probs
    from services.label_issues import ConfidentLearningConfig
    from services.noise_study import ExperimentSpec, _fingerprint, study_noise, study_setup
    from test_label_issues import _fake_detection

    flags = ["--logging.output_dir", str(tmp_path / "study"), "--logging.progress_bar", "false",
             "--data.index_cache_dir", str(tmp_path / "cache"), "--data.fraction", "0.25"]
    s = study_setup(STUDY_SCRIPT.parent, flags, "", 0.2)
    cfg, study, cl, base = s.cfg, s.study, s.cl, s.data
    ids, given = base.train_ids, s.noisy.labels
    _fake_detection(tmp_path / "kept", ids, given, 2, [0, 1], classes=base.num_classes)
    # a kept detection (fold files only) becomes a member: its folds checked, its whole-set files written
    assert export_probs([*flags, "--noise_rate", "0.2", "--detection", str(tmp_path / "kept"),
                         "--out", str(tmp_path / "member")]) == 0
    probs = kfold_probs(tmp_path / "kept", ids, given, 2, cl.fold_seed, cl.filter_by)
    np.testing.assert_array_equal(member_probs(tmp_path / "member", ids, given), probs)
    with pytest.raises(ValueError, match="made on other samples or labels"):  # another noise rate's labels
        export_probs([*flags, "--noise_rate", "0.4", "--detection", str(tmp_path / "kept"),
                      "--out", str(tmp_path / "other")])

    # a study checks its one cleanlab detection's members before anything trains
    member = [tmp_path / "member"]
    check_study_members(member, {(0.2, 0)}, ids, {0.2: given})
    with pytest.raises(ValueError, match=r"serves one cleanlab detection, and this study has 2 \(0.2 noise seed 0, "
                                         r"0.2 noise seed 1\)"):
        check_study_members(member, {(0.2, 0), (0.2, 1)}, ids, {0.2: given})
    with pytest.raises(ValueError, match="checked other labels"):
        check_study_members(member, {(0.4, 0)}, ids, {0.4: study_noise(base, 0.4, study).labels})

    spec = ExperimentSpec("noise20_cleanlab", "20 % + cleanlab", noise_rate=0.2, cleanlab=True)
    one = _fingerprint(cfg, spec, study, ConfidentLearningConfig())
    ens = _fingerprint(cfg, spec, study, ConfidentLearningConfig(ensemble=(str(tmp_path / "member"),)))
    assert "ensemble" not in one and "ensemble" not in ens["cl"]  # no paths: the same members elsewhere match
    assert "ensemble: (none) -> (set)" in settings_conflicts(one, ens)
    shutil.copytree(tmp_path / "member", tmp_path / "moved")
    assert not settings_conflicts(ens, _fingerprint(cfg, spec, study, ConfidentLearningConfig(
        ensemble=(str(tmp_path / "moved"),))))
    np.save(tmp_path / "moved" / "pred_probs.npy", np.roll(probs, 1, axis=1))  # other probabilities: a change
    assert settings_conflicts(ens, _fingerprint(cfg, spec, study, ConfidentLearningConfig(
        ensemble=(str(tmp_path / "moved"),))))
