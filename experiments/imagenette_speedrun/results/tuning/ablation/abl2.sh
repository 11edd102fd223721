#!/bin/bash
# More ablations of the short recipe on the held-out tuning split (8,522 train / 947 held-out), sequential, alone.
cd /work/main
COMMON="--data.root /work/data/imagenette-tune --config experiments/imagenette_speedrun/short.yaml --training.seed 0 --logging.progress_bar false --training.resume none"
run() { name=$1; shift; echo "== $name $(date +%T)"; /usr/bin/time -f "$name wall %e s" python experiments/imagenette_speedrun/train.py $COMMON --logging.output_dir /work/runs/abl/$name "$@" > /work/runs/abl/$name.log 2>&1; tail -1 /work/runs/abl/$name.log; grep "epoch .*/" /work/runs/abl/$name.log | tail -1; }
run A5_ema0.995 --training.ema_decay 0.995
run A6_onecycle --training.scheduler onecycle
