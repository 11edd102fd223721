#!/bin/bash
# Issue 13: a second round of detection (--cl.rounds 2) at 20 % noise on the b15 study, and the cleaned row it gives.
# It restores the b15 study's kept rows and fold files into $RUNS/noise_study_r2 with the kept round-2 files of this
# folder, deletes the noise20_cleanlab row's one-round result.json (a two-round row has another fingerprint), and
# runs that row with --cl.rounds 2: round 1's four folds are reused from the kept files, round 2's fold models train
# on the samples round 1 did not flag. With N = 4 (the default: all folds) the study runs to the end: round 2's four
# folds, then the cleaned row on round 2's flags (its result.json and fold files are then kept here, and a rerun
# trains nothing). With N < 4, SIGTERM stops the study once round 2's first N folds have scored their held-out
# samples (the probe of 2026-12-04 00:47-01:59 UTC, N = 2); rerunning continues from there. compare_folds.py then
# scores round 1, round 2 and their mean on the folds round 2 finished, and beside them the kept one-fold probes
# and the seed-1 detection on the one fold all of them have (fold 1: the same samples and flips).
#   bash experiments/label_noise_study/results/imagenette_b15_rounds/run.sh [N]
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders.
set -eu
source "$(dirname "$0")/../run_env.sh"
OUT=$RUNS/noise_study_r2
FLAGS=(--data.root "${DATA:-../shared/data/imagenette2-224}" "${B15_FLAGS[@]}")
R2=$OUT/noise20_cleanlab/detection/round_2
N=${1:-4}
LAST=$R2/fold_$((N - 1))/pred_probs.npy
[ "$N" -ge 4 ] && LAST=$OUT/noise20_cleanlab/result.json
if [ ! -f "$LAST" ]; then
  python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
  if [ -d "$K/imagenette_b15_rounds/noise20_cleanlab" ]; then  # the kept round-2 fold: compared without training
    cp -r "$K/imagenette_b15_rounds/noise20_cleanlab/." "$OUT/noise20_cleanlab/"
  fi
fi
if [ ! -f "$LAST" ]; then
  rm -f "$OUT/noise20_cleanlab/result.json"  # the b15 row's, one round
  echo "round 2 start $(date -u +%T) $(git rev-parse --short HEAD)"
  STUDY=(python experiments/label_noise_study/run_study.py "${FLAGS[@]}" --cl.rounds 2 --study.noise_rates [0.2]
         --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0]
         --study.cleanlab_remove_only false --logging.output_dir "$OUT")
  if [ "$N" -ge 4 ]; then
    "${STUDY[@]}" > "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
    python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null
    cp -r "$OUT.kept/noise20_cleanlab/." "$K/imagenette_b15_rounds/noise20_cleanlab/"
    rm -rf "$K/imagenette_b15_rounds/noise20_cleanlab/detection/fold_"*  # round 1's: kept in imagenette_b15/
    echo "round 2 and its cleaned row done $(date -u +%T)"
  else
    "${STUDY[@]}" > "$OUT.log" 2>&1 &
    pid=$!
    until [ -f "$LAST" ]; do
      kill -0 $pid 2>/dev/null || { echo "the study stopped before round 2's fold $N finished: $OUT.log"; exit 1; }
      sleep 10
    done
    kill -TERM $pid; wait $pid || true
    echo "round 2 fold $N done $(date -u +%T)"
  fi
fi
python "$S/compare_folds.py" "${FLAGS[@]}" --detection "r1=$OUT/noise20_cleanlab/detection" "r2=$R2" \
  --out "$K/imagenette_b15_rounds"
mkdir -p "$K/imagenette_b15_rounds/all"
python "$S/compare_folds.py" "${FLAGS[@]}" --detection "r1=$OUT/noise20_cleanlab/detection" "r2=$R2" \
  "s1=$K/imagenette_b15/noise20_cleanlab_seed1/detection" "f32=$K/imagenette_b15_fold_probes/32ep_160/detection" \
  "ls=$K/imagenette_b15_fold_probes/ls/detection" --out "$K/imagenette_b15_rounds/all"
# round 2's self-confidence rank-averaged with the AUM of the noisy row's own run (kept in ../imagenette_b15_aum/)
python "$S/compare_aum.py" "${FLAGS[@]}" --noise_rate 0.2 --kfold "$R2" --windows 1-15 \
  --aum_run "$K/imagenette_b15_aum/noise20_cleanlab/detection/aum_run" --out "$K/imagenette_b15_rounds/aum"
