#!/bin/bash
# Issue 13: detection at 20 % noise with fold models on the 15-epoch recipe (folds_15ep.yaml), training seeds 0 and
# 1, and both cleaning policies on seed 0's detection; the cleaned rows train 8 epochs as in imagenette_cpu.yaml.
# It reuses the study's finished rows that have no detection (clean, noise20, noise20_sim80, ...).
# Measured in three steps from a worktree pinned at 2e475cc (README.md: times and results): seed 0 with
# --study.seeds [0] --study.cleanlab_remove_only false, then --study.seeds [0,1], then
# --study.cleanlab_remove_only true. This one command runs all three; finished rows are skipped.
#   bash experiments/label_noise_study/results/imagenette_cpu_folds15/run.sh [--more.flags ...]
# from the repository root; REPO=/path/to/worktree runs that checkout's code instead, OUT=/path another output
# folder. The same script with flags ran ../imagenette_cpu_folds15_lsc/ (--cl.filter_by low_self_confidence).
set -eu
OUT=${OUT:-$(pwd)/experiments/label_noise_study/runs/folds15}
KEPT=$(pwd)/experiments/label_noise_study/results/imagenette_cpu
cd "${REPO:-.}"
export PYTHONPATH=$(pwd)
for kept in "$KEPT"/*/result.json; do  # the study's finished rows without detection (their fingerprints are checked)
  row=$(basename "$(dirname "$kept")")
  case $row in *cleanlab*) continue ;; esac
  mkdir -p "$OUT/$row"
  [ -f "$OUT/$row/result.json" ] || cp "$kept" "$OUT/$row/"
done
echo "start $(date -u) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root ../shared/data/imagenette2-224 \
  --config experiments/label_noise_study/imagenette_cpu.yaml \
  --study.fold_config experiments/label_noise_study/folds_15ep.yaml --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0,1] \
  --study.cleanlab_remove_only true --logging.output_dir "$OUT" --logging.progress_bar false "$@"
echo "end $(date -u)"
