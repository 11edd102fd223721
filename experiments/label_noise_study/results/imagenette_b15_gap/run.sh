#!/bin/bash
# Issue 13: the two halves of the 20 % + cleanlab row's gap to the clean row, trained apart (--study.cleanlab_gap_rows):
# noise20_cleanlab_gap_removals (the row's removals alone: the kept images, every label true) and
# noise20_cleanlab_gap_labels (its wrong labels alone: every image, the kept ones with the row's cleaned labels, the
# removed ones with their true labels), at seeds 0 and 1. It restores the b15 study's kept rows and fold files into
# $RUNS/noise_study_gap, so the clean, noisy and cleaned rows are skipped and each gap row reuses its seed's kept
# detection (no fold model trains); the four gap rows train with the b15 recipe. Their small files are then kept here.
# Then the control: the clean row on a stratified random subset of the cleaned set's size (7,617 of 9,469 images,
# --data.fraction 0.8044), seeds 0 and 1, kept in random_subset/; last, the removals with perfect precision.
#   bash experiments/label_noise_study/results/imagenette_b15_gap/run.sh
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders, DATA the
# dataset (made absolute: the kept rows are skipped only when their recorded data root is the same string).
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_gap
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
STUDY=(python experiments/label_noise_study/run_study.py --data.root "$DATA" "${B15_FLAGS[@]}")
[ -d "$OUT" ] || python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
echo "gap rows start $(date -u +%T) $(git rev-parse --short HEAD)"
"${STUDY[@]}" --logging.output_dir "$OUT" --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0,1] \
  --study.repeat_experiments [clean,noise20,noise20_cleanlab,noise20_cleanlab_gap_removals,noise20_cleanlab_gap_labels] \
  --study.cleanlab_remove_only false --study.cleanlab_gap_rows true > "$OUT.log" 2>&1 \
  || { echo "the study failed: $OUT.log"; exit 1; }
echo "gap rows done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
for d in "$OUT.kept"/*_gap_*; do
  rm -rf "$K/imagenette_b15_gap/$(basename "$d")"
  cp -r "$d" "$K/imagenette_b15_gap/"
  # the reused detection (fold files and manifest): kept in imagenette_b15/; its metrics stay with each row
  (cd "$K/imagenette_b15_gap/$(basename "$d")/detection" && rm -rf fold_* label_issues.csv removal_list.txt relabel_map.json)
done
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$K/imagenette_b15_gap/"

CTL=$RUNS/noise_study_random80
echo "random-subset control start $(date -u +%T)"
"${STUDY[@]}" --logging.output_dir "$CTL" --data.fraction 0.8044 --study.noise_rates [] \
  --study.simulated_detection_rates [] --study.noise_only_rates [] --study.cleanlab false --study.seeds [0,1] \
  --study.repeat_experiments [clean] > "$CTL.log" 2>&1 || { echo "the control failed: $CTL.log"; exit 1; }
echo "random-subset control done $(date -u +%T)"
python "$S/keep_results.py" "$CTL" "$K/imagenette_b15_gap/random_subset" > /dev/null

# The removals with perfect precision: the clean row without the 1,052 flips among the 1,852 images seed 0's detection
# removed (its 800 clean removals kept, every label true; seed 0), through a removal manifest; kept in flips_removed/.
FR=$RUNS/noise_study_flips_removed
mkdir -p "$FR.manifest"
python - "$K/imagenette_b15/noise20_cleanlab/detection/label_issues.csv" "$FR.manifest/removal_list.txt" <<'PY'
import sys
import pandas as pd
d = pd.read_csv(sys.argv[1])
flip = d.path.str.split("/").str[0] != d.given_class  # the folder is the true class
ids = sorted(d.sample_id[(d.action == "remove") & flip])
open(sys.argv[2], "w").write("".join(f"{i}\n" for i in ids))
print(f"{len(ids)} flips among the removals")
PY
"${STUDY[@]}" --logging.output_dir "$FR" --data.cleaning_manifest "$FR.manifest" \
  --study.noise_rates [] --study.simulated_detection_rates [] --study.noise_only_rates [] --study.cleanlab false \
  --study.seeds [0] --study.repeat_experiments [clean] > "$FR.log" 2>&1 || { echo "failed: $FR.log"; exit 1; }
python "$S/keep_results.py" "$FR" "$K/imagenette_b15_gap/flips_removed" > /dev/null
cp "$FR.manifest/removal_list.txt" "$K/imagenette_b15_gap/flips_removed/"
