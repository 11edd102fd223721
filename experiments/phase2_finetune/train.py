"""Phase 2: fine-tune phase 1's best model with stronger augmentation, a lower LR, and resolution ramped to 224 px.

    python experiments/phase2_finetune/train.py                               # bundled sample, chains from phase 1
    python experiments/phase2_finetune/train.py --data.root /data/ILSVRC2012  # the real phase-2 recipe
    python experiments/phase2_finetune/train.py --help

Starts from experiments/phase1_subset_20pct/models/best.pt when it exists (the class mapping is checked against
the data), from scratch otherwise; --training.init_from PATH picks another checkpoint.
Settings: config.yaml < sample.yaml (only without --data.root) < command-line flags.
"""

import sys
from pathlib import Path

from core.cli import experiment_main

PHASE1_BEST = Path(__file__).resolve().parents[1] / "phase1_subset_20pct" / "models" / "best.pt"

if __name__ == "__main__":
    sys.exit(experiment_main(__file__, sys.argv[1:], description=__doc__, previous_best=PHASE1_BEST,
                             previous_name="phase 1"))
