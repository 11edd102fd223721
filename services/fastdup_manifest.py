"""Optional: fastdup (Visual Layer) finds broken images, near-duplicates and outliers; this turns them into a
removal manifest (``removal_list.txt`` of paths relative to the split folder, which ``core.label_noise`` accepts).

fastdup pins old NumPy, Pillow and scikit-learn, so it never goes into the main environment. It runs in its own
virtual environment, and this script imports nothing from the project (only the standard library and fastdup):

    python -m venv .venv-fastdup
    .venv-fastdup/bin/pip install -r requirements-fastdup.txt
    .venv-fastdup/bin/python services/fastdup_manifest.py ../shared/data/imagenette2-224/train /tmp/fastdup_manifest

then, in the main environment, ``core.label_noise.load_manifest('/tmp/fastdup_manifest', data)`` and
``apply_manifest_to(data, manifest)``. Checked here with fastdup 2.54 on Python 3.11 (Linux x86-64).

Telemetry: fastdup sends crash reports and usage metrics to Sentry unless the environment variable
``SENTRY_OPT_OUT`` is set (fastdup's ``sentry.py``). This script sets it before importing fastdup, so nothing is
sent; pass ``--allow-telemetry`` to leave fastdup's default.

What is removed, per fastdup's own outputs:
- broken images (``invalid_instances``): files fastdup could not read;
- near-duplicates: in each connected component of images whose similarity is >= ``--duplicate-threshold``
  (fastdup's ``ccthreshold``, default 0.96) the first path in sorted order is kept and the others are removed;
- outliers (``--outlier-percentile``, fastdup's ``lower_threshold``): images whose nearest neighbour is least
  similar; off by default (0), because rare but correct images are outliers too.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

log = logging.getLogger("fastdup_manifest")

REMOVAL_FILE = "removal_list.txt"  # the name core.label_noise reads


def relative_to_split(path: str, split_dir: Path) -> str:
    """``path`` (absolute, or relative to the split folder) as a '/'-separated path relative to ``split_dir``.

    Raises:
        ValueError: the path lies outside ``split_dir``.
    """
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path(split_dir).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"fastdup reported {path}, which is outside the split folder {split_dir}") from None


def removal_entries(split_dir: Path, invalid: Iterable[str], components: Iterable[tuple[int, str]],
                    outliers: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Decide what to remove from fastdup's findings.

    Args:
        split_dir: the split folder fastdup scanned.
        invalid: paths of broken images.
        components: (component id, path) of every image in a near-duplicate component (size >= 2).
        outliers: paths of outliers to remove.

    Returns:
        Sorted (relative path, reason) pairs, each path once, reasons in the order broken, outlier, duplicate;
        every near-duplicate group keeps exactly one image that no other rule removes.
    """
    reasons: dict[str, str] = {}
    for p in invalid:
        reasons.setdefault(relative_to_split(p, split_dir), "broken")
    for p in outliers:
        reasons.setdefault(relative_to_split(p, split_dir), "outlier")
    groups: dict[int, list[str]] = defaultdict(list)
    for cid, p in components:
        groups[int(cid)].append(relative_to_split(p, split_dir))
    for members in groups.values():
        # keep one copy: the first in sorted order that no other rule removes
        candidates = [p for p in sorted(set(members)) if p not in reasons]
        for p in candidates[1:]:
            reasons[p] = "duplicate"
    return sorted(reasons.items())


def write_manifest(entries: Sequence[tuple[str, str]], out_dir: Path, header: str = "") -> Path:
    """Write ``removal_list.txt`` (relative paths) and ``fastdup_removals.csv`` (path, reason); return the list."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = defaultdict(int)
    for _, reason in entries:
        counts[reason] += 1
    summary = ", ".join(f"{n} {r}" for r, n in sorted(counts.items())) or "nothing"
    lines = [f"# fastdup removal manifest: {summary}"] + [f"# {h}" for h in header.splitlines()]
    path = out_dir / REMOVAL_FILE
    path.write_text("\n".join(lines + [p for p, _ in entries]) + "\n")
    with open(out_dir / "fastdup_removals.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(entries)
    return path


def run_fastdup(split_dir: Path, work_dir: Path, duplicate_threshold: float, outlier_percentile: float,
                num_threads: int = -1) -> tuple[list[str], list[tuple[int, str]], list[str]]:
    """Run fastdup on ``split_dir`` and return (broken paths, (component, path) pairs, outlier paths).

    Raises:
        ImportError: fastdup is not installed in this interpreter (with the set-up commands).
        RuntimeError: fastdup's run failed.
    """
    try:
        import fastdup
    except ImportError as e:
        raise ImportError("fastdup is not installed in this interpreter; run this script with the fastdup venv: "
                          "python -m venv .venv-fastdup && .venv-fastdup/bin/pip install -r requirements-fastdup.txt"
                          ) from e
    fd = fastdup.create(work_dir=str(work_dir), input_dir=str(split_dir))
    kwargs = dict(ccthreshold=duplicate_threshold, overwrite=True, num_threads=num_threads)
    if outlier_percentile > 0:
        kwargs["lower_threshold"] = outlier_percentile
    ret = fd.run(**kwargs)
    if ret not in (None, 0):
        raise RuntimeError(f"fastdup run failed with code {ret}; see {work_dir}")
    invalid = [str(p) for p in fd.invalid_instances()["filename"].tolist()]
    cc, _info = fd.connected_components()
    components: list[tuple[int, str]] = []
    if cc is not None and len(cc):
        components = [(int(c), str(p)) for c, p in zip(cc["component_id"], cc["filename"])]
        sizes: dict[int, int] = defaultdict(int)
        for c, _ in components:
            sizes[c] += 1
        components = [(c, p) for c, p in components if sizes[c] >= 2]
    outliers: list[str] = []
    if outlier_percentile > 0:
        df = fd.outliers()
        if df is not None and len(df):
            column = "filename_outlier" if "filename_outlier" in df.columns else "outlier"
            outliers = [str(p) for p in df[column].tolist()]
    return invalid, components, outliers


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split_dir", type=Path, help="the split folder to scan, e.g. /data/ILSVRC2012/train")
    parser.add_argument("out_dir", type=Path, help="where removal_list.txt and fastdup_removals.csv are written")
    parser.add_argument("--work-dir", type=Path, default=None, help="fastdup's work folder (default OUT_DIR/work)")
    parser.add_argument("--duplicate-threshold", type=float, default=0.96,
                        help="similarity in [0, 1] above which images are near-duplicates (fastdup ccthreshold)")
    parser.add_argument("--outlier-percentile", type=float, default=0.0,
                        help="remove this lowest-similarity fraction as outliers (fastdup lower_threshold); 0 = keep")
    parser.add_argument("--num-threads", type=int, default=-1, help="fastdup threads (-1 = all cores)")
    parser.add_argument("--allow-telemetry", action="store_true",
                        help="do not set SENTRY_OPT_OUT (fastdup then sends crash reports and usage metrics)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.allow_telemetry:
        os.environ["SENTRY_OPT_OUT"] = "1"  # must be set before fastdup is imported
    if not args.split_dir.is_dir():
        print(f"error: split folder not found: {args.split_dir}", file=sys.stderr)
        return 2
    if not 0 < args.duplicate_threshold <= 1 or not 0 <= args.outlier_percentile < 1:
        print("error: --duplicate-threshold must be in (0, 1] and --outlier-percentile in [0, 1)", file=sys.stderr)
        return 2
    work = args.work_dir or args.out_dir / "work"
    try:
        invalid, components, outliers = run_fastdup(args.split_dir, work, args.duplicate_threshold,
                                                    args.outlier_percentile, args.num_threads)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    entries = removal_entries(args.split_dir, invalid, components, outliers)
    path = write_manifest(entries, args.out_dir, header=f"split {args.split_dir.resolve()}; duplicate threshold "
                                                       f"{args.duplicate_threshold}; outlier percentile "
                                                       f"{args.outlier_percentile}")
    log.info("%d images to remove, listed in %s", len(entries), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
