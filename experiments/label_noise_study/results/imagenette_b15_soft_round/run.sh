#!/bin/bash
# Issue 13: a second round of detection whose fold models keep every image and train the first round's flags on
# soft targets (--cl.round_targets soft), probed on its first fold(s) before a whole 8-fold round is paid for.
# Round 1 is the best detection measured: cleanlab's low_self_confidence on the mean of the two kept 8-fold
# detections (training seeds 0 and 1, ../imagenette_b15_fold_probes/k8 and k8_seed1: 1,891 flags, P 0.834 R 0.833):
# the row's own kept 8-fold folds at training seed SEED, with the other seed's as an --cl.ensemble member
# (export_probs.py). Round 2 trains 8 new b15 fold models (training seed SEED, the same folds), each on all 8,285
# images of its other folds, the flagged ones on their averaged out-of-sample probabilities, and scores its held-out
# fold again. It restores the b15 study's kept rows at SEED (clean, noise20, noise20_sim80: skipped by the study) and
# round 1 into $RUNS/noise_study_soft_round (seed 1: ..._s1; a study with --cl.ensemble serves one seed, so seed 1 is
# its own study, --study.seeds [1], its rows named without _seed1), runs the study until PROBE_FOLDS (default 1)
# round-2 folds have scored their held-out images, stops it with SIGTERM (the trainer saves a checkpoint; rerunning
# continues the round), keeps the finished round-2 folds here (round_2/; seed 1: s1/round_2/) and compares them
# (compare_folds.py, bootstrap.py) with the 4-fold and 8-fold detections on the images they all scored (compare/;
# seed 1: s1/compare/).
#   PROBE_FOLDS=1 bash experiments/label_noise_study/results/imagenette_b15_soft_round/run.sh
# PROBE_FOLDS=8 runs the whole round. KEEP_ONLY=1 trains nothing: it keeps and compares the round-2 folds finished so
# far (e.g. beside a running PROBE_FOLDS=8). ROWS=1, once the round has finished, trains the cleaned rows on its
# flags (the study's rule on the mean of round 2 and the member: the threshold rule, noise20_cleanlab, and soft
# labels, noise20_cleanlab_soft) and keeps them (rows/; seed 1: s1/rows/). SEED=0 (default) or 1.
# From the repository root; REPO, RUNS, DATA as in ../run_env.sh (DATA made absolute, as the kept rows recorded it).
set -eu
source "$(dirname "$0")/../run_env.sh"
PROBE_FOLDS=${PROBE_FOLDS:-1}
SEED=${SEED:-0}
case $SEED in 0|1) ;; *) echo "SEED=$SEED: the kept 8-fold detections are of training seeds 0 and 1" >&2; exit 2;; esac
SUFFIX=("" _seed1)  # the kept folders' and b15 rows' name suffix of training seed 0, 1
OUTS=(noise_study_soft_round noise_study_soft_round_s1)
OUT=$RUNS/${OUTS[$SEED]}
DET=$OUT/noise20_cleanlab/detection
MEMBER=$RUNS/noise_study_k8_ens_members/k8_s$((1 - SEED))
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
FLAGS=(--data.root "$DATA" "${B15_FLAGS[@]}" --cl.folds 8)
P=$K/imagenette_b15_fold_probes
HERE=$K/imagenette_b15_soft_round
KEEP=$HERE${SUFFIX[$SEED]/_seed1//s1}
if [ ! -f "$DET/fold_7/pred_probs.npy" ]; then  # not yet set up (or set-up cut short)
  KEPT=$(mktemp -d)
  python "$S/keep_results.py" "$KEPT" "$K/imagenette_b15" --restore > /dev/null
  for row in clean noise20 noise20_sim80; do  # the b15 rows at this seed, under the names a one-seed study gives
    src=$KEPT/$row${SUFFIX[$SEED]}
    [ -d "$src" ] || src=$K/imagenette_b15_k8_ensemble/s$SEED/$row  # seed 1's simulated row was trained there
    mkdir -p "$OUT/$row" && cp -r "$src/." "$OUT/$row/"
  done
  rm -rf "$KEPT"
  mkdir -p "$DET" && cp -r "$P/k8${SUFFIX[$SEED]}/detection/"fold_* "$DET/"
  if [ -d "$KEEP/round_2" ]; then mkdir -p "$DET/round_2" && cp -r "$KEEP/round_2/." "$DET/round_2/"; fi
fi
if [ ! -f "$MEMBER/pred_probs.npy" ]; then
  python "$S/export_probs.py" "${FLAGS[@]}" --detection "$P/k8${SUFFIX[1 - SEED]}/detection" --out "$MEMBER"
fi
STUDY=(python experiments/label_noise_study/run_study.py "${FLAGS[@]}" --logging.output_dir "$OUT"
       --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] --study.noise_only_rates []
       --study.seeds "[$SEED]" --study.cleanlab_remove_only false --cl.filter_by low_self_confidence
       --cl.rounds 2 --cl.round_targets soft --cl.ensemble "[$MEMBER]")
done_file=$DET/round_2/fold_$((PROBE_FOLDS - 1))/pred_probs.npy
if [ "${KEEP_ONLY:-0}" != 1 ] && [ ! -f "$done_file" ]; then
  echo "soft round 2, seed $SEED, $PROBE_FOLDS fold(s), start $(date -u +%T) $(git rev-parse --short HEAD)"
  run_until "$done_file" "$OUT.log" "${STUDY[@]}"
  echo "soft round 2, seed $SEED, $PROBE_FOLDS fold(s), done $(date -u +%T)"
fi
python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null  # each finished fold's small files, and the rows'
R2=$OUT.kept/noise20_cleanlab/detection/round_2
compgen -G "$R2/fold_*/pred_probs.npy" > /dev/null || { echo "no round-2 fold has finished yet in $DET/round_2" >&2; exit 1; }
mkdir -p "$KEEP/round_2" && cp -r "$R2/." "$KEEP/round_2/"
DETECTIONS=("b15_s0=$K/imagenette_b15/noise20_cleanlab/detection"
            "b15_s1=$K/imagenette_b15/noise20_cleanlab_seed1/detection"
            "k8=$P/k8/detection" "k8_s1=$P/k8_seed1/detection" "soft_r2${SUFFIX[$SEED]/_seed/_s}=$DET/round_2")
SEED0=$RUNS/${OUTS[0]}/noise20_cleanlab/detection/round_2  # seed 1 is compared with seed 0's round too, if there
if [ "$SEED" = 1 ] && compgen -G "$SEED0/fold_*/pred_probs.npy" > /dev/null; then DETECTIONS+=("soft_r2=$SEED0"); fi
python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" --out "$KEEP/compare"
python "$P/bootstrap.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" > "$KEEP/compare/bootstrap.txt"
cat "$KEEP/compare/bootstrap.txt"
if [ "${ROWS:-0}" = 1 ]; then  # the cleaned rows on the finished round's flags
  [ -f "$DET/round_2/fold_7/pred_probs.npy" ] || { echo "ROWS=1 needs the whole round (PROBE_FOLDS=8)" >&2; exit 1; }
  echo "cleaned rows, seed $SEED, start $(date -u +%T) $(git rev-parse --short HEAD)"
  "${STUDY[@]}" --study.cleanlab_soft_labels true >> "$OUT.log" 2>&1 || { echo "the study failed: $OUT.log"; exit 1; }
  echo "cleaned rows, seed $SEED, done $(date -u +%T)"
  python "$S/keep_results.py" "$OUT" "$OUT.kept" > /dev/null  # again: the rows have finished since
  for row in noise20_cleanlab noise20_cleanlab_soft; do
    rm -rf "${KEEP:?}/rows/$row" && mkdir -p "$KEEP/rows" && cp -r "$OUT.kept/$row" "$KEEP/rows/"
    rm -rf "$KEEP/rows/$row/detection/"{fold_*,round_2}  # the folds: kept in ../imagenette_b15_fold_probes/, round_2/
  done
  cp "$OUT.kept/results.csv" "$OUT.kept/results.md" "$OUT.kept/runs.csv" "$KEEP/rows/"
fi
