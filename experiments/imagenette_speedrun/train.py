"""Imagenette speedrun: ResNet-18 from scratch on all of Imagenette, as fast to a given top-1 as this CPU allows.

    python experiments/imagenette_speedrun/train.py --data.root ../shared/data/imagenette2-224     # the recipe
    python experiments/imagenette_speedrun/train.py --data.root DIR --config experiments/imagenette_speedrun/short.yaml
    python experiments/imagenette_speedrun/train.py                  # the bundled 10-class sample, a quick check

Settings: config.yaml (the recipe, decided by measurement on a split of train; RESULTS.md) < sample.yaml (only
without --data.root) < --config FILE < command-line flags. Writes logs/ (metrics.jsonl with wall_time_s per epoch,
summary.json with the run's wall time) and models/ beside this file, or under --logging.output_dir.
"""

import sys

from core.cli import experiment_main

if __name__ == "__main__":
    sys.exit(experiment_main(__file__, sys.argv[1:], description=__doc__))
