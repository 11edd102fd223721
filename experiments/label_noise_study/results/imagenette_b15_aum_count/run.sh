#!/bin/bash
# Issue 13: the cleaned row at 20 % noise on one training run's Area Under the Margin, cut at a count (the 20 %
# lowest AUMs: --cl.aum_fraction 0.2) instead of the rule AUM < 0, b15 recipe, seed 0. It restores the b15 study's
# kept rows into $RUNS/noise_study_aum_count (the clean, noisy and simulated rows are then skipped; the K-fold
# cleanlab rows are left out, as their settings differ) and the kept AUM run's scores (results/imagenette_b15_aum:
# no AUM training), trains the cleaned row on its flags and keeps the small files here.
#   bash experiments/label_noise_study/results/imagenette_b15_aum_count/run.sh
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders, DATA the
# dataset (made absolute: the kept rows are skipped only when their recorded data root is the same string).
# Interrupted, it continues where it stopped (the row resumes from its checkpoint).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_aum_count
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
if [ ! -d "$OUT" ]; then
  python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
  rm -rf "$OUT"/noise*_cleanlab*
  python "$S/keep_results.py" "$OUT" "$K/imagenette_b15_aum" --restore
fi
echo "AUM count row start $(date -u +%T) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root "$DATA" "${B15_FLAGS[@]}" \
  --logging.output_dir "$OUT" --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] \
  --study.noise_only_rates [] --study.seeds [0] --study.cleanlab_remove_only false --cl.scores aum \
  --cl.aum_fraction 0.2 > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
echo "AUM count row done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
rm -rf "$K/imagenette_b15_aum_count/noise20_cleanlab"
cp -r "$OUT.kept/noise20_cleanlab" "$K/imagenette_b15_aum_count/"
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$K/imagenette_b15_aum_count/"
