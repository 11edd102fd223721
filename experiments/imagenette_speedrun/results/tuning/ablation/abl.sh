#!/bin/bash
# Ablations of the short recipe on the held-out tuning split (8,522 train / 947 held-out), sequential, alone.
cd /work/main
COMMON="--data.root /work/data/imagenette-tune --config experiments/imagenette_speedrun/short.yaml --training.seed 0 --logging.progress_bar false --training.resume none"
run() { name=$1; shift; echo "== $name $(date +%T)"; /usr/bin/time -f "$name wall %e s" python experiments/imagenette_speedrun/train.py $COMMON --logging.output_dir /work/runs/abl/$name "$@" > /work/runs/abl/$name.log 2>&1; tail -1 /work/runs/abl/$name.log; grep "epoch .*/" /work/runs/abl/$name.log | tail -1; }
run A0_base
run A1_no_label_smoothing --training.label_smoothing 0
run A2_no_zero_init --model.zero_init_residual false
run A3_cosine --training.scheduler cosine
run A4_batch128_lr0.5 --training.batch_size 128 --training.lr 0.5
