#!/bin/bash
# Issue 13: detection at 20 % noise with fold models on the 15-epoch recipe (folds_15ep.yaml); the cleaned row
# trains 8 epochs as in imagenette_cpu.yaml. From a worktree pinned at the commit (2e475cc).
set -u
WT=/work/folds15-wt
cd $WT
export PYTHONPATH=$WT
OUT=/work/main/experiments/label_noise_study/runs/folds15
# the study's finished seed-0 rows that this one compares with (same settings: their fingerprints are checked)
for row in clean noise20 noise20_sim80; do
  mkdir -p $OUT/$row
  [ -f $OUT/$row/result.json ] || cp experiments/label_noise_study/results/imagenette_cpu/$row/result.json $OUT/$row/
done
echo "start $(date -u) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root ../shared/data/imagenette2-224 \
  --config experiments/label_noise_study/imagenette_cpu.yaml \
  --study.fold_config experiments/label_noise_study/folds_15ep.yaml --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0] \
  --study.cleanlab_remove_only false --logging.output_dir $OUT --logging.progress_bar false
echo "end $(date -u) rc=$?"
