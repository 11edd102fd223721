#!/bin/bash
# Issue 13: the second training seed (1) of the 15-epoch-fold detection at 20 % noise: the same flips, new fold
# models and a new cleaned row (noise20_cleanlab_seed1), from the worktree pinned at 2e475cc as seed 0 was. Reuses
# the study's finished seed-1 clean and noise20 rows (their fingerprints are checked) and seed 0's finished rows.
set -u
WT=/work/folds15-wt
cd $WT
export PYTHONPATH=$WT
OUT=/work/main/experiments/label_noise_study/runs/folds15
for row in clean_seed1 noise20_seed1; do
  mkdir -p $OUT/$row
  [ -f $OUT/$row/result.json ] || cp experiments/label_noise_study/results/imagenette_cpu/$row/result.json $OUT/$row/
done
echo "start $(date -u) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root ../shared/data/imagenette2-224 \
  --config experiments/label_noise_study/imagenette_cpu.yaml \
  --study.fold_config experiments/label_noise_study/folds_15ep.yaml --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0,1] \
  --study.cleanlab_remove_only false --logging.output_dir $OUT --logging.progress_bar false
echo "end $(date -u) rc=$?"
