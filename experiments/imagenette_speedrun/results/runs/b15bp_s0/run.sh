#!/bin/bash
# Target (b) with BlurPool (config.yaml at d60e491), seeds 0 and 1, one after the other, alone on the machine.
cd /work/wt-b
export PYTHONPATH=/work/wt-b
for s in 0 1; do
  echo "== b15bp_s$s $(date -u +%T)"
  /usr/bin/time -f "b15bp_s$s wall %e s" python experiments/imagenette_speedrun/train.py \
      --data.root /work/shared/data/imagenette2-224 --training.seed $s --logging.progress_bar false \
      --logging.output_dir /work/runs/b/b15bp_s$s > /work/runs/b/b15bp_s$s.log 2>&1
  tail -1 /work/runs/b/b15bp_s$s.log
done
echo "== done $(date -u +%T)"
