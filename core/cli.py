"""Entry point shared by the experiment scripts: parse the phase's YAML and flags, train, map errors to exit codes."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from core.checkpoint import CheckpointMismatchError
from core.config import ExperimentConfig, parse_config

if TYPE_CHECKING:
    from core.data.manager import ImageNetDataManager
    from core.trainer import ImageNetTrainer

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def experiment_config(script_dir: Path, argv: Optional[Sequence[str]] = None, description: str = "",
                      defaults: Optional[dict[str, Any]] = None) -> ExperimentConfig:
    """The config of an experiment script living in ``script_dir``.

    Layers, lowest first: dataclass defaults, ``script_dir/config.yaml`` (the real recipe), then
    ``script_dir/sample.yaml`` only when no ``--data.root`` is given anywhere (the quick run on the bundled
    sample), then the command line. ``--logging.output_dir`` defaults to ``script_dir`` (logs/ and models/
    inside it), and ``defaults`` (``{"section.field": value}``) replace other dataclass defaults. ``--help`` and
    ``--print_config`` show the values so resolved.

    Raises:
        SystemExit: unknown flags or wrong types (usage printed), or after ``--help``/``--print_config``.
        ValueError: out-of-range values, all reported together.
    """
    script_dir = Path(script_dir).resolve()
    base = [script_dir / "config.yaml"] if (script_dir / "config.yaml").is_file() else []
    sample = [script_dir / "sample.yaml"] if (script_dir / "sample.yaml").is_file() else []
    return parse_config(argv, base, description, sample_files=sample,
                        defaults={"logging.output_dir": str(script_dir), **(defaults or {})})


def chained_init_default(previous_best: Optional[Path]) -> dict[str, Any]:
    """The parser default ``{"training.init_from": previous_best}`` when that checkpoint exists (so that ``--help``
    and ``--print_config`` show it), else nothing."""
    return {"training.init_from": str(previous_best)} if previous_best and Path(previous_best).is_file() else {}


def with_default_init(cfg: ExperimentConfig, previous_best: Optional[Path], previous_name: str) -> ExperimentConfig:
    """Chain phases: start from ``previous_best`` (the previous phase's best.pt) unless ``--training.init_from``
    is given; train from scratch, saying so, when that file does not exist."""
    if previous_best is None or (cfg.training.init_from is not None
                                 and Path(cfg.training.init_from) != Path(previous_best)):
        return cfg
    if Path(previous_best).is_file():
        log.info("starting from %s's best checkpoint %s", previous_name, previous_best)
        return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, init_from=Path(previous_best)))
    log.warning("no %s checkpoint at %s: training from scratch (run %s first, or pass --training.init_from)",
                previous_name, previous_best, previous_name)
    return cfg


def run_entry(body: Callable[[], int]) -> int:
    """Run an entry point's ``body`` (parse, build, train, report; returns the exit code) under the one contract
    that every training command shares: the process group set up from torchrun's environment (a no-op for one
    process), logging, errors mapped to exit codes, and the process group torn down.

    Used by the experiment scripts (:func:`experiment_main`), the label-noise study, the progressive stages and
    the service commands (label issues, LR finder).

    Exit codes: 0 done (or stopped by SIGTERM with a checkpoint saved), 1 training failed (NaN/Inf loss),
    2 bad input (invalid config, missing data, mismatched checkpoint) with the message and its fix.
    """
    from core.distributed import destroy_distributed, init_distributed
    from core.logger import setup_logging
    from core.trainer import NonFiniteLossError, RunInterrupted

    try:
        ctx = init_distributed()
        setup_logging(None, rank=ctx.rank)
        return body()
    except (ValueError, FileNotFoundError, CheckpointMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as e:
        log.error("%s", e)
        return EXIT_FAILED
    except RunInterrupted as e:  # a fold or study row stopped by SIGTERM, its checkpoint saved
        print(str(e), file=sys.stderr)
        return EXIT_OK
    finally:
        destroy_distributed()


def build_trainer(cfg: ExperimentConfig, data: Optional[ImageNetDataManager] = None) -> ImageNetTrainer:
    """The one way every entry point sets up a run: ``--training.lr_finder`` first, on the initial weights
    (:func:`core.lr_finder.lr_finder_before_run`), then the trainer at the resulting LR.

    Args:
        cfg: the validated experiment config.
        data: the run's data manager (default: the trainer builds it from ``cfg.data``).
    """
    import torch

    from core.logger import setup_logging
    from core.lr_finder import lr_finder_before_run
    from core.step import build_run_data
    from core.trainer import ImageNetTrainer

    if cfg.training.lr_finder:  # the sweep's log lines go to the run's train.log, as the training's do
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        setup_logging(cfg.logging.logs_dir, cfg.logging.log_level, rank)
        data = data or build_run_data(cfg, rank)  # one manager (one file index) for the sweep and the run
    return ImageNetTrainer(lr_finder_before_run(cfg, data), data=data)


def experiment_main(script_file: str, argv: Optional[Sequence[str]] = None, description: str = "",
                    previous_best: Optional[Path] = None, previous_name: str = "the previous phase") -> int:
    """Parse, train and report for the script at ``script_file``; returns the process exit code (:func:`run_entry`).

    Under ``torchrun`` every process runs this; the process group is set up from torchrun's environment.

    Args:
        previous_best: the previous phase's best.pt, used as ``--training.init_from`` when that flag is unset
            and the file exists.
    """
    def body() -> int:
        cfg = experiment_config(Path(script_file).parent, argv, description, chained_init_default(previous_best))
        cfg = with_default_init(cfg, previous_best, previous_name)
        trainer = build_trainer(cfg)
        if trainer.data.using_bundled_sample:
            log.warning("training on the BUNDLED SAMPLE (%d train / %d val images, %d classes) for a quick check; "
                        "pass --data.root /path/to/ILSVRC2012 (or any ImageFolder root) for the real recipe",
                        len(trainer.data.train_ids), len(trainer.data.val_ids), trainer.data.num_classes)
        if trainer.fit()["interrupted"]:
            print("stopped by a signal; resume with the same command plus --training.resume auto", file=sys.stderr)
        return EXIT_OK

    return run_entry(body)
