#!/bin/bash
# Target (c) with BlurPool (long.yaml layered on config.yaml; training code as at d60e491), seed 1, alone on the machine.
cd /work/wt-c
export PYTHONPATH=/work/wt-c
s=${SEED:-1}
echo "== c30bp_s$s $(date -u +%T)"
/usr/bin/time -f "c30bp_s$s wall %e s" python experiments/imagenette_speedrun/train.py \
    --data.root /work/shared/data/imagenette2-224 --config experiments/imagenette_speedrun/long.yaml \
    --training.seed $s --logging.progress_bar false --logging.output_dir /work/runs/c/c30bp_s$s \
    > /work/runs/c/c30bp_s$s.log 2>&1
tail -1 /work/runs/c/c30bp_s$s.log
echo "== done $(date -u +%T)"
