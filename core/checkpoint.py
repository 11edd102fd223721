"""Checkpoint files: atomic writes, safe loading, and the checks that a checkpoint fits the run."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn

from core.atomic import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another architecture, class list or training labels than the current run."""


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` atomically and return the path."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def link_checkpoint(src: Path, dst: Path) -> None:
    """Make ``dst`` (``best.pt``, ``epoch_NNN.pt``) hold ``src``'s bytes as they are now, atomically.

    A hard link shares ``last.pt``'s bytes; ``last.pt`` is later replaced (``os.replace``) by a new file, so ``dst``
    keeps this version. Linked to a temporary name, then renamed; copied where the file system has no hard links.
    """
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), NumPy and Python, as tensors and ints only, so the
    checkpoint still loads with ``weights_only=True``."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _tuples_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_lists_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples_to_lists(x: Any) -> Any:
    return [_tuples_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _lists_to_tuples(x: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in x) if isinstance(x, list) else x


def resume_checkpoint(resume: str, models_dir: Path) -> Optional[Path]:
    """The checkpoint a run resumes from, or None for a fresh start: ``--training.resume`` 'auto' is
    ``models_dir/last.pt`` when it exists, 'none' is always fresh, anything else is that path (which
    :func:`load_checkpoint` then checks)."""
    if resume == "none":
        return None
    path = Path(models_dir) / "last.pt" if resume == "auto" else Path(resume)
    return None if resume == "auto" and not path.is_file() else path


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :class:`core.trainer.ImageNetTrainer` with ``torch.load(weights_only=True)``:
    no arbitrary pickled code is executed.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint of this project (or is damaged).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types; re-raise as one the caller can handle
        raise ValueError(f"could not read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    return ckpt


def check_compatible(ckpt: dict[str, Any], model_name: str, classes: list[str], path: Optional[Path] = None,
                     num_classes: Optional[int] = None, check_classes: bool = True) -> None:
    """Refuse a checkpoint made for another architecture or another class list.

    Args:
        ckpt: a loaded checkpoint dict.
        model_name: the run's ``--model.name``.
        classes: the run's class list (WNIDs, in index order).
        num_classes: the run's classifier width, when it differs from ``len(classes)``.
        check_classes: False when the classifier is re-initialised anyway (only the architecture must match).

    Raises:
        CheckpointMismatchError: naming what differs and how to proceed.
    """
    where = f"checkpoint {path}" if path else "checkpoint"
    saved_model = (ckpt.get("config") or {}).get("model", {}).get("name")
    if saved_model is not None and saved_model != model_name:
        raise CheckpointMismatchError(
            f"{where} holds a {saved_model} but this run builds a {model_name}; pass --model.name {saved_model}, "
            f"or start a new run with another --logging.output_dir (or --training.resume none)")
    saved_classes = ckpt.get("classes")
    if check_classes and saved_classes is not None and list(saved_classes) != list(classes):
        missing = sorted(set(classes) - set(saved_classes))[:5]
        extra = sorted(set(saved_classes) - set(classes))[:5]
        detail = (f"{len(saved_classes)} classes saved vs {len(classes)} in the data; "
                  f"in the data only: {missing}; in the checkpoint only: {extra}")
        if not missing and not extra:
            detail = "same classes in a different order"
        raise CheckpointMismatchError(
            f"{where} was trained on another class list ({detail}); use data with the same classes, "
            f"or re-initialise the classifier head for the new classes")
    saved_num = (ckpt.get("config") or {}).get("model", {}).get("num_classes")
    if num_classes is not None and saved_num is not None and saved_num != num_classes:
        raise CheckpointMismatchError(f"{where} has {saved_num} outputs but this run asks for {num_classes}")


LABELS_DIGEST_KEY = "train_labels_digest"
"""Checkpoint entry: :func:`core.label_noise.labels_digest` of the training ids, labels and soft targets."""


def check_same_labels(ckpt: dict[str, Any], digest: str, path: Optional[Path] = None,
                      fix: str = "start a new run with another --logging.output_dir") -> None:
    """Refuse to resume a checkpoint made on other training labels than this run's ``digest`` (another noise
    rate or seed, cleaning manifest, subset or soft targets): its epochs would count towards a run on labels
    it never saw. A checkpoint written before the entry existed is accepted (nothing to compare). ``fix`` is the
    way out the message offers (the caller knows whether the checkpoint is the run's own).

    Raises:
        CheckpointMismatchError: naming both digests and ``fix``.
    """
    saved = ckpt.get(LABELS_DIGEST_KEY)
    if saved is not None and saved != digest:
        where = f"checkpoint {path}" if path else "checkpoint"
        raise CheckpointMismatchError(
            f"{where} was trained on other labels (digest {saved[:12]}, this run's {digest[:12]}): the noise, "
            f"manifest, subset or soft targets changed since; train with the same labels, or {fix}")


def load_initial_weights(model: nn.Module, path: Path, model_name: str, classes: list[str],
                         reinit_head: bool) -> dict[str, Any]:
    """Start ``model`` from another run's checkpoint (``--training.init_from``): the previous phase or stage.

    Args:
        reinit_head: keep the new, freshly initialised classifier (``fc``) and load everything else; needed
            when the checkpoint was trained on another class list.

    Returns:
        the loaded checkpoint dict.

    Raises:
        CheckpointMismatchError: another architecture, another stem, or another class list without reinit_head.
    """
    ckpt = load_checkpoint(path)
    if reinit_head:
        check_compatible(ckpt, model_name, classes, path, check_classes=False)
        state = {k: v for k, v in ckpt["model"].items() if not k.startswith("fc.")}
    else:
        try:
            check_compatible(ckpt, model_name, classes, path)
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError(f"{e}; to reuse its backbone for these classes pass "
                                          f"--training.reinit_head true") from None
        state = ckpt["model"]
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise CheckpointMismatchError(
            f"{path} does not fit this model: shapes differ for {bad[:4]} (another --model.small_input?)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not (reinit_head and k.startswith("fc."))]:
        raise CheckpointMismatchError(f"{path}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    log.info("initial weights from %s%s", path, " (classifier re-initialised)" if reinit_head else "")
    return ckpt
