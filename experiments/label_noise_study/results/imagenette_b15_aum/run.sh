#!/bin/bash
# Issue 13: label issues at 20 % noise from one training run's Area Under the Margin (--cl.scores aum) instead of
# K fold models, on the b15 recipe, seed 0. It restores the b15 study's kept rows into $RUNS/noise_study_aum (the
# clean, noisy and simulated rows are then skipped; the K-fold cleanlab rows are left out, as their settings differ),
# trains the AUM run (the noisy row's training, every sample's margin recorded in every epoch) and then the cleaned
# row on its flags, keeps the small files here, and scores the record with compare_aum.py beside the kept 4-fold
# detection of the same labels (results/imagenette_b15/noise20_cleanlab/detection).
#   bash experiments/label_noise_study/results/imagenette_b15_aum/run.sh
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders, DATA the
# dataset (made absolute: the kept rows are skipped only when their recorded data root is the same string).
# Interrupted, it continues where it stopped (the run resumes from its checkpoint and margin record).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_aum
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
STUDY=(--data.root "$DATA" "${B15_FLAGS[@]}")
if [ ! -d "$OUT" ]; then
  python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
  rm -rf "$OUT"/noise*_cleanlab*
  [ -d "$K/imagenette_b15_aum/noise20_cleanlab" ] && python "$S/keep_results.py" "$OUT" "$K/imagenette_b15_aum" --restore
fi
echo "AUM rows start $(date -u +%T) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py "${STUDY[@]}" --logging.output_dir "$OUT" --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0] \
  --study.cleanlab_remove_only false --cl.scores aum > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
echo "AUM rows done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
rm -rf "$K/imagenette_b15_aum/noise20_cleanlab"
cp -r "$OUT.kept/noise20_cleanlab" "$K/imagenette_b15_aum/"
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$K/imagenette_b15_aum/"
python experiments/label_noise_study/compare_aum.py "${STUDY[@]}" --noise_rate 0.2 \
  --aum_run "$OUT/noise20_cleanlab/detection/aum_run" --windows 1-15 1-8 1-11 9-15 12-15 \
  --kfold "$K/imagenette_b15/noise20_cleanlab/detection" --out "$K/imagenette_b15_aum"
