#!/bin/bash
# Weight decay 5e-4 against config.yaml's 5e-5 (C0_progressive, abl4.sh), on the held-out tuning split (8,522 train /
# 947 held out), seeds 0 and 1, sequential, alone on the machine. Prepared in session 6 (2026-12-02); the rule is in
# RULE5.txt, written before any of these runs. Remake the split first on a fresh machine:
#   python experiments/imagenette_speedrun/make_tuning_split.py ../shared/data/imagenette2-224 /work/data/imagenette-tune
cd "${REPO:-/work/main}"
export PYTHONPATH="$PWD"      # import this tree, not whichever one is pip-installed (a pinned worktree)
mkdir -p /work/runs/abl5
COMMON="--data.root /work/data/imagenette-tune --logging.progress_bar false --training.resume none --training.eval_every_epochs 100"
run() { name=$1; shift; echo "== $name $(date +%T)"; /usr/bin/time -f "$name wall %e s" python experiments/imagenette_speedrun/train.py $COMMON --logging.output_dir /work/runs/abl5/$name "$@" > /work/runs/abl5/$name.log 2>&1; tail -1 /work/runs/abl5/$name.log; }
P="--training.epochs 8 --data.ramp_start_epoch 3 --data.ramp_end_epoch 7"
run D1_wd5e-4_s0 --training.seed 0 $P --training.weight_decay 5.0e-4
run D1_wd5e-4_s1 --training.seed 1 $P --training.weight_decay 5.0e-4
echo "== done $(date +%T)"
