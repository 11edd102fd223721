"""Prepare ImageNet-style ImageFolder trees: sort ILSVRC2012 / Tiny ImageNet validation images into class folders."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from core.logger import progress_bar

logger = logging.getLogger(__name__)

MODES = ("move", "symlink", "hardlink", "copy")

# Devkit names: ILSVRC2012_devkit_t12/data/{meta.mat, ILSVRC2012_validation_ground_truth.txt}.
DEVKIT_META_NAME = "meta.mat"
# Image i (1-based) of the validation set is named like this, both on disk and in Kaggle's CSV.
VAL_STEM_FORMAT = "ILSVRC2012_val_{:08d}"
NUM_LEAF_CLASSES = 1000  # ILSVRC2012_IDs 1..1000 are the leaf synsets (devkit readme)

_WNID_RE = re.compile(r"^n\d{8}$")
_PARTIAL_SUFFIX = ".partial"  # copies are written under a temporary name, then renamed into place


# --------------------------------------------------------------------------- label readers


def _read_kaggle_solution(path: Path) -> dict[str, str]:
    """Image stem -> WNID from Kaggle's ``LOC_val_solution.csv``.

    Format (Kaggle "ImageNet Object Localization Challenge"): header ``ImageId,PredictionString``,
    then rows ``ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295``; the
    PredictionString repeats ``WNID x0 y0 x1 y1`` per box, and every box of an image has the same
    WNID, so the first token is the class.
    """
    labels: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line or (lineno == 1 and line.startswith("ImageId")):
                continue
            image_id, _, prediction = line.partition(",")
            tokens = prediction.split()
            if not image_id or not tokens or not _WNID_RE.match(tokens[0]):
                raise ValueError(
                    f"{path}:{lineno}: expected 'ImageId,WNID x0 y0 x1 y1 ...' "
                    f"(Kaggle LOC_val_solution.csv), got {line[:80]!r}"
                )
            labels[Path(image_id.strip()).stem] = tokens[0]
    return labels


def _read_devkit_meta(meta_file: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID for the 1000 leaf synsets of the devkit's ``meta.mat``.

    ``meta.mat`` (ILSVRC2012_devkit_t12/data) holds a struct array ``synsets`` with fields
    ILSVRC2012_ID, WNID, words, gloss, num_children, children, wordnet_height, num_train_images.
    Read the way torchvision's ``parse_devkit_archive`` reads it: ``loadmat(..., squeeze_me=True)``;
    the leaf classes are the synsets with ``num_children == 0``.

    Raises:
        FileNotFoundError: ``meta_file`` does not exist.
        ValueError: the file holds no ``synsets`` struct array with the fields above.
    """
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"devkit meta file not found: {meta_file}; it ships as "
            f"ILSVRC2012_devkit_t12/data/{DEVKIT_META_NAME} — pass its path with meta_file= / --meta-file"
        )
    import numpy as np  # local: numpy/scipy are only needed for the devkit format
    import scipy.io

    mat = scipy.io.loadmat(str(meta_file), squeeze_me=True)
    synsets = mat.get("synsets")
    needed = ("ILSVRC2012_ID", "WNID", "num_children")
    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if synsets is None or any(n not in names for n in needed):
        raise ValueError(
            f"{meta_file} is not an ILSVRC2012 devkit meta.mat: expected a struct array 'synsets' "
            f"with fields {', '.join(needed)}; found keys {sorted(k for k in mat if not k.startswith('__'))}"
        )
    synsets = np.atleast_1d(synsets)  # a single synset squeezes to a 0-d array
    id_to_wnid = {
        int(ilsvrc_id): str(wnid)
        for ilsvrc_id, wnid, num_children in zip(
            synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]
        )
        if int(num_children) == 0
    }
    if not id_to_wnid:
        raise ValueError(f"{meta_file}: 'synsets' has no leaf synsets (num_children == 0)")
    return id_to_wnid


def _read_devkit_ground_truth(path: Path, meta_file: Path) -> dict[str, str]:
    """Image stem -> WNID from ``ILSVRC2012_validation_ground_truth.txt`` plus ``meta.mat``.

    Format (ILSVRC2012 devkit readme): line i holds the ILSVRC2012_ID (1..1000) of validation
    image i, 1-based, i.e. of ``ILSVRC2012_val_0000000i.JPEG``. Note ILSVRC2012_ID order is *not*
    the sorted-WNID order that ImageFolder (and torchvision's pretrained weights) use, which is why
    the folders are named by WNID.
    """
    id_to_wnid = _read_devkit_meta(meta_file)
    labels: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        index = 0
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            index += 1
            try:
                wnid = id_to_wnid[int(line)]
            except (ValueError, KeyError):
                raise ValueError(
                    f"{path}:{lineno}: expected an ILSVRC2012_ID of a leaf synset in {meta_file} "
                    f"(1..{NUM_LEAF_CLASSES}), got {line[:80]!r}"
                ) from None
            labels[VAL_STEM_FORMAT.format(index)] = wnid
    return labels


def _detect_label_format(labels_file: Path) -> str:
    """Return ``"kaggle_csv"`` or ``"devkit"`` from the first non-empty line of ``labels_file``."""
    with labels_file.open(encoding="utf-8") as f:
        first = next((line.strip() for line in f if line.strip()), "")
    if first.startswith("ImageId") or "," in first:
        return "kaggle_csv"
    if first.isdigit():
        return "devkit"
    raise ValueError(
        f"cannot tell the label format of {labels_file} (first line {first[:80]!r}); expected Kaggle's "
        "LOC_val_solution.csv (header 'ImageId,PredictionString') or the devkit's "
        "ILSVRC2012_validation_ground_truth.txt (one integer ILSVRC2012_ID per line)"
    )


def read_val_labels(labels_file: str | os.PathLike, meta_file: str | os.PathLike | None = None) -> dict[str, str]:
    """Read ILSVRC2012 validation labels as ``{image stem: WNID}``.

    The stem is the file name without extension, e.g. ``"ILSVRC2012_val_00000001"``.

    Args:
        labels_file: Kaggle's ``LOC_val_solution.csv`` or the devkit's
            ``ILSVRC2012_validation_ground_truth.txt``; the format is detected from the content
            (a CSV header/comma vs. one integer per line), so renamed files work too.
        meta_file: devkit ``meta.mat``, used only for the ground-truth format; ``None`` looks for
            ``meta.mat`` next to ``labels_file`` (where the devkit puts both).

    Raises:
        FileNotFoundError: ``labels_file``, or the ``meta.mat`` the devkit format needs, is missing.
        ValueError: the format is not recognised or a line is malformed (the message names the line).
    """
    labels_file = Path(labels_file)
    if not labels_file.is_file():
        raise FileNotFoundError(
            f"labels file not found: {labels_file}; pass Kaggle's LOC_val_solution.csv or the devkit's "
            "ILSVRC2012_validation_ground_truth.txt"
        )
    if _detect_label_format(labels_file) == "kaggle_csv":
        return _read_kaggle_solution(labels_file)
    meta = Path(meta_file) if meta_file is not None else labels_file.with_name(DEVKIT_META_NAME)
    return _read_devkit_ground_truth(labels_file, meta)


# --------------------------------------------------------------------------- file placement


def _place(src: Path, dst: Path, mode: str) -> None:
    """Put ``src`` at ``dst`` by ``mode``; ``dst`` only ever appears complete (copies go via a temp name)."""
    if mode == "move":
        try:
            os.rename(src, dst)  # same filesystem: atomic, no data copied
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        _copy_atomic(src, dst)  # across filesystems: copy, then drop the source
        src.unlink()
    elif mode == "symlink":
        # Absolute target, so the link stays valid wherever dest is relative to val_dir.
        os.symlink(src.resolve(), dst)
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise OSError(
                    e.errno, f"cannot hard-link {src} -> {dst}: different filesystems; use mode 'symlink' or 'copy'"
                ) from e
            raise
    elif mode == "copy":
        _copy_atomic(src, dst)
    else:  # guarded by the public functions
        raise AssertionError(mode)


def _copy_atomic(src: Path, dst: Path) -> None:
    # A crash mid-copy leaves only '<name>.partial' (ignored by ImageFolder and by the resume logic),
    # never a truncated file under the final name that a rerun would count as already sorted.
    tmp = dst.with_name(dst.name + _PARTIAL_SUFFIX)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")


def _scan(directory: Path) -> tuple[dict[str, str], set[str]]:
    """One ``os.scandir`` of ``directory``: ``({stem: file name} of files, {names of sub-directories})``."""
    files: dict[str, str] = {}
    dirs: set[str] = set()
    with os.scandir(directory) as it:
        for entry in it:
            # DirEntry.is_dir() uses the d_type from readdir: no extra stat per file on Linux.
            if entry.is_dir():
                dirs.add(entry.name)
            else:
                files[os.path.splitext(entry.name)[0]] = entry.name
    return files, dirs


def _sort_into_class_dirs(
    flat_dir: Path,
    dest: Path,
    labels: dict[str, str],
    mode: str,
    ignore: set[str],
    what: str,
    fix: str,
    progress: bool = True,
) -> dict:
    """Shared engine of the two public sorters; see ``sort_imagenet_val`` for the contract."""
    flat_files, flat_dirs = _scan(flat_dir) if flat_dir.is_dir() else ({}, set())
    if dest == flat_dir:  # sorting in place: the listing above already has the class folders
        dest_dirs = flat_dirs
    else:
        dest.mkdir(parents=True, exist_ok=True)
        _, dest_dirs = _scan(dest)

    # Stems already sorted, per class folder: one scandir per existing class folder.
    wnids = set(labels.values())
    in_place: set[str] = set()
    for wnid in wnids & dest_dirs:
        files, _ = _scan(dest / wnid)
        in_place.update(stem for stem in files if labels.get(stem) == wnid)

    # Plan everything before touching a file, so a missing image leaves the tree as it was.
    to_sort: list[tuple[str, str]] = []  # (file name in flat_dir, wnid)
    missing: list[str] = []
    for stem, wnid in labels.items():
        if stem in in_place:
            continue
        name = flat_files.get(stem)
        if name is None:
            missing.append(stem)
        else:
            to_sort.append((name, wnid))
    if missing:
        missing.sort()
        examples = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} of {len(labels)} {what} listed in the labels are neither in {flat_dir} nor "
            f"already sorted under {dest}/<wnid>/ (e.g. {examples}); nothing was moved. {fix}"
        )

    labelled_flat = {stem for stem in flat_files if stem in labels}
    unlabelled = sorted(name for stem, name in flat_files.items() if stem not in labels and name not in ignore)
    if mode == "move" and labelled_flat & in_place:
        logger.warning(
            "%d files exist both in %s and already sorted under %s; left the unsorted copies in place",
            len(labelled_flat & in_place), flat_dir, dest,
        )

    logger.info("sorting %d %s into %s (%s); %d already in place", len(to_sort), what, dest, mode, len(in_place))
    made = set(dest_dirs)
    for name, wnid in progress_bar(to_sort, desc=f"sorting {what}", enabled=progress, unit="img"):
        if wnid not in made:
            (dest / wnid).mkdir(exist_ok=True)
            made.add(wnid)
        _place(flat_dir / name, dest / wnid / name, mode)
    if unlabelled:
        logger.warning("%d files in %s have no label and were left in place, e.g. %s", len(unlabelled), flat_dir, unlabelled[:3])
    return {
        "sorted": len(to_sort),
        "already_sorted": len(in_place),
        "classes": len(wnids),
        "unlabelled": unlabelled,
    }


# --------------------------------------------------------------------------- public API


def sort_imagenet_val(
    val_dir: str | os.PathLike,
    labels_file: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    mode: str = "move",
    meta_file: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Sort the flat ILSVRC2012 validation images into ``<dest>/<WNID>/`` folders for ImageFolder.

    ``val_dir`` holds ``ILSVRC2012_val_00000001.JPEG ... ILSVRC2012_val_00050000.JPEG`` side by side
    (as extracted from ``ILSVRC2012_img_val.tar`` or Kaggle's ``ILSVRC/Data/CLS-LOC/val``). Each
    labelled image goes to ``<dest or val_dir>/<WNID>/<same file name>``. Folder names are WNIDs, so
    ImageFolder's sorted order gives the standard class index (the one torchvision weights use).

    Labels (format detected from the file content, see ``read_val_labels``):
      * Kaggle's ``LOC_val_solution.csv``: the WNID is the first token of PredictionString;
      * the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (line i = ILSVRC2012_ID of image i)
        plus ``meta.mat`` (``meta_file``, default: ``meta.mat`` next to the ground-truth file),
        whose leaf synsets (``num_children == 0``, IDs 1..1000) map ID -> WNID.

    Idempotent and resumable: an image already at ``<dest>/<WNID>/`` is counted as already sorted
    and not touched; a partial earlier run is completed; a second run changes nothing. Files are
    matched by stem (name without extension). Each directory is listed once with ``os.scandir``;
    no per-file stat.

    Missing images: every labelled image must be either in ``val_dir`` or already sorted. If any
    is in neither place, ``FileNotFoundError`` is raised *before any file is moved*, so an
    incomplete download never leaves a half-sorted tree; fix the download and rerun.

    Args:
        val_dir: folder with the flat validation images.
        labels_file: ``LOC_val_solution.csv`` or ``ILSVRC2012_validation_ground_truth.txt``.
        dest: root of the sorted tree; ``None`` sorts in place (``val_dir``). Created if absent.
        mode: ``"move"`` (rename; copy + delete across filesystems), ``"symlink"`` (absolute link
            to the original), ``"hardlink"`` (same filesystem only) or ``"copy"`` (written under a
            temporary ``.partial`` name, then renamed, so an interrupted copy is never mistaken for
            a sorted file). With ``dest`` = ``val_dir`` and a non-move mode, the originals stay at
            the top level, where ImageFolder ignores them.
        meta_file: devkit ``meta.mat``; only used with the ground-truth format.
        progress: a progress bar over the images placed (50,000 on a network disk take minutes).

    Returns:
        ``{"sorted": int`` — images placed by this call,
        ``"already_sorted": int`` — labelled images found already in their class folder,
        ``"classes": int`` — distinct WNIDs in the labels (= class folders after the call),
        ``"unlabelled": list[str]`` — file names in ``val_dir`` with no label (the labels/meta
        files themselves excepted), sorted; they are left where they are``}``.

    Raises:
        ValueError: unknown ``mode``, or unreadable/malformed labels (message names the line).
        FileNotFoundError: ``val_dir``, ``labels_file`` or the needed ``meta.mat`` is missing, or
            labelled images are missing (message gives the count and examples).
        OSError: a link/move fails (e.g. hardlink across filesystems, with the fix in the message).
    """
    _check_mode(mode)
    val_dir = Path(val_dir)
    if not val_dir.is_dir():
        raise FileNotFoundError(f"validation image folder not found: {val_dir}; pass the folder holding ILSVRC2012_val_*.JPEG")
    labels = read_val_labels(labels_file, meta_file)
    ignore = {Path(labels_file).name}
    ignore.add(Path(meta_file).name if meta_file is not None else DEVKIT_META_NAME)
    return _sort_into_class_dirs(
        flat_dir=val_dir,
        dest=Path(dest) if dest is not None else val_dir,
        labels=labels,
        mode=mode,
        ignore=ignore,
        what="validation images",
        fix="Re-extract ILSVRC2012_img_val.tar (50,000 images) or check that the labels file matches this folder.",
        progress=progress,
    )


def reorganize_tiny_imagenet_val(val_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Move Tiny ImageNet's ``val/images/*.JPEG`` into ``val/<WNID>/`` folders for ImageFolder.

    Layout of ``tiny-imagenet-200.zip`` (Stanford CS231n): ``val/images/val_0.JPEG ...`` and
    ``val/val_annotations.txt``, tab-separated ``file name, WNID, x0, y0, x1, y1`` per line. Each
    image goes to ``val/<WNID>/<file name>``; ``images/`` is removed once empty (it is kept, with
    the unlabelled files, if any remain). ``val_annotations.txt`` is left in place.

    Idempotent and resumable like ``sort_imagenet_val``: already-moved images are counted, not
    touched; if an annotated image is in neither place, ``FileNotFoundError`` is raised before any
    file is moved.

    Args:
        val_dir: the ``tiny-imagenet-200/val`` folder.
        progress: a progress bar over the images moved.

    Returns:
        ``{"sorted", "already_sorted", "classes", "unlabelled"}`` as in ``sort_imagenet_val``;
        ``unlabelled`` lists files in ``val/images/`` absent from the annotations.

    Raises:
        FileNotFoundError: ``val_annotations.txt`` is missing (the message says if ``val_dir`` looks
            like the dataset root instead), or annotated images are missing.
        ValueError: a malformed annotation line (message names the line).
    """
    val_dir = Path(val_dir)
    annotations = val_dir / "val_annotations.txt"
    if not annotations.is_file():
        hint = (
            f"; {val_dir} looks like the dataset root, pass {val_dir / 'val'}"
            if (val_dir / "val" / "val_annotations.txt").is_file()
            else "; pass the 'val' folder of the extracted tiny-imagenet-200.zip"
        )
        raise FileNotFoundError(f"Tiny ImageNet annotations not found: {annotations}{hint}")
    labels: dict[str, str] = {}
    with annotations.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 2 or not _WNID_RE.match(fields[1]):
                raise ValueError(
                    f"{annotations}:{lineno}: expected 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1', got {line[:80]!r}"
                )
            labels[os.path.splitext(fields[0])[0]] = fields[1]
    images_dir = val_dir / "images"
    summary = _sort_into_class_dirs(
        flat_dir=images_dir,
        dest=val_dir,
        labels=labels,
        mode="move",
        ignore=set(),
        what="Tiny ImageNet validation images",
        fix="Re-extract val/images from tiny-imagenet-200.zip.",
        progress=progress,
    )
    if images_dir.is_dir() and not summary["unlabelled"]:
        try:
            images_dir.rmdir()
        except OSError:  # e.g. a hidden file appeared; not worth failing for
            logger.warning("could not remove %s; it is not empty", images_dir)
    return summary


def read_class_names(root: str | os.PathLike) -> dict[str, str]:
    """WNID -> human-readable class name, e.g. ``"n01440764" -> "tench, Tinca tinca"``.

    Looks in ``root`` and then ``root.parent`` for, in this order:
      * ``LOC_synset_mapping.txt`` (Kaggle ImageNet): lines ``n01440764 tench, Tinca tinca``; the
        name is the full text after the first space (all synonyms kept);
      * ``words.txt`` (Tiny ImageNet; all 82k WordNet synsets): lines ``n00001740<TAB>entity``.

    Returns ``{}`` when neither file exists; callers then fall back to showing the WNID itself.

    Raises:
        ValueError: a non-empty line has no separator after the WNID (message names the line).
    """
    root = Path(root)
    for folder in (root, root.parent):
        for filename, sep in (("LOC_synset_mapping.txt", " "), ("words.txt", "\t")):
            path = folder / filename
            if path.is_file():
                return _read_name_file(path, sep)
    return {}


def short_class_names(names: Sequence[str], ids: Sequence[str]) -> list[str]:
    """One short display name per class, the same in every plot, report and the demo.

    The first WordNet lemma of the class name (``"tench, Tinca tinca"`` -> ``"tench"``), or the identifier when
    the name is empty; where two classes would get the same short name, the identifier is added to both
    (ImageNet-1k has two 'crane's, the bird n02012849 and the machine n03126707, and two 'maillot's).

    Args:
        names: full names in class order (``ImageNetDataManager.class_names``, a checkpoint's ``class_names``).
        ids: the class identifiers (WNIDs) in the same order.

    Raises:
        ValueError: ``names`` and ``ids`` differ in length.
    """
    if len(names) != len(ids):
        raise ValueError(f"got {len(names)} class names for {len(ids)} class identifiers")
    short = [str(n).split(",")[0].strip() or str(i) for n, i in zip(names, ids)]
    counts = Counter(short)
    return [f"{s} ({i})" if counts[s] > 1 and s != str(i) else s for s, i in zip(short, ids)]


def _read_name_file(path: Path, sep: str) -> dict[str, str]:
    names: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            wnid, found, name = line.partition(sep)
            if not found:
                raise ValueError(f"{path}:{lineno}: expected 'WNID{sep!r}name', got {line[:80]!r}")
            names[wnid.strip()] = name.strip()
    return names


# --------------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.prepare",
        description="Prepare ImageNet-style ImageFolder trees (sort validation images into WNID folders).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "sort-val",
        help="sort flat ILSVRC2012 validation images into <WNID>/ folders",
        description="Sort ILSVRC2012_val_*.JPEG into <dest>/<WNID>/. Safe to rerun: finishes a partial run, "
        "changes nothing on a complete one.",
    )
    p.add_argument("val_dir", metavar="VAL_DIR", type=Path, help="folder holding the flat ILSVRC2012_val_*.JPEG files")
    p.add_argument(
        "labels_file",
        metavar="LABELS_FILE",
        type=Path,
        help="Kaggle's LOC_val_solution.csv or the devkit's ILSVRC2012_validation_ground_truth.txt",
    )
    p.add_argument("--dest", type=Path, default=None, help="root of the sorted tree (default: VAL_DIR itself)")
    p.add_argument("--mode", choices=MODES, default="move", help="how to place each image (default: move)")
    p.add_argument(
        "--meta-file",
        type=Path,
        default=None,
        help="devkit meta.mat, for the ground-truth format (default: meta.mat next to LABELS_FILE)",
    )

    t = sub.add_parser(
        "tiny-val",
        help="move Tiny ImageNet val/images/* into val/<WNID>/ folders",
        description="Reorganise tiny-imagenet-200/val using val_annotations.txt. Safe to rerun.",
    )
    t.add_argument("val_dir", metavar="VAL_DIR", type=Path, help="the tiny-imagenet-200/val folder")
    for command in (p, t):
        command.add_argument("--logging.progress_bar", dest="progress_bar", choices=("true", "false"),
                             default="true", help="progress bar with an ETA while sorting (default true)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 on a data/path error)."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "sort-val":
            summary = sort_imagenet_val(args.val_dir, args.labels_file, args.dest, args.mode, args.meta_file,
                                        progress=args.progress_bar == "true")
        else:
            summary = reorganize_tiny_imagenet_val(args.val_dir, progress=args.progress_bar == "true")
    except (ValueError, OSError) as e:  # FileNotFoundError is an OSError
        print(f"error: {e}", file=sys.stderr)
        return 1
    unlabelled = summary["unlabelled"]
    print(f"sorted:         {summary['sorted']}")
    print(f"already sorted: {summary['already_sorted']}")
    print(f"classes:        {summary['classes']}")
    print(f"unlabelled:     {len(unlabelled)}" + (f" (left in place, e.g. {', '.join(unlabelled[:5])})" if unlabelled else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
