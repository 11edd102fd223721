"""Staged training: each stage reuses the previous stage's backbone and re-initialises the head for its classes.

The three-stage strategy: Imagenette (10 classes, 224 px) -> Tiny ImageNet (200 classes, 64 px) -> ImageNet-1k.

    python experiments/progressive_stages/run.py                        # two quick stages on the bundled sample
    python experiments/progressive_stages/run.py \\
        --stages.root imagenette=/data/imagenette2 --stages.root tiny_imagenet=/data/tiny-imagenet-200 \\
        --stages.root imagenet1k=/data/ILSVRC2012                       # the real three stages (stages.yaml)
    python experiments/progressive_stages/run.py --stages.file my_stages.yaml --stages.root ... --training.epochs 2

Stages are listed in a YAML file (``stages:`` with ``name`` and ``config`` per stage); each stage's settings are
in its own config file beside it. Flags of the form --section.field apply to every stage. Each stage writes
<--logging.output_dir>/<name>/logs and /models; a finished stage is not rerun (it resumes as complete). The older
spellings --stages, --root and --output-dir still work.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

from core.cli import EXIT_OK, run_entry
from core.config import ExperimentConfig, parse_config

HERE = Path(__file__).resolve().parent
log = logging.getLogger("progressive_stages")


def load_stages(path: Path) -> list[dict]:
    """The ordered stages of a stages file: [{"name", "config" (absolute path)}, ...].

    Raises:
        ValueError: a malformed file (no list, a stage without name/config, duplicate names).
        FileNotFoundError: a stage's config file is missing.
    """
    spec = yaml.safe_load(Path(path).read_text()) or {}
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{path}: expected a non-empty 'stages:' list")
    names = [s.get("name") for s in stages]
    if None in names or any("config" not in s for s in stages) or len(set(names)) != len(names):
        raise ValueError(f"{path}: every stage needs a unique 'name' and a 'config' file")
    out = []
    for s in stages:
        cfg_path = (Path(path).parent / s["config"]).resolve()
        if not cfg_path.is_file():
            raise FileNotFoundError(f"stage '{s['name']}': config file {cfg_path} not found")
        out.append({"name": s["name"], "config": cfg_path})
    return out


def stage_configs(stages: list[dict], roots: dict[str, Path], output_dir: Path,
                  overrides: Sequence[str]) -> list[ExperimentConfig]:
    """One config per stage: its YAML < the command-line overrides; data root from ``roots`` (None = bundled
    sample); stage i > 0 starts from stage i-1's best.pt with a re-initialised classifier."""
    unknown = sorted(set(roots) - {s["name"] for s in stages})
    if unknown:
        raise ValueError(f"--stages.root names {unknown} match no stage; stages: {[s['name'] for s in stages]}")
    configs: list[ExperimentConfig] = []
    for i, stage in enumerate(stages):
        cfg = parse_config(list(overrides), [stage["config"]])
        data = dataclasses.replace(cfg.data, root=roots.get(stage["name"], cfg.data.root))
        training = cfg.training
        if i > 0:
            previous = configs[-1].logging.output_dir / "models" / "best.pt"
            training = dataclasses.replace(training, init_from=previous, reinit_head=True)
        logging_ = dataclasses.replace(cfg.logging, output_dir=output_dir / stage["name"],
                                       run_name=cfg.logging.run_name or f"stage{i + 1}-{stage['name']}")
        configs.append(dataclasses.replace(cfg, data=data, training=training, logging=logging_))
    return configs


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train the stages in order through :func:`core.cli.run_entry` (DDP set-up, exit codes); returns the exit
    code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages.file", "--stages", dest="stages", type=Path, default=None,
                        help="stages file (default: stages.yaml with --root, sample_stages.yaml without)")
    parser.add_argument("--stages.root", "--root", dest="root", action="append", default=[], metavar="NAME=PATH",
                        help="data root of the stage NAME (repeatable)")
    parser.add_argument("--logging.output_dir", "--output-dir", dest="output_dir", type=Path, default=HERE,
                        help="stage runs go to OUTPUT_DIR/<stage name>")
    args, overrides = parser.parse_known_args(argv)
    return run_entry(lambda: run_stages(args.stages, args.root, args.output_dir, overrides))


def run_stages(stages_file: Optional[Path], root_items: Sequence[str], output_dir: Path,
               overrides: Sequence[str]) -> int:
    """Parse the ``--root NAME=PATH`` items, train every stage not yet finished, log the results.

    Returns:
        the exit code: 0 (also when a signal stopped a stage, its checkpoint saved).

    Raises:
        ValueError, FileNotFoundError: bad stages file, roots or flags (exit code 2 through ``run_entry``).
    """
    from core.cli import build_trainer

    roots = {}
    for item in root_items:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--stages.root {item!r}: expected NAME=PATH")
        roots[name] = Path(path)
    stages = load_stages(stages_file or HERE / ("stages.yaml" if roots else "sample_stages.yaml"))
    configs = stage_configs(stages, roots, output_dir.resolve(), overrides)
    results = []
    for stage, cfg in zip(stages, configs):
        log.info("stage %s: %s from %s", stage["name"], cfg.model.name,
                 cfg.training.init_from or "scratch (random initialisation)")
        result = build_trainer(cfg).fit()
        results.append((stage["name"], result["best_top1"]))
        if result["interrupted"]:
            print("stopped by a signal; run the same command again to continue", file=sys.stderr)
            return EXIT_OK
    for name, top1 in results:
        log.info("stage %s: best val top-1 %.2f%%", name, top1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
