"""Phase 3: train on the full dataset, starting from phase 2's best, with EMA, label smoothing, clipping and a
large effective batch through accumulation; survives spot interruptions (SIGTERM -> checkpoint -> resume).

    python experiments/phase3_full_training/train.py                               # bundled sample
    python experiments/phase3_full_training/train.py --data.root /data/ILSVRC2012  # the real phase-3 recipe
    torchrun --nproc_per_node=8 experiments/phase3_full_training/train.py --data.root /data/ILSVRC2012

Starts from experiments/phase2_finetune/models/best.pt when it exists, from scratch otherwise.
After an interruption run the same command again: --training.resume auto (the default) continues from last.pt.
"""

import sys
from pathlib import Path

from core.cli import experiment_main

PHASE2_BEST = Path(__file__).resolve().parents[1] / "phase2_finetune" / "models" / "best.pt"

if __name__ == "__main__":
    sys.exit(experiment_main(__file__, sys.argv[1:], description=__doc__, previous_best=PHASE2_BEST,
                             previous_name="phase 2"))
