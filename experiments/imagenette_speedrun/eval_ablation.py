"""What test resolution (FixRes) and flip test-time augmentation buy, on one trained checkpoint, with no retraining.

    python experiments/imagenette_speedrun/eval_ablation.py RUN_DIR --sizes 64 80 96 112 128 --out ablation.json

Evaluates RUN_DIR/models/last.pt on the run's val split at each size, without and with flip TTA, through the
trainer's own evaluation, and prints one JSON line per setting: top-1, top-5 and the evaluation's wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from core.checkpoint import load_checkpoint
from core.config import ExperimentConfig
from core.trainer import ImageNetTrainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", required=True, help="evaluation crop sides (px)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    ckpt_path = a.run_dir / "models" / "last.pt"
    cfg = ExperimentConfig.from_dict(load_checkpoint(ckpt_path)["config"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            for hflip in (False, True):
                c = dataclasses.replace(
                    cfg, data=dataclasses.replace(cfg.data, val_image_size=size),
                    training=dataclasses.replace(cfg.training, eval_hflip=hflip, resume="none", lr_finder=False),
                    logging=dataclasses.replace(cfg.logging, output_dir=Path(tmp), wandb=False))
                trainer = ImageNetTrainer(c)
                trainer.load_checkpoint(ckpt_path, check_labels=False)  # the weights; labels set in code need not match
                start = time.perf_counter()
                metrics = trainer.evaluate()
                row = {"val_image_size": size, "eval_hflip": hflip, **{k: round(v, 2) for k, v in metrics.items()},
                       "eval_time_s": round(time.perf_counter() - start, 1),
                       "train_image_size": cfg.data.image_size}
                trainer.close()
                print(json.dumps(row), flush=True)
                rows.append(row)
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
