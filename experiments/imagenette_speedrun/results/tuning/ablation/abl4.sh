#!/bin/bash
# Progressive resizing against a fixed size at (about) equal time, on the held-out tuning split (8,522 train / 947
# held-out), seeds 0 and 1, sequential, alone on the machine. Prepared in session 5 (2026-12-02); the rule is in
# RULE4.txt, written before any of these runs. Both arms are config.yaml's recipe (BlurPool, lr 0.25 at batch 64,
# linear to 0, label smoothing 0.1), tested at 128 px:
#   P: 8 epochs, 64 px x4, 80, 96, 112, 128 (a short FFCV ramp), about 12 min at session 2's per-epoch costs;
#   F: 4 epochs at 128 px throughout, estimated at about the same time (it ran 13 % faster: see C2 below);
#   C2: 5 epochs at 128 px, at least the time of P.
# Remake the split first on a fresh machine:
#   python experiments/imagenette_speedrun/make_tuning_split.py ../shared/data/imagenette2-224 /work/data/imagenette-tune
cd "${REPO:-/work/main}"
export PYTHONPATH="$PWD"      # import this tree, not whichever one is pip-installed (a pinned worktree)
mkdir -p /work/runs/abl4
COMMON="--data.root /work/data/imagenette-tune --logging.progress_bar false --training.resume none --training.eval_every_epochs 100"
run() { name=$1; shift; echo "== $name $(date +%T)"; /usr/bin/time -f "$name wall %e s" python experiments/imagenette_speedrun/train.py $COMMON --logging.output_dir /work/runs/abl4/$name "$@" > /work/runs/abl4/$name.log 2>&1; tail -1 /work/runs/abl4/$name.log; }
P="--training.epochs 8 --data.ramp_start_epoch 3 --data.ramp_end_epoch 7"
F="--training.epochs 4 --data.progressive_resizing false"
run C0_progressive_s0 --training.seed 0 $P
run C1_fixed128_s0 --training.seed 0 $F
run C0_progressive_s1 --training.seed 1 $P
run C1_fixed128_s1 --training.seed 1 $F
# Added at 12:51 UTC (RULE4.txt's addendum): the fixed arm with at least the progressive arm's time.
F5="--training.epochs 5 --data.progressive_resizing false"
run C2_fixed128_5ep_s0 --training.seed 0 $F5
run C2_fixed128_5ep_s1 --training.seed 1 $F5
echo "== done $(date +%T)"
