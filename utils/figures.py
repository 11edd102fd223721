"""Matplotlib helpers shared by the plot modules: a headless figure, saving it as PNG, short class names."""

from __future__ import annotations

import logging
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["DPI", "first_synonym", "new_figure", "save_figure"]

DPI = 120


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A bare Figure of ``figsize`` inches on an Agg canvas: no pyplot state, no GUI backend, nothing to close."""
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``DPI`` to ``out_path`` (parent folders created) and return the path."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    logger.info("wrote %s", out)
    return out


def first_synonym(name: str, width: int = 28) -> str:
    """The first synonym of a synset name ("tench, Tinca tinca" -> "tench"), cut to ``width`` chars."""
    first = str(name).split(",")[0].strip()
    return first if len(first) <= width else first[: width - 1] + "\u2026"
