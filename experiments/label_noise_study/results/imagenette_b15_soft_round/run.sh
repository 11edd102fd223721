#!/bin/bash
# Issue 13: a second round of detection whose fold models keep every image and train the first round's flags on
# soft targets (--cl.round_targets soft), probed on its first fold(s) before a whole 8-fold round is paid for.
# Round 1 is the best detection measured: cleanlab's low_self_confidence on the mean of the two kept 8-fold
# detections (training seeds 0 and 1, ../imagenette_b15_fold_probes/k8 and k8_seed1: 1,891 flags, P 0.834 R 0.833).
# Round 2 trains 8 new b15 fold models (training seed 0, the same folds), each on all 8,285 images of its other
# folds, the flagged ones on their averaged out-of-sample probabilities, and scores its held-out fold again.
# It restores the b15 study's kept seed-0 rows and the seed-0 8-fold folds into $RUNS/noise_study_soft_round (clean,
# noise20, noise20_sim80 and round 1 are then skipped), writes the seed-1 detection as an --cl.ensemble member
# (export_probs.py), runs the study until PROBE_FOLDS (default 1) round-2 folds have scored their held-out images,
# stops it with SIGTERM (the trainer saves a checkpoint; rerunning continues the round), keeps the finished
# round-2 folds here (round_2/) and compares them (compare_folds.py, bootstrap.py) with the b15 (4-fold) and 8-fold
# detections on the images they all scored (compare/).
#   PROBE_FOLDS=1 bash experiments/label_noise_study/results/imagenette_b15_soft_round/run.sh
# PROBE_FOLDS=8 runs the whole round (the study then goes on to the cleaned row, and is stopped). KEEP_ONLY=1 trains
# nothing: it keeps and compares the round-2 folds finished so far (e.g. beside a running PROBE_FOLDS=8).
# from the repository root; REPO, RUNS, DATA as in ../run_env.sh (DATA made absolute, as the kept rows recorded it).
set -eu
source "$(dirname "$0")/../run_env.sh"
PROBE_FOLDS=${PROBE_FOLDS:-1}
OUT=$RUNS/noise_study_soft_round
DET=$OUT/noise20_cleanlab/detection
MEMBER=$RUNS/noise_study_k8_ens_members/k8_s1
DATA=$(realpath "${DATA:-../shared/data/imagenette2-224}")
FLAGS=(--data.root "$DATA" "${B15_FLAGS[@]}" --cl.folds 8)
P=$K/imagenette_b15_fold_probes
HERE=$K/imagenette_b15_soft_round
if [ ! -f "$DET/fold_7/pred_probs.npy" ]; then  # not yet set up (or set-up cut short)
  KEPT=$(mktemp -d)
  python "$S/keep_results.py" "$KEPT" "$K/imagenette_b15" --restore > /dev/null
  for row in clean noise20 noise20_sim80; do mkdir -p "$OUT/$row" && cp -r "$KEPT/$row/." "$OUT/$row/"; done
  rm -rf "$KEPT"
  mkdir -p "$DET" && cp -r "$P/k8/detection/"fold_* "$DET/"
  if [ -d "$HERE/round_2" ]; then mkdir -p "$DET/round_2" && cp -r "$HERE/round_2/." "$DET/round_2/"; fi
fi
if [ ! -f "$MEMBER/pred_probs.npy" ]; then
  python "$S/export_probs.py" "${FLAGS[@]}" --detection "$P/k8_seed1/detection" --out "$MEMBER"
fi
done_file=$DET/round_2/fold_$((PROBE_FOLDS - 1))/pred_probs.npy
echo "soft round 2, $PROBE_FOLDS fold(s), start $(date -u +%T) $(git rev-parse --short HEAD)"
if [ "${KEEP_ONLY:-0}" != 1 ] && [ ! -f "$done_file" ]; then
  run_until "$done_file" "$OUT.log" python experiments/label_noise_study/run_study.py "${FLAGS[@]}" \
    --logging.output_dir "$OUT" --study.noise_rates [0.2] --study.simulated_detection_rates [0.8] \
    --study.noise_only_rates [] --study.seeds [0] --study.cleanlab_remove_only false \
    --cl.filter_by low_self_confidence --cl.rounds 2 --cl.round_targets soft --cl.ensemble "[$MEMBER]"
fi
[ "${KEEP_ONLY:-0}" = 1 ] || echo "soft round 2, $PROBE_FOLDS fold(s), done $(date -u +%T)"
for f in "$DET"/round_2/fold_*/pred_probs.npy; do  # each finished fold's small files
  [ -f "$f" ] || { echo "no round-2 fold has finished yet in $DET/round_2" >&2; exit 1; }
  d=$(dirname "$f"); k=$(basename "$d")
  mkdir -p "$HERE/round_2/$k" && cp "$d"/{pred_probs.npy,scored_ids.npy,fold_settings.json} "$HERE/round_2/$k/"
done
DETECTIONS=("b15_s0=$K/imagenette_b15/noise20_cleanlab/detection"
            "b15_s1=$K/imagenette_b15/noise20_cleanlab_seed1/detection"
            "k8=$P/k8/detection" "k8_s1=$P/k8_seed1/detection" "soft_r2=$DET/round_2")
python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" --out "$HERE/compare"
python "$P/bootstrap.py" "${FLAGS[@]}" --detection "${DETECTIONS[@]}" > "$HERE/compare/bootstrap.txt"
cat "$HERE/compare/bootstrap.txt"
