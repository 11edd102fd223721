#!/bin/bash
set -u
WT=/work/folds15-wt
cd $WT
export PYTHONPATH=$WT
OUT=/work/main/experiments/label_noise_study/runs/folds15
echo "start $(date -u) $(git rev-parse --short HEAD)"
python experiments/label_noise_study/run_study.py --data.root ../shared/data/imagenette2-224 \
  --config experiments/label_noise_study/imagenette_cpu.yaml \
  --study.fold_config experiments/label_noise_study/folds_15ep.yaml --study.noise_rates [0.2] \
  --study.simulated_detection_rates [0.8] --study.noise_only_rates [] --study.seeds [0,1] \
  --study.cleanlab_remove_only true --logging.output_dir $OUT --logging.progress_bar false
echo "end $(date -u) rc=$?"
