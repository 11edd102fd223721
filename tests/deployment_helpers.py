"""Shared by the deployment tests: one tiny trained checkpoint and its Space folder per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import tiny_config
from core.trainer import ImageNetTrainer
from deployment.export import DEPLOYMENT_DIR, export_checkpoint

SPACE_COPIED = ("app.py", "requirements.txt", "README.md", "examples")


def exported_space(base: Path) -> Path:
    """Train ResNet-18 at 32 px for one epoch on a slice of the bundled sample, export it, and assemble a Space
    folder (app.py, model/, examples/, README.md, requirements.txt) under ``base``.

    Built once per test process: every test module passes the base temp dir (one per pytest-xdist worker) and
    reuses the folder.
    Returns the Space folder; the checkpoint is ``base / "run" / "models" / "best.pt"``.
    """
    space = base / "space"
    if (space / "model" / "config.json").is_file():
        return space
    # 64-px evaluation (training at 32 px): layer4 is 2 x 2, so Grad-CAM has a map to show
    cfg = tiny_config(base, data={"fraction": 0.05, "val_fraction": 0.2, "val_image_size": 64},
                      training={"epochs": 1}, logging={"output_dir": base / "run"})
    ImageNetTrainer(cfg).fit()
    space.mkdir(parents=True, exist_ok=True)
    for name in SPACE_COPIED:
        src = DEPLOYMENT_DIR / name
        if src.is_dir():
            shutil.copytree(src, space / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, space / name)
    export_checkpoint(base / "run" / "models" / "best.pt", space / "model", readme=space / "README.md")
    return space


def checkpoint_of(space: Path) -> Path:
    """The checkpoint that ``space`` was exported from."""
    return space.parent / "run" / "models" / "best.pt"
