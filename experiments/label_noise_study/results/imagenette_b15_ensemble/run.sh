#!/bin/bash
# Issue 13: the 20 % + cleanlab row cleaned on an ensemble of three kept 4-fold detections (--cl.ensemble): the
# mean of the out-of-sample probabilities of the b15 detection (seed 0, the row's own folds), the seed-1 detection
# and the second round of the seed-0 detection (../imagenette_b15_rounds/), then the study's rule as it stands
# (prune_by_noise_rate, relabel at >= 0.8, remove the rest); b15 recipe, seed 0. No fold model trains: it restores
# the b15 study's kept rows into $RUNS/noise_study_b15_ens (clean, noise20 and noise20_sim80 are then skipped; the
# noise20_cleanlab row's one-detection result.json is deleted, the row's fold files reused), writes the two other
# detections' whole-set files with export_probs.py, trains the cleaned row once and keeps the small files here.
#   bash experiments/label_noise_study/results/imagenette_b15_ensemble/run.sh
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders, DATA the
# dataset (made absolute: the kept rows are skipped only when their recorded data root is the same string).
# Interrupted, it continues where it stopped (the row resumes from its checkpoint).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_b15_ens
MEMBERS=$RUNS/noise_study_b15_ens_members
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
FLAGS=(--data.root "$DATA" "${B15_FLAGS[@]}")
if [ ! -d "$OUT" ]; then
  python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
  rm -f "$OUT/noise20_cleanlab/result.json"  # one detection's; the ensemble row has another fingerprint
  rm -rf "$OUT"/noise40_cleanlab* "$OUT"/noise20_cleanlab_{seed1,remove}*
fi
if [ ! -f "$MEMBERS/r2/pred_probs.npy" ]; then  # round 2 is checked against round 1's folds beside it
  mkdir -p "$MEMBERS/r2det"
  cp -r "$K/imagenette_b15/noise20_cleanlab/detection/"fold_* "$K/imagenette_b15_rounds/noise20_cleanlab/detection/round_2" \
    "$MEMBERS/r2det/"
  python "$S/export_probs.py" "${FLAGS[@]}" --detection "$K/imagenette_b15/noise20_cleanlab_seed1/detection" \
    --out "$MEMBERS/s1"
  python "$S/export_probs.py" "${FLAGS[@]}" --detection "$MEMBERS/r2det/round_2" --out "$MEMBERS/r2"
fi
echo "ensemble row start $(date -u +%T) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py "${FLAGS[@]}" --logging.output_dir "$OUT" \
  --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] --study.noise_only_rates [] \
  --study.seeds [0] --study.cleanlab_remove_only false --cl.ensemble "[$MEMBERS/s1,$MEMBERS/r2]" \
  > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
echo "ensemble row done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
rm -rf "$K/imagenette_b15_ensemble/noise20_cleanlab"
cp -r "$OUT.kept/noise20_cleanlab" "$K/imagenette_b15_ensemble/"
rm -rf "$K/imagenette_b15_ensemble/noise20_cleanlab/detection/fold_"*  # the row's own folds: kept in imagenette_b15/
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$K/imagenette_b15_ensemble/"
