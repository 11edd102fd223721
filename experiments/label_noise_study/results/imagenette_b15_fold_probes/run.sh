#!/bin/bash
# Issue 13: probe fold recipes for the detection at 20 % noise on the b15 study, one fold each, before a whole
# 4-fold detection is paid for. For each fold config named (folds_<name>.yaml in experiments/label_noise_study/),
# it runs the b15 study's noise20_cleanlab row with --study.fold_config that file until fold 1 of 4 has scored the
# samples it did not see (a probe named k<N>, e.g. k8, keeps the b15 fold recipe and runs --cl.folds N
# instead: fold 1 of N, trained on (N-1)/N of the images), then stops it with SIGTERM (the study saves a
# checkpoint and exits; rerunning the same study command without this script continues the detection). It
# reuses the b15 study's finished rows without detection (clean, noise20, noise20_sim80: their fingerprints are
# checked). Then compare_folds.py scores every fold-recipe probe beside the b15 detections (seeds 0 and 1: the
# same samples and flips) on the samples all of them scored and writes compare_folds.md; each k<N> probe gets its
# own table (compare_k<N>/compare_folds.md: the b15 detections and it, on the samples its finished folds scored;
# k8 keeps all 8 folds; k8_seed1/, where kept, the same K at training seed 1 from the study command with
# --study.seeds [0,1], is restored beside it and compared in compare_k8_seed1/).
#   bash experiments/label_noise_study/results/imagenette_b15_fold_probes/run.sh 32ep_160 ls mixup elr k8
# from the repository root; REPO=/path/to/worktree runs that checkout's code, RUNS=/path the run folders
# (default runs/ beside the study), DATA=/path the data root as the kept rows recorded it. Measured (README.md
# here): 32ep_160 from a worktree at 8f4899a, ls and mixup at f4a96e0 (the same library code), elr and k8 at the
# commits its README names.
set -eu
source "$(dirname "$0")/../run_env.sh"
B15=$RUNS/noise_study_b15
FLAGS=(--data.root "${DATA:-../shared/data/imagenette2-224}" "${B15_FLAGS[@]}")
python "$S/keep_results.py" "$B15" "$K/imagenette_b15" --restore  # the b15 detections' fold files
restore_kept() {  # $1: a kept probe folder here, $2: the study row of $OUT it is copied into (if $1 is kept)
  if [ -d "$K/imagenette_b15_fold_probes/$1" ]; then
    mkdir -p "$OUT/$2" && cp -r "$K/imagenette_b15_fold_probes/$1/." "$OUT/$2/"
  fi
}
detections=("b15_s0=$B15/noise20_cleanlab/detection" "b15_s1=$B15/noise20_cleanlab_seed1/detection")
for P in "$@"; do
  OUT=$RUNS/noise_study_fold_$P
  if [ ! -f "$OUT/clean/result.json" ]; then
    python "$S/keep_results.py" "$OUT" "$K/imagenette_b15" --restore
    rm -rf "$OUT"/*cleanlab*  # the b15 detections: made with another fold config, refused here
    restore_kept "$P" noise20_cleanlab  # its kept fold(s): compared without training again
    # k8 at training seed 1 (the study command with --study.seeds [0,1]), restored, like $P, into a fresh $OUT only
    restore_kept "${P}_seed1" noise20_cleanlab_seed1
  fi
  K_PROBE=false
  if [[ $P =~ ^k([0-9]+)$ ]]; then K_PROBE=true; PROBE=(--cl.folds "${BASH_REMATCH[1]}"); else
    PROBE=(--study.fold_config "experiments/label_noise_study/folds_$P.yaml"); fi
  echo "$P start $(date -u +%T) $(git rev-parse --short HEAD)"
  if [ ! -f "$OUT/noise20_cleanlab/detection/fold_0/pred_probs.npy" ]; then
    run_until "$OUT/noise20_cleanlab/detection/fold_0/pred_probs.npy" "$OUT.log" \
      python experiments/label_noise_study/run_study.py "${FLAGS[@]}" \
      "${PROBE[@]}" --study.noise_rates [0.2] \
      --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0] \
      --study.cleanlab_remove_only false --logging.output_dir "$OUT"
  fi
  echo "$P fold 1 done $(date -u +%T)"
  if $K_PROBE; then  # another K: its own table, beside b15's K = 4
    python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${detections[@]:0:2}" \
      "$P=$OUT/noise20_cleanlab/detection" --out "$K/imagenette_b15_fold_probes/compare_$P"
    if compgen -G "$OUT/noise20_cleanlab_seed1/detection/fold_*/pred_probs.npy" > /dev/null; then
      # and its seed-1 detection beside them, once a fold of it has finished (kept, or trained since by the study command)
      python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${detections[@]:0:2}" \
        "$P=$OUT/noise20_cleanlab/detection" "${P}_s1=$OUT/noise20_cleanlab_seed1/detection" \
        --out "$K/imagenette_b15_fold_probes/compare_${P}_seed1"
    fi
  else
    detections+=("$P=$OUT/noise20_cleanlab/detection")
  fi
done
if [ ${#detections[@]} -gt 2 ]; then  # the fold-recipe probes, on fold 1 of 4
  python "$S/compare_folds.py" "${FLAGS[@]}" --detection "${detections[@]}" \
    --out "$K/imagenette_b15_fold_probes"
fi
