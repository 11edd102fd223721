#!/bin/bash
# BlurPool against the short recipe on the held-out tuning split (8,522 train / 947 held-out), seeds 0 and 1,
# sequential, alone on the machine.
cd /work/main
COMMON="--data.root /work/data/imagenette-tune --config experiments/imagenette_speedrun/short.yaml --logging.progress_bar false --training.resume none"
run() { name=$1; shift; echo "== $name $(date +%T)"; /usr/bin/time -f "$name wall %e s" python experiments/imagenette_speedrun/train.py $COMMON --logging.output_dir /work/runs/abl3/$name "$@" > /work/runs/abl3/$name.log 2>&1; tail -1 /work/runs/abl3/$name.log; }
run B0_base_s0 --training.seed 0
run B1_blurpool_s0 --training.seed 0 --model.blurpool true
run B0_base_s1 --training.seed 1
run B1_blurpool_s1 --training.seed 1 --model.blurpool true
echo "== done $(date +%T)"
