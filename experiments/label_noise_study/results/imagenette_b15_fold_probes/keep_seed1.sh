#!/bin/bash
# Issue 13: keep what the seed-1 8-fold detection has finished, and compare it. That detection is the study command
# of `run.sh k8` run with --study.seeds [0,1] (row noise20_cleanlab_seed1 of $RUNS/noise_study_fold_k8; README.md
# here, "More folds at a second training seed"). Run it after each fold and once the row has finished:
#   DATA=/abs/data/root bash experiments/label_noise_study/results/imagenette_b15_fold_probes/keep_seed1.sh
# from the repository root (RUNS, REPO, DATA as in run.sh; DATA as the kept rows recorded it). It copies what
# keep_results.py keeps of that row (each finished fold's pred_probs.npy, scored_ids.npy, fold_settings.json; once the
# row has finished, its result.json, labels, curves, manifest and detection metrics) into k8_seed1/, then writes
# compare_k8_seed1/compare_folds.md (compare_folds.py: the b15 detections at seeds 0 and 1, K = 8 at seed 0 and
# this one, on the samples every one of them scored) and compare_k8_seed1/bootstrap.txt (bootstrap.py: each
# detection's bound with its 95 % interval, and this one minus each other one, 2,000 paired resamples).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_fold_k8
P=$K/imagenette_b15_fold_probes
KEPT=$(mktemp -d)
trap 'rm -rf "$KEPT"' EXIT
python "$S/keep_results.py" "$OUT" "$KEPT"
mkdir -p "$P/k8_seed1" && cp -r "$KEPT/noise20_cleanlab_seed1/." "$P/k8_seed1/"
FLAGS=(--data.root "${DATA:-../shared/data/imagenette2-224}" "${B15_FLAGS[@]}")
DETECTIONS=("b15_s0=$K/imagenette_b15/noise20_cleanlab/detection"
            "b15_s1=$K/imagenette_b15/noise20_cleanlab_seed1/detection"
            "k8=$P/k8/detection" "k8_s1=$P/k8_seed1/detection")
python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" --out "$P/compare_k8_seed1"
python "$P/bootstrap.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" > "$P/compare_k8_seed1/bootstrap.txt"
cat "$P/compare_k8_seed1/bootstrap.txt"
