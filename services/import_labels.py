"""Train on labels from elsewhere: a CSV of relative path → WNID (as published noisy-label sets ship them) becomes
a relabel manifest that ``--data.cleaning_manifest`` applies.

    python -m services.import_labels --csv noisy_imagenette.csv --label_column noisy_labels_5 \\
        --out manifests/noisy5 --data.root ../shared/data/imagenette2-224
    python experiments/phase1_subset_20pct/train.py --data.root ../shared/data/imagenette2-224 \\
        --data.cleaning_manifest manifests/noisy5

Noisy Imagenette (github.com/fastai/imagenette, ``noisy_imagenette.csv``) has the columns ``path`` (such as
``train/n02979186/n02979186_9036.JPEG``), ``noisy_labels_0``, ``_1``, ``_5``, ``_25``, ``_50`` (WNIDs, with that
percentage of the training labels changed) and ``is_valid``. Rows under ``val/`` are skipped (the val split keeps
its own labels); the ``train/`` prefix is stripped, so paths are relative to the training split folder, as the
manifest expects. Only the files whose CSV label differs from their folder are written (``relabel_map.json``), so
the map stays small on ILSVRC2012. With ``--data.root`` every path and WNID is checked against the dataset before
anything is written, and the number of training images the CSV does not list (they keep their folder's label)
is reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.atomic import atomic_write_text
from core.label_noise import RELABEL_FILE, normalise_relpath, resolve_class_labels, resolve_sample_ids
from core.logger import progress_bar

log = logging.getLogger(__name__)

OTHER_SPLITS = ("val", "valid", "validation", "test")
"""First path components of rows that belong to another split and are skipped."""


@dataclass(frozen=True)
class LabelCSV:
    """Labels read from a CSV of relative path → class.

    Attributes:
        relpaths: (K,) paths relative to the split folder ('<wnid>/<file>'), the split prefix stripped.
        labels: (K,) class identifiers (WNIDs) or indices, as written in the CSV.
        num_rows: data rows in the file; num_other_split: rows of another split (e.g. 'val/...'), skipped.
    """

    relpaths: list[str]
    labels: list[str]
    num_rows: int
    num_other_split: int

    @cached_property
    def changed(self) -> np.ndarray:
        """(K,) bool: the label differs from the folder the file sits in (ImageFolder layouts: '<wnid>/<file>');
        computed once (one pass over K rows)."""
        return np.fromiter((p.split("/", 1)[0] != y for p, y in zip(self.relpaths, self.labels)), dtype=bool,
                           count=len(self.relpaths))


def read_label_csv(path: Path, label_column: str, path_column: str = "path", split: str = "train",
                   progress: bool = True) -> LabelCSV:
    """Read a CSV of relative path → label for the ``split`` folder (streamed with :mod:`csv`).

    A path may start with the split folder ('train/n01440764/x.JPEG', stripped) or with another split's folder
    (:data:`OTHER_SPLITS`: that row is skipped and counted); any other path is taken as relative to the split
    folder already.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a named column is missing (listing the columns there are), an empty path or label, or a path
            listed twice with different labels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label CSV {path} does not exist; pass the file with --csv")
    relpaths: list[str] = []
    labels: list[str] = []
    rows = other = 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for name, flag in ((path_column, "--path_column"), (label_column, "--label_column")):
            if name not in columns:
                raise ValueError(f"{path}: no column {name!r} (columns: {', '.join(columns)}); pass {flag} NAME")
        for row in progress_bar(reader, desc=f"reading {path.name}", enabled=progress, unit="row"):
            rows += 1
            rel, label = normalise_relpath(row[path_column] or ""), (row[label_column] or "").strip()
            if not rel or not label:
                raise ValueError(f"{path}: data row {rows} has an empty {path_column!r} or {label_column!r} value")
            head, _, tail = rel.partition("/")
            if head in OTHER_SPLITS and head != split and tail:
                other += 1
                continue
            relpaths.append(tail if head == split and tail else rel)
            labels.append(label)
    first: dict[str, str] = {}
    clash = [p for p, y in zip(relpaths, labels) if first.setdefault(p, y) != y]
    if clash:
        raise ValueError(f"{path}: {len(clash)} path(s) listed twice with different labels, e.g. {clash[:3]}")
    return LabelCSV(relpaths=relpaths, labels=labels, num_rows=rows, num_other_split=other)


def check_against_dataset(labels: LabelCSV, data_root: Path, split: str = "train") -> int:
    """Check that every path of ``labels`` is in the dataset's ``split`` and every label is one of its classes.

    Returns:
        How many images of the split the CSV does not list (they keep their folder's label).

    Raises:
        ValueError: unknown paths or labels, naming how many and the first few (from
            :func:`core.label_noise.resolve_sample_ids` / ``resolve_class_labels``).
    """
    from core.data.index import default_cache_dir, scan_image_folder  # cached as training caches it

    index = scan_image_folder(Path(data_root) / split, default_cache_dir())
    ids = resolve_sample_ids(labels.relpaths, len(index), index.relpaths, source=f"the CSV ({split} split)")
    class_to_idx = {c: i for i, c in enumerate(index.classes)}
    resolve_class_labels(labels.labels, len(index.classes), class_to_idx, source="the CSV's labels")
    return int(len(index) - np.unique(ids).size)


def write_relabel_manifest(labels: LabelCSV, out_dir: Path, only_changed: bool = True) -> tuple[Path, int]:
    """Write ``out_dir/relabel_map.json`` (relative path → label, paths sorted) atomically.

    With ``only_changed`` only the files whose label differs from their folder are listed; without it, every row.
    ``--data.cleaning_manifest out_dir`` then trains on the CSV's labels.

    Returns:
        (the path written, the number of entries).
    """
    keep = labels.changed if only_changed else np.ones(len(labels.relpaths), dtype=bool)
    mapping = dict(sorted((p, y) for p, y, k in zip(labels.relpaths, labels.labels, keep.tolist()) if k))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / RELABEL_FILE
    atomic_write_text(out, json.dumps(mapping, indent=0) + "\n")
    return out, len(mapping)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the flags and convert through :func:`core.cli.run_entry` (bad input: one ``error:`` line, exit 2)."""
    from core.cli import run_entry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, required=True, help="the CSV of relative path -> label")
    p.add_argument("--label_column", required=True, help="the column holding the labels (WNIDs or class indices)")
    p.add_argument("--path_column", default="path", help="the column holding the relative paths (default: path)")
    p.add_argument("--out", type=Path, required=True, help="folder for relabel_map.json")
    p.add_argument("--split", default="train", help="the split folder the labels are for (default: train)")
    p.add_argument("--data.root", dest="data_root", type=Path, default=None,
                   help="the dataset, to check every path and label before writing")
    p.add_argument("--all_rows", action="store_true",
                   help="list every row, not only those whose label differs from the folder")
    args = p.parse_args(argv)
    return run_entry(lambda: convert(args))


def convert(args: argparse.Namespace) -> int:
    """Read, check (with ``--data.root``), then write; nothing is written when a check fails."""
    labels = read_label_csv(args.csv, args.label_column, args.path_column, args.split)
    unlisted = check_against_dataset(labels, args.data_root, args.split) if args.data_root else None
    out, n = write_relabel_manifest(labels, args.out, only_changed=not args.all_rows)
    log.info("%s: %d rows, %d of another split skipped; %d of the %d %s labels differ from their folder; wrote "
             "%d entries to %s", args.csv, labels.num_rows, labels.num_other_split, int(labels.changed.sum()),
             len(labels.relpaths), args.split, n, out)
    if unlisted:
        log.info("%d %s images are not in the CSV and keep their folder's label", unlisted, args.split)
    log.info("train on these labels with --data.cleaning_manifest %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
