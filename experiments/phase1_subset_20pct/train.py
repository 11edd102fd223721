"""Phase 1: train a ResNet from scratch on a 20 % stratified subset of ImageNet at low resolution.

    python experiments/phase1_subset_20pct/train.py                               # bundled sample, ~5 min on CPU
    python experiments/phase1_subset_20pct/train.py --data.root /data/ILSVRC2012  # the real phase-1 recipe
    python experiments/phase1_subset_20pct/train.py --help                        # every flag, with its unit

Settings: config.yaml (the real recipe) < sample.yaml (only without --data.root) < command-line flags.
Writes logs/ and models/ beside this file, or under --logging.output_dir.
"""

import sys

from core.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main(__file__, sys.argv[1:], description=__doc__))
