"""Command line of the LR range test (Smith 2017; the sweep and the suggestion live in core/lr_finder.py).

    python -m services.lr_finder --config experiments/phase1_subset_20pct/sample.yaml --out runs/lr
    python -m services.lr_finder --config my.yaml --training.batch_size 64 --lr_finder.start_lr 1e-6 \\
        --lr_finder.end_lr 1 --lr_finder.num_steps 200

Writes ``lr_finder.png`` (loss against log LR, both suggestions marked), ``optimal_lr.txt`` (the suggested LR on
its first line) and ``lr_finder.json`` (the curve and both suggestions) to ``--lr_finder.out`` (default
``<output_dir>/logs/lr_finder``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from core.cli import run_entry
from core.config import parse_config
from core.lr_finder import (SUGGESTION_RULE, LRFinder, LRFinderResult, apply_lr_finder, check_suggestion,  # noqa: F401
                            cycle_train_loader, exponential_lrs, find_lr, lag_free_curve, smooth_losses, suggest_lr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m services.lr_finder --config X.yaml [--section.field value ...] [--lr_finder.field value ...]``;
    returns the exit code (:func:`core.cli.run_entry`). The older spellings (``--out``, ``--start-lr``,
    ``--end-lr``, ``--num-steps``, ``--beta``, ``--diverge-factor``) are aliases."""
    parser = argparse.ArgumentParser(
        prog="python -m services.lr_finder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every other flag (--config FILE, --data.root, --training.batch_size, ...) configures the run as in "
               "the experiment scripts; see `python experiments/phase1_subset_20pct/train.py --help`.")
    parser.add_argument("--lr_finder.out", "--out", dest="out", type=Path, default=None,
                        help="output folder (default: <--logging.output_dir>/logs/lr_finder)")
    parser.add_argument("--lr_finder.start_lr", "--start-lr", dest="start_lr", type=float, default=1e-7,
                        help="first LR of the sweep (default 1e-7)")
    parser.add_argument("--lr_finder.end_lr", "--end-lr", dest="end_lr", type=float, default=10.0,
                        help="last LR of the sweep (default 10)")
    parser.add_argument("--lr_finder.num_steps", "--num-steps", dest="num_steps", type=int, default=100,
                        help="optimizer steps in the sweep (default 100)")
    parser.add_argument("--lr_finder.beta", "--beta", dest="beta", type=float, default=0.98,
                        help="EMA factor of the smoothed loss (default 0.98)")
    parser.add_argument("--lr_finder.diverge_factor", "--diverge-factor", dest="diverge_factor", type=float,
                        default=4.0, help="stop when the smoothed loss exceeds this x its minimum (default 4)")
    own, rest = parser.parse_known_args(argv)
    return run_entry(lambda: _find_and_report(own, rest))


def _find_and_report(own: argparse.Namespace, rest: Sequence[str]) -> int:
    """Parse the run's config, sweep, print the suggestion in both units; returns the exit code."""
    cfg = parse_config(rest, description="Configure the run whose LR is probed.")
    if own.out is None and cfg.logging.output_dir is None:
        raise ValueError("pass --lr_finder.out DIR (or --logging.output_dir DIR) to say where the results go")
    result = find_lr(cfg, out_dir=own.out, start_lr=own.start_lr, end_lr=own.end_lr, num_steps=own.num_steps,
                     beta=own.beta, diverge_factor=own.diverge_factor)
    t = cfg.training
    units = (f" = --training.lr {t.lr_from_peak(result.suggested_lr):.3g} per {t.lr_reference_batch} images "
             f"(lr_scaling linear)" if t.lr_scaling == "linear" else "")
    print(f"suggested LR {result.suggested_lr:.3g} at effective batch {t.effective_batch_size} "
          f"(where the loss stops falling){units}; cross-check {result.min_loss_lr_div10:.3g} (/ 10); "
          f"{len(result.lrs)} steps{', diverged' if result.diverged else ''}")
    problem = result.problem
    if problem:
        print(f"warning: do not train at this suggestion: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
