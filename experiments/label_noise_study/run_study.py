"""Label-noise study: how much top-1 does label noise cost, and how much does cleaning win back?

Seven runs with the same seed, subset, model and schedule: clean labels; 20 % symmetric noise; 20 % noise with
80 % simulated cleaning; 40 % noise; 40 % noise with 60 % simulated cleaning; 20 % and 40 % noise cleaned by a
cleanlab manifest (K-fold confident learning). Writes results.csv, results.md and results.png.

    python experiments/label_noise_study/run_study.py            # bundled sample, tiny schedule (a smoke run)
    python experiments/label_noise_study/run_study.py --data.root ../shared/data/imagenette2-224   # config.yaml
    python experiments/label_noise_study/run_study.py --help     # every flag: --data.*, --training.*, --study.*, --cl.*

Settings: config.yaml < sample.yaml (only without --data.root) < command-line flags. Writes under
--logging.output_dir (default: runs/ beside this file), one folder per experiment. Rerunning the same command
skips finished experiments and resumes an interrupted one from its last checkpoint.
"""

import sys

from services.noise_study import main

if __name__ == "__main__":
    sys.exit(main(__file__, sys.argv[1:], description=__doc__))
