"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

Torch-free, so that label manifests, review decisions and reports can use it without importing torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: Python < 3.13 has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write through a temporary file in the same folder, fsync it, then ``os.replace`` it into place.

    A crash (SIGKILL, power loss) leaves either the old file or the new one, never half of one. The file gets the
    permissions ``open()`` would give it (0644 under umask 022), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
