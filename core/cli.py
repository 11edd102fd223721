"""Entry point shared by the experiment scripts: parse the phase's YAML and flags, train, map errors to exit codes."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from core.checkpoint import CheckpointMismatchError
from core.config import ExperimentConfig, parse_config

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def experiment_config(script_dir: Path, argv: Optional[Sequence[str]] = None,
                      description: str = "") -> ExperimentConfig:
    """The config of an experiment script living in ``script_dir``.

    Layers, lowest first: dataclass defaults, ``script_dir/config.yaml`` (the real recipe), then
    ``script_dir/sample.yaml`` only when no ``--data.root`` is given anywhere (the quick run on the bundled
    sample), then the command line. ``--logging.output_dir`` defaults to ``script_dir`` (logs/ and models/
    inside it).
    """
    script_dir = Path(script_dir).resolve()
    base = [script_dir / "config.yaml"] if (script_dir / "config.yaml").is_file() else []
    cfg = parse_config(argv, base, description)
    sample = script_dir / "sample.yaml"
    if cfg.data.root is None and sample.is_file():
        cfg = parse_config(argv, base + [sample], description)
    if cfg.logging.output_dir is None:
        cfg = dataclasses.replace(cfg, logging=dataclasses.replace(cfg.logging, output_dir=script_dir))
    return cfg


def experiment_main(script_file: str, argv: Optional[Sequence[str]] = None, description: str = "") -> int:
    """Parse, train and report for the script at ``script_file``; returns the process exit code.

    Exit codes: 0 done (or stopped by SIGTERM with a checkpoint saved), 1 training failed (NaN/Inf loss),
    2 bad input (invalid config, missing data, mismatched checkpoint) with the message and its fix.
    """
    from core.trainer import ImageNetTrainer, NonFiniteLossError

    try:
        cfg = experiment_config(Path(script_file).parent, argv, description)
        trainer = ImageNetTrainer(cfg)
        if trainer.data.using_bundled_sample:
            log.warning("training on the BUNDLED SAMPLE (%d train / %d val images, %d classes) for a quick check; "
                        "pass --data.root /path/to/ILSVRC2012 (or any ImageFolder root) for the real recipe",
                        len(trainer.data.train_ids), len(trainer.data.val_ids), trainer.data.num_classes)
        result = trainer.fit()
    except (ValueError, FileNotFoundError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as e:
        log.error("%s", e)
        return EXIT_FAILED
    if result["interrupted"]:
        print("stopped by a signal; resume with the same command plus --training.resume auto", file=sys.stderr)
    return EXIT_OK
