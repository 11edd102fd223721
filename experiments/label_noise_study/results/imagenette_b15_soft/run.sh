#!/bin/bash
# Issue 13: the 20 % + cleanlab row under a third cleaning policy, soft labels: every image kept, each flagged one
# trained on its detection's out-of-sample probabilities (--study.cleanlab_soft_labels true) instead of relabelled
# or removed; b15 recipe, seeds 0 and 1. It restores the b15 study's kept rows into $RUNS/noise_study_b15_soft with
# their detections' fold probabilities (every other row is then skipped, no fold model retrains), trains the two
# soft rows and keeps the small files here.
#   bash experiments/label_noise_study/results/imagenette_b15_soft/run.sh
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders, DATA the
# dataset (made absolute: the kept rows are skipped only when their recorded data root is the same string).
# Interrupted, it continues where it stopped (a row resumes from its checkpoint).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_b15_soft
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
[ -d "$OUT" ] || python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
echo "soft rows start $(date -u +%T) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root "$DATA" "${B15_FLAGS[@]}" \
  --logging.output_dir "$OUT" --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] \
  --study.noise_only_rates [] --study.seeds [0,1] --study.cleanlab_remove_only true \
  --study.cleanlab_soft_labels true \
  --study.repeat_experiments [clean,noise20,noise20_cleanlab,noise20_cleanlab_remove,noise20_cleanlab_soft] \
  > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
echo "soft rows done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
for row in noise20_cleanlab_soft noise20_cleanlab_soft_seed1; do
  [ -f "$OUT.kept/$row/result.json" ] || continue
  rm -rf "$K/imagenette_b15_soft/$row"
  cp -r "$OUT.kept/$row" "$K/imagenette_b15_soft/"
  # the threshold rule's manifest, which the soft row reads its flags from but does not apply
  rm -f "$K/imagenette_b15_soft/$row/detection/"{removal_list.txt,relabel_map.json,label_issues.csv}
done
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$K/imagenette_b15_soft/"
