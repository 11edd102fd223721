#!/bin/bash
# Target (c), 40 epochs with BlurPool (long40.yaml on long.yaml on config.yaml; training code as at d60e491), seeds 0
# then 1 (SEEDS), each alone on the machine, one after the other.
cd /work/wt-e
export PYTHONPATH=/work/wt-e
mkdir -p /work/runs/c40
for s in ${SEEDS:-0 1}; do
  echo "== c40bp_s$s $(date -u +%T)"
  /usr/bin/time -f "c40bp_s$s wall %e s" python experiments/imagenette_speedrun/train.py \
      --data.root /work/shared/data/imagenette2-224 --config experiments/imagenette_speedrun/long.yaml \
      --config experiments/imagenette_speedrun/long40.yaml \
      --training.seed $s --logging.progress_bar false --logging.output_dir /work/runs/c40/c40bp_s$s \
      > /work/runs/c40/c40bp_s$s.log 2>&1
  tail -1 /work/runs/c40/c40bp_s$s.log
done
echo "== done $(date -u +%T)"
