#!/bin/bash
# Issue 13: does the best detection measured clean better? The 20 % + cleanlab row cleaned on the mean of the two
# 8-fold detections' out-of-sample probabilities (training seeds 0 and 1, ../imagenette_b15_fold_probes/k8 and
# k8_seed1: 16 fold models) with cleanlab's `low_self_confidence` rule (P 0.834 R 0.833 there, against 0.678 / 0.886
# for the study's rule on one 8-fold detection), under two policies: the study's threshold rule (relabel at >= 0.8,
# remove the rest: row noise20_cleanlab) and soft labels (every flagged image kept, trained on the averaged
# probabilities: noise20_cleanlab_soft). b15 recipe. No fold model trains: it restores the b15 study's kept rows and
# the row's own kept folds into $RUNS/noise_study_k8_ens_s<SEED> (clean, noise20 and, at seed 0, noise20_sim80 are
# then skipped; at seed 1 noise20_sim80 trains: the study has a simulated row per noise rate), writes the other seed's
# detection as an --cl.ensemble member with export_probs.py, trains the two cleaned rows (and at seed 1 the simulated
# row) and keeps their small files here (s<SEED>/).
#   SEED=0 bash experiments/label_noise_study/results/imagenette_b15_k8_ensemble/run.sh   # then SEED=1
# from the repository root; REPO, RUNS, DATA as in ../run_env.sh (DATA made absolute: the kept rows are skipped only
# when their recorded data root is the same string). A study with --cl.ensemble serves one seed's cleanlab row, so
# seed 1 is its own study (--study.seeds [1]: its rows are named without _seed1; clean and noise20 are the b15
# study's clean_seed1 and noise20_seed1, restored under those names). Interrupted, it continues where it stopped.
set -eu
source "$(dirname "$0")/../run_env.sh"
SEED=${SEED:-0}
case $SEED in 0|1) ;; *) echo "SEED=$SEED: the kept 8-fold detections are of training seeds 0 and 1" >&2; exit 2;; esac
OUT=$RUNS/noise_study_k8_ens_s$SEED
MEMBER=$RUNS/noise_study_k8_ens_members/k8_s$((1 - SEED))
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
FLAGS=(--data.root "$DATA" "${B15_FLAGS[@]}" --cl.folds 8)
SUFFIX=(""  _seed1)  # the kept folders' and b15 rows' name suffix of training seed 0, 1
P=$K/imagenette_b15_fold_probes
OWN=$P/k8${SUFFIX[$SEED]}/detection
OTHER=$P/k8${SUFFIX[1 - SEED]}/detection
if [ ! -f "$OUT/noise20_cleanlab/detection/fold_7/pred_probs.npy" ]; then  # not yet set up (or set-up cut short)
  KEPT=$(mktemp -d)
  python "$S/keep_results.py" "$KEPT" "$K/imagenette_b15" --restore > /dev/null
  mkdir -p "$OUT"
  for row in clean noise20 noise20_sim80; do  # the b15 rows at this seed, under the names a one-seed study gives
    src=$KEPT/$row${SUFFIX[$SEED]}
    if [ -d "$src" ]; then mkdir -p "$OUT/$row" && cp -r "$src/." "$OUT/$row/"; fi
  done
  rm -rf "$KEPT"
  mkdir -p "$OUT/noise20_cleanlab/detection" && cp -r "$OWN/"fold_* "$OUT/noise20_cleanlab/detection/"
fi
if [ ! -f "$MEMBER/pred_probs.npy" ]; then
  python "$S/export_probs.py" "${FLAGS[@]}" --detection "$OTHER" --out "$MEMBER"
fi
echo "k8 ensemble rows, seed $SEED, start $(date -u +%T) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py "${FLAGS[@]}" --logging.output_dir "$OUT" \
  --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] \
  --study.noise_only_rates [] --study.seeds "[$SEED]" --study.cleanlab_remove_only false \
  --study.cleanlab_soft_labels true --cl.filter_by low_self_confidence --cl.ensemble "[$MEMBER]" \
  > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
echo "k8 ensemble rows, seed $SEED, done $(date -u +%T)"
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
KEEP=$K/imagenette_b15_k8_ensemble/s$SEED
mkdir -p "$KEEP"
ROWS=(noise20_cleanlab noise20_cleanlab_soft)
[ "$SEED" = 1 ] && ROWS+=(noise20_sim80)  # trained here (the b15 study has it at seed 0 only)
for row in "${ROWS[@]}"; do
  rm -rf "${KEEP:?}/$row" && cp -r "$OUT.kept/$row" "$KEEP/"
  rm -rf "$KEEP/$row/detection/fold_"*  # the row's own folds: kept in ../imagenette_b15_fold_probes/
done
cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$KEEP/"
