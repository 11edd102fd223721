#!/bin/bash
# Target (c), long160_wd.yaml on long160.yaml on long.yaml on config.yaml at 2664770, seeds 0 then 1 (SEEDS), each alone on the machine.
cd /work/wt-g
export PYTHONPATH=/work/wt-g
mkdir -p /work/runs/c160wd
for s in ${SEEDS:-0 1}; do
  echo "== c160wd_s$s $(date -u +%T)"
  /usr/bin/time -f "c160wd_s$s wall %e s" python experiments/imagenette_speedrun/train.py \
      --data.root /work/shared/data/imagenette2-224 --config experiments/imagenette_speedrun/long.yaml \
      --config experiments/imagenette_speedrun/long160.yaml --config experiments/imagenette_speedrun/long160_wd.yaml \
      --training.seed $s --logging.progress_bar false --logging.output_dir /work/runs/c160wd/c160wd_s$s \
      > /work/runs/c160wd/c160wd_s$s.log 2>&1
  tail -1 /work/runs/c160wd/c160wd_s$s.log
done
echo "== done $(date -u +%T)"
