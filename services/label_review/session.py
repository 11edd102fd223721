"""The review's state and moves, without any UI: filtered queues, the next open item, decisions, bulk accept."""

from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np

from core.data.decode import decode_image
from services.label_review.cams import CamRenderer
from services.label_review.decisions import Decision, DecisionLog, make_decision, summarize
from services.label_review.issues import IssueSet, ReviewItem

log = logging.getLogger(__name__)

PLACEHOLDER_PX = 224


def placeholder(text: str, px: int = PLACEHOLDER_PX) -> np.ndarray:
    """A grey (px, px, 3) uint8 RGB tile with ``text`` on it, shown where an image cannot be read."""
    tile = np.full((px, px, 3), 208, np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(tile, line, (10, px // 2 - 10 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (90, 90, 90), 1,
                    cv2.LINE_AA)
    return tile


class ReviewSession:
    """One review of a label-issues folder: its items, the decision log and the Grad-CAM renderer.

    Positions are indices into ``issues.items`` (worst label-quality score first); a *queue* is the list of
    positions a filter keeps, in that order. Thread-safe as far as the log and the CAM renderer are.

    Args:
        issues: the loaded folder; log: its decisions; cams: the Grad-CAM renderer.
    """

    def __init__(self, issues: IssueSet, log_: DecisionLog, cams: CamRenderer):
        self.issues, self.log, self.cams = issues, log_, cams

    # -- queues ---------------------------------------------------------------------------------------------
    def queue(self, class_wnid: Optional[str] = None, pair: Optional[str] = None) -> list[int]:
        """Positions of the items whose given or suggested class is ``class_wnid`` and whose 'GIVEN>SUGGESTED'
        WNID pair is ``pair`` (None or '' = no condition)."""
        wnids = self.issues.classes.wnids
        out = []
        for pos, it in enumerate(self.issues.items):
            g, s = wnids[it.given], wnids[it.suggested]
            if class_wnid and class_wnid not in (g, s):
                continue
            if pair and pair != f"{g}>{s}":
                continue
            out.append(pos)
        return out

    def decision(self, pos: int) -> Optional[Decision]:
        """The last decision on the item at ``pos``, None when undecided."""
        return self.log.latest.get(self.issues.items[pos].id)

    def first_open(self, queue: list[int]) -> Optional[int]:
        """Where a review (re)starts: the first undecided item, else the first skipped one, else None."""
        return self._open([queue], exclude=None)

    def next_open(self, queue: list[int], pos: Optional[int]) -> Optional[int]:
        """The next undecided item after ``pos`` (wrapping round), else the next skipped one other than ``pos``,
        else None (everything in the queue has a decision)."""
        if pos not in queue:
            return self.first_open(queue)
        k = queue.index(pos)
        return self._open([queue[k + 1:], queue[:k]], exclude=pos)

    def _open(self, parts: list[list[int]], exclude: Optional[int]) -> Optional[int]:
        order = [p for part in parts for p in part if p != exclude]
        undecided = next((p for p in order if self.decision(p) is None), None)
        if undecided is not None:
            return undecided
        return next((p for p in order if self.decision(p).decision == "skip"), None)

    @staticmethod
    def step(queue: list[int], pos: Optional[int], delta: int) -> Optional[int]:
        """The item ``delta`` places from ``pos`` in ``queue``, clamped to its ends (Back / Next buttons)."""
        if not queue:
            return None
        if pos not in queue:
            return queue[0] if delta > 0 else queue[-1]
        return queue[min(max(queue.index(pos) + delta, 0), len(queue) - 1)]

    # -- decisions ------------------------------------------------------------------------------------------
    def decide(self, pos: int, decision: str, label: Optional[int] = None) -> Decision:
        """Record a decision on the item at ``pos`` (appended and fsynced before returning)."""
        d = make_decision(self.issues, self.issues.items[pos], decision, label)
        self.log.append([d])
        return d

    def bulk_candidates(self, queue: list[int], threshold: float) -> list[int]:
        """Undecided items of ``queue`` whose suggested class has probability >= ``threshold`` (skipped and
        decided items are left alone: a bulk action never overrides a reviewer)."""
        return [p for p in queue if self.decision(p) is None and self.issues.items[p].confidence >= threshold]

    def bulk_accept(self, positions: list[int]) -> int:
        """Relabel every item at ``positions`` to its suggestion (one append, one fsync); returns how many."""
        ds = [make_decision(self.issues, self.issues.items[p], "relabel") for p in positions]
        self.log.append(ds)
        return len(ds)

    def summary(self) -> dict:
        """:func:`services.label_review.decisions.summarize` of the decisions so far."""
        return summarize(self.issues, self.log.latest)

    # -- pixels ---------------------------------------------------------------------------------------------
    def image(self, item: ReviewItem) -> tuple[np.ndarray, Optional[str]]:
        """The item's (H, W, 3) uint8 RGB image, or a placeholder and a note saying what is wrong."""
        path = self.issues.image_dir / item.path if item.path else None
        if path is None:
            return placeholder("no file path"), ("This sample has no file path (a Hugging Face source); the review "
                                                 "shows files only. Decide from the scores, or skip (S).")
        if not path.is_file():
            return placeholder("image not found"), (f"Image not found: {path}. It was moved or deleted since the "
                                                    f"detection; restore it, or skip (S).")
        try:
            return decode_image(path), None
        except (OSError, ValueError) as e:
            return placeholder("cannot decode"), f"Image {path} cannot be decoded ({e}); skip (S) or remove (R)."

