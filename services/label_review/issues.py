"""The review queue: the flagged samples of a ``services.label_issues`` folder, checked against the data they name.

A label-issues folder holds ``label_issues.csv`` (one row per flagged sample), ``pred_probs.npy`` ((M, C)
out-of-sample probabilities, row i for sample id ``train_ids[i]``), ``train_ids.npy`` (or ``folds.npy`` and
``fold_k/scored_ids.npy``, from which the same order is rebuilt), the fold runs ``fold_k/models/*.pt`` and, for
injected noise, ``noise_mask.npy`` ((M,) bool, True where the given label was flipped).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.config import BUNDLED_SAMPLE_ROOT
from core.prepare import read_class_names
from services.issue_table import COLUMNS, ISSUES_FILE

log = logging.getLogger(__name__)

PROBS_FILE = "pred_probs.npy"
IDS_FILE = "train_ids.npy"
FOLDS_FILE = "folds.npy"
NOISE_FILE = "noise_mask.npy"
DETECT_HINT = "regenerate the folder with python -m services.label_issues"


class ReviewInputError(ValueError):
    """An input of the review (issues folder, data root, decisions file) is unusable; the message names the
    problem and the fix on one line."""


@dataclass(frozen=True)
class ClassList:
    """The classes of the data in index order (the column order of ``pred_probs.npy``).

    Attributes:
        wnids: class identifiers (WNIDs for ImageNet folders).
        names: human-readable names, e.g. "tench, Tinca tinca" (the WNID when no name file exists).
    """

    wnids: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.wnids)

    @property
    def index(self) -> dict[str, int]:
        """WNID -> class index."""
        return {w: i for i, w in enumerate(self.wnids)}

    def short(self, i: int) -> str:
        """The first WordNet lemma of class ``i`` ('tench')."""
        return self.names[i].split(",")[0].strip() or self.wnids[i]

    def label(self, i: int) -> str:
        """'tench (n01440764)': the name a reviewer reads, with the WNID that goes into the manifest."""
        return f"{self.short(i)} ({self.wnids[i]})"

    @classmethod
    def from_split(cls, split_dir: Path) -> "ClassList":
        """Classes of an ImageFolder split: its sorted, non-hidden sub-folders (the rule of
        ``core.data.index.scan_image_folder``), named from LOC_synset_mapping.txt / words.txt beside it.

        Raises:
            ReviewInputError: the split folder is missing or has no class folders.
        """
        split_dir = Path(split_dir)
        if not split_dir.is_dir():
            raise ReviewInputError(f"image folder {split_dir} not found; pass --data.root with the dataset the "
                                   f"detection ran on (it holds train/<wnid>/<image>)")
        wnids = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        if not wnids:
            raise ReviewInputError(f"no class folders in {split_dir}; pass --data.root with the dataset the "
                                   f"detection ran on")
        names = read_class_names(split_dir.parent)
        return cls(wnids=wnids, names=[names.get(w, w) for w in wnids])


@dataclass(frozen=True)
class ReviewItem:
    """One flagged sample.

    Attributes:
        id: full-split sample id (``core.label_noise``'s id: index in the split's sorted sample list).
        path: image path relative to the split folder ('' for Hugging Face sources).
        given, suggested: class indices (the label in the data, the detector's predicted class).
        confidence: out-of-sample probability of ``suggested``, in [0, 1].
        score: label-quality score of the given label (cleanlab ``self_confidence``: its probability), in [0, 1];
            low = likely wrong. The queue is sorted by it, worst first.
        row: row of ``pred_probs.npy`` (and ``noise_mask.npy``).
        noisy: whether the given label was flipped (``noise_mask.npy``), None without a mask.
    """

    id: int
    path: str
    given: int
    suggested: int
    confidence: float
    score: float
    row: int
    noisy: Optional[bool] = None

    @property
    def key(self) -> str:
        """The manifest entry: the relative path (robust to ids shifting), else the sample id."""
        return self.path or str(self.id)


@dataclass
class IssueSet:
    """A label-issues folder loaded for review.

    Attributes:
        directory: the folder; image_dir: the split folder the CSV paths are relative to.
        classes: the data's classes; items: flagged samples, worst label-quality score first.
        pred_probs: (M, C) float32 out-of-sample probabilities; fold_of: (M,) fold that scored each row, or None.
        has_noise_mask: ``noise_mask.npy`` was present (``item.noisy`` is set).
    """

    directory: Path
    image_dir: Path
    classes: ClassList
    items: list[ReviewItem]
    pred_probs: np.ndarray
    fold_of: Optional[np.ndarray]
    has_noise_mask: bool

    def __post_init__(self) -> None:
        self._by_id = {it.id: i for i, it in enumerate(self.items)}

    def position(self, sample_id: int) -> Optional[int]:
        """Queue position of a sample id, None when it was not flagged."""
        return self._by_id.get(int(sample_id))

    def probs(self, item: ReviewItem) -> np.ndarray:
        """(C,) probabilities of ``item``."""
        return np.asarray(self.pred_probs[item.row], dtype=np.float64)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ReviewInputError(f"{path} not found; run python -m services.label_issues --logging.output_dir "
                               f"{path.parent} first, or pass the folder it wrote as --issues")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ReviewInputError(f"{path} is not a label_issues table: missing column(s) {', '.join(missing)}; "
                                       f"{DETECT_HINT}")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ReviewInputError(f"{path} is damaged ({e}); {DETECT_HINT}") from None
    for lineno, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):  # DictReader's marks of a short or long row
            raise ReviewInputError(f"{path} line {lineno} does not have the header's {len(reader.fieldnames)} "
                                   f"fields; {DETECT_HINT}")
    return rows


def _parse_rows(path: Path, rows: list[dict[str, str]], classes: ClassList) -> list[tuple]:
    """(id, path, given, suggested, confidence) per row, checked against ``classes``."""
    out, seen = [], set()
    for lineno, r in enumerate(rows, start=2):
        try:
            sid, given, pred = int(r["sample_id"]), int(r["given"]), int(r["predicted"])
            conf = float(r["confidence"])
        except ValueError:
            bad = next(c for c in ("sample_id", "given", "predicted", "confidence")
                       if not _is_number(r[c], integer=c != "confidence"))
            raise ReviewInputError(f"{path} line {lineno}: {bad} {r[bad]!r} is not a number; {DETECT_HINT}") from None
        if sid < 0 or sid in seen or not 0 <= conf <= 1:
            what = "a negative sample_id" if sid < 0 else ("a repeated sample_id" if sid in seen
                                                           else f"confidence {conf} outside [0, 1]")
            raise ReviewInputError(f"{path} line {lineno}: {what}; {DETECT_HINT}")
        seen.add(sid)
        for idx, wnid in ((given, r["given_class"]), (pred, r["predicted_class"])):
            if not 0 <= idx < len(classes) or classes.wnids[idx] != wnid:
                there = classes.wnids[idx] if 0 <= idx < len(classes) else "no such class"
                raise ReviewInputError(
                    f"{path.parent} was made on another dataset: line {lineno} says class {idx} is {wnid}, the data "
                    f"has {there} ({len(classes)} classes); pass --data.root with the dataset the detection ran on")
        out.append((sid, r["path"].strip(), given, pred, conf))
    return out


def _is_number(text: str, integer: bool) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


def scored_ids(directory: Path, num_rows: int) -> np.ndarray:
    """(M,) sample id of each row of ``pred_probs.npy``: ``train_ids.npy``, else rebuilt from ``folds.npy`` and
    each fold's ``scored_ids.npy`` (fold k scored the rows with ``folds == k``, in row order).

    Raises:
        ReviewInputError: neither is there, or their length differs from ``num_rows``.
    """
    directory = Path(directory)
    ids_file, folds_file = directory / IDS_FILE, directory / FOLDS_FILE
    if ids_file.is_file():
        ids = np.load(ids_file)
    elif folds_file.is_file():
        fold_of = np.load(folds_file)
        ids = np.full(fold_of.shape, -1, dtype=np.int64)
        for k in np.unique(fold_of).tolist():
            f = directory / f"fold_{k}" / "scored_ids.npy"
            part = np.load(f) if f.is_file() else None
            if part is None or part.size != int((fold_of == k).sum()):
                raise ReviewInputError(f"{f} is missing or does not match {folds_file}; {DETECT_HINT}")
            ids[fold_of == k] = part
    else:
        raise ReviewInputError(f"{directory} has neither {IDS_FILE} nor {FOLDS_FILE}, so the rows of {PROBS_FILE} "
                               f"cannot be matched to samples; {DETECT_HINT}")
    if ids.shape != (num_rows,):
        raise ReviewInputError(f"{directory}: {PROBS_FILE} has {num_rows} rows but the sample-id list {ids.size}; "
                               f"{DETECT_HINT}")
    return np.asarray(ids, dtype=np.int64)


def load_issues(directory: Path, data_root: Optional[Path] = None, train_split: str = "train") -> IssueSet:
    """Load and check a label-issues folder for review.

    Args:
        directory: the folder ``services.label_issues`` wrote (``--logging.output_dir``).
        data_root: the dataset it ran on; None = the bundled sample (as every tool of the project).
        train_split: the split folder the CSV paths are relative to.

    Returns:
        An :class:`IssueSet`, items sorted by cleanlab's ``self_confidence`` label-quality score, lowest first
        (cleanlab.rank.get_label_quality_scores; Northcutt et al. 2021), ties by sample id.

    Raises:
        ReviewInputError: missing or malformed files, a class list that is not the data's, flagged ids that
            were not scored.
    """
    from cleanlab.rank import get_label_quality_scores

    directory = Path(directory)
    if not directory.is_dir():
        raise ReviewInputError(f"--issues {directory} is not a folder; pass the --logging.output_dir of "
                               f"python -m services.label_issues")
    image_dir = Path(data_root if data_root is not None else BUNDLED_SAMPLE_ROOT) / train_split
    classes = ClassList.from_split(image_dir)
    rows = _parse_rows(directory / ISSUES_FILE, _read_rows(directory / ISSUES_FILE), classes)
    probs_file = directory / PROBS_FILE
    if not probs_file.is_file():
        raise ReviewInputError(f"{probs_file} not found; {DETECT_HINT}")
    probs = np.load(probs_file, mmap_mode="r")  # (M, C): ImageNet's is 1.28M x 1000 float32, read rows on demand
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ReviewInputError(f"{directory} was made on another dataset: {PROBS_FILE} has shape {probs.shape}, the "
                               f"data has {len(classes)} classes; pass --data.root with the dataset the detection "
                               f"ran on")
    ids = scored_ids(directory, probs.shape[0])
    order = np.argsort(ids, kind="stable")
    flagged = np.array([r[0] for r in rows], dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids[order], flagged), max(ids.size - 1, 0))
    found = ids[order][pos] == flagged if ids.size else np.zeros(flagged.size, bool)
    if not found.all():
        raise ReviewInputError(f"{directory / ISSUES_FILE}: sample id(s) {flagged[~found][:5].tolist()} are not in "
                               f"{PROBS_FILE}'s rows; {DETECT_HINT}")
    row_of = order[pos]
    given = np.array([r[2] for r in rows], dtype=np.int64)
    sub = np.asarray(probs[row_of], dtype=np.float32)  # (F, C): the flagged rows only
    scores = get_label_quality_scores(given, sub, method="self_confidence") if rows else np.zeros(0)
    noise = _noise_mask(directory, probs.shape[0])
    fold_file = directory / FOLDS_FILE
    fold_of = np.load(fold_file) if fold_file.is_file() else None
    items = [ReviewItem(id=sid, path=path, given=g, suggested=p, confidence=conf, score=float(s), row=int(row),
                        noisy=None if noise is None else bool(noise[row]))
             for (sid, path, g, p, conf), s, row in zip(rows, scores, row_of.tolist())]
    items.sort(key=lambda it: (it.score, it.id))
    log.info("%d flagged samples in %s (%d classes, images under %s)", len(items), directory, len(classes), image_dir)
    return IssueSet(directory=directory, image_dir=image_dir, classes=classes, items=items, pred_probs=probs,
                    fold_of=fold_of, has_noise_mask=noise is not None)


def _noise_mask(directory: Path, num_rows: int) -> Optional[np.ndarray]:
    path = directory / NOISE_FILE
    if not path.is_file():
        return None
    mask = np.load(path)
    if mask.shape != (num_rows,) or mask.dtype != np.bool_:
        raise ReviewInputError(f"{path} must be a ({num_rows},) bool array aligned with {PROBS_FILE}, got "
                               f"{mask.dtype} {mask.shape}; {DETECT_HINT}")
    return mask


def class_choices(classes: ClassList, items: Sequence[ReviewItem]) -> list[tuple[str, str]]:
    """(label, WNID) of every class that is the given or suggested label of some item, by name, with counts."""
    counts: dict[int, int] = {}
    for it in items:
        for c in {it.given, it.suggested}:
            counts[c] = counts.get(c, 0) + 1
    return [(f"{classes.label(c)}: {n}", classes.wnids[c]) for c, n in
            sorted(counts.items(), key=lambda kv: classes.short(kv[0]).lower())]


def pair_choices(classes: ClassList, items: Sequence[ReviewItem]) -> list[tuple[str, str]]:
    """(label, 'GIVEN>SUGGESTED' WNIDs) of every given -> suggested pair, most frequent first."""
    counts: dict[tuple[int, int], int] = {}
    for it in items:
        counts[(it.given, it.suggested)] = counts.get((it.given, it.suggested), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], classes.short(kv[0][0]), classes.short(kv[0][1])))
    return [(f"{classes.short(g)} → {classes.short(s)}: {n}", f"{classes.wnids[g]}>{classes.wnids[s]}")
            for (g, s), n in ranked]
