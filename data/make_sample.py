"""Build the bundled real-image sample `data/imagenette_sample/` from shared Imagenette2."""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
# The shared data lives next to the repository (`<repo>/../shared`); a fresh clone has none,
# which is why the sample this script writes is committed to the repository.
DEFAULT_SOURCE = _HERE.parent.parent / "shared" / "data" / "imagenette2-224"
DEFAULT_DEST = _HERE / "imagenette_sample"

# Chosen by measurement: a 112 px JPEG at quality 85 averages ~4.2 KB, so with 4 KiB
# filesystem blocks each image costs ~1.6 blocks (6.4 KiB) in `du`. 60 train + 18 val per
# class (780 images, train:val = 10:3) is 4.94 MiB on disk; 60 + 19 is already 5.00+ MiB.
# 128 px would cost ~1.8 blocks/image, i.e. ~10 % fewer images.
DEFAULT_SIZE = 112  # px, square
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_VAL_PER_CLASS = 18
DEFAULT_QUALITY = 85  # libjpeg quality, 1-95
DEFAULT_SEED = 0
DEFAULT_MAX_MIB = 5.0

# Imagenette2's 10 classes, sorted by WNID (= ImageFolder class index); names from
# /work/shared/data/README.md, which follows fast.ai's Imagenette README.
IMAGENETTE_CLASSES: dict[str, str] = {
    "n01440764": "tench, Tinca tinca",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def select_files(class_dir: Path, n: int, seed: int) -> list[Path]:
    """Pick `n` image files of one class folder at random, reproducibly.

    The draw is seeded by (`seed`, split name, WNID), so changing the count of one class
    or split leaves the others' selection unchanged. Returned paths are sorted by name.

    Raises:
        ValueError: the folder holds fewer than `n` images.
    """
    files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n:
        raise ValueError(f"{class_dir} holds {len(files)} images, fewer than the {n} requested")
    rng = random.Random(f"{seed}/{class_dir.parent.name}/{class_dir.name}")
    return sorted(rng.sample(files, n))


def resize_to_jpeg(src: Path, dst: Path, size: int, quality: int) -> None:
    """Write `src` as a `size` x `size` RGB JPEG at `dst`.

    The image is resized directly to a square (Imagenette2-224 is already square) with
    PIL's LANCZOS filter; `optimize=True` shrinks the Huffman tables (~8 % smaller files)
    without changing pixels. No EXIF/ICC metadata is copied.
    """
    with Image.open(src) as im:
        im = im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, "JPEG", quality=quality, optimize=True)


def disk_usage_bytes(path: Path) -> int:
    """Bytes allocated on disk for `path` and everything under it, as `du` counts them."""
    paths = [path, *path.rglob("*")]
    return sum(p.lstat().st_blocks * 512 for p in paths)


def apparent_size_bytes(path: Path) -> int:
    """Sum of file sizes under `path` (`du --apparent-size`, files only)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_synset_mapping(path: Path, classes: dict[str, str] = IMAGENETTE_CLASSES) -> None:
    """Write an ILSVRC `LOC_synset_mapping.txt`: `<wnid> <names>` per line, sorted by WNID."""
    lines = [f"{wnid} {classes[wnid]}\n" for wnid in sorted(classes)]
    path.write_text("".join(lines), encoding="utf-8")


def make_sample(
    source: Path,
    dest: Path,
    *,
    size: int = DEFAULT_SIZE,
    train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
    val_per_class: int = DEFAULT_VAL_PER_CLASS,
    quality: int = DEFAULT_QUALITY,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write a stratified, resized sample of Imagenette2 in ImageFolder layout.

    Every one of the 10 classes gets exactly `train_per_class` train and `val_per_class`
    val images, drawn at random (seeded) from `source/<split>/<wnid>/`, resized to
    `size` x `size` px and saved as `dest/<split>/<wnid>/<original name>` (JPEG).

    Returns:
        counts[split][wnid] -> number of images written.

    Raises:
        FileNotFoundError: `source` or one of its class folders is missing.
        FileExistsError: `dest` already holds a sample and `overwrite` is False.
        ValueError: a class has fewer images than requested.
    """
    if not source.is_dir():
        raise FileNotFoundError(
            f"Imagenette2 source not found at {source}; pass --source <path to imagenette2-224>"
        )
    for split in SPLITS:
        for wnid in IMAGENETTE_CLASSES:
            if not (source / split / wnid).is_dir():
                raise FileNotFoundError(f"class folder {source / split / wnid} is missing")
    if any((dest / split).exists() for split in SPLITS):
        if not overwrite:
            raise FileExistsError(f"{dest} already holds a sample; pass --overwrite to rebuild it")
        for split in SPLITS:  # only remove what this script writes
            shutil.rmtree(dest / split, ignore_errors=True)

    per_split = {"train": train_per_class, "val": val_per_class}
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for split in SPLITS:
        for wnid in sorted(IMAGENETTE_CLASSES):
            chosen = select_files(source / split / wnid, per_split[split], seed)
            for src in chosen:
                # Keep the original name; normalise the suffix to .JPEG as ImageNet does.
                resize_to_jpeg(src, dest / split / wnid / f"{src.stem}.JPEG", size, quality)
            counts[split][wnid] = len(chosen)
            logger.info("%s/%s: %d images", split, wnid, len(chosen))
    write_synset_mapping(dest / "LOC_synset_mapping.txt")
    return counts


def write_readme(
    path: Path,
    *,
    command: str,
    counts: dict[str, dict[str, int]],
    size: int,
    quality: int,
    seed: int,
    disk_mib: float,
    apparent_mib: float,
) -> None:
    """Write the sample's README: provenance, command, counts, image size and licence."""
    rows = "\n".join(
        f"| {i} | {wnid} | {IMAGENETTE_CLASSES[wnid].split(',')[0]} "
        f"| {counts['train'][wnid]} | {counts['val'][wnid]} |"
        for i, wnid in enumerate(sorted(IMAGENETTE_CLASSES))
    )
    n_train = sum(counts["train"].values())
    n_val = sum(counts["val"].values())
    per_train = sorted(set(counts["train"].values()))
    per_val = sorted(set(counts["val"].values()))
    text = f"""# Imagenette sample (bundled)

A small real-image sample that ships with the repository, so that the tests and the default
training run work in a fresh clone (which has no `../shared`). It is a stratified random
subset of Imagenette2 (fast.ai's 10 easy ImageNet-1k classes), derived by `data/make_sample.py`.

## How it was made

```
{command}
```

- Source: `imagenette2-224` (Imagenette2, every image already resized to 224x224 RGB JPEG).
- Per class and split, images are drawn at random with seed `{seed}` (one `random.Random`
  per (seed, split, WNID)); original file names are kept.
- Each image is resized to **{size}x{size} px** RGB with PIL LANCZOS and saved as JPEG,
  quality {quality}, `optimize=True`, 4:2:0 chroma subsampling, no metadata.
- Some train files are named `ILSVRC2012_val_*.JPEG`: Imagenette2 draws part of its train
  split from ImageNet's validation set. That is expected.

Layout is torchvision `ImageFolder`: `train/<wnid>/<file>.JPEG`, `val/<wnid>/<file>.JPEG`.
`LOC_synset_mapping.txt` maps WNIDs to names in the ILSVRC format, sorted by WNID (= class index).

## Counts

| split | images | per class |
|---|---|---|
| train | {n_train} | {", ".join(map(str, per_train))} |
| val | {n_val} | {", ".join(map(str, per_val))} |

| class index | wnid | name | train | val |
|---|---|---|---|---|
{rows}

Size: {disk_mib:.2f} MiB on disk (`du`, 4 KiB blocks), {apparent_mib:.2f} MiB of file data.
Small JPEGs waste part of their last 4 KiB block, which is what limits the image count.

## Licence

Imagenette is published by fast.ai under the Apache-2.0 licence
(https://github.com/fastai/imagenette). The images remain subject to the ImageNet terms
of access: non-commercial research and educational use only.
"""
    path.write_text(text, encoding="utf-8")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                   help="imagenette2-224 folder with train/ and val/ (default: %(default)s)")
    p.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                   help="output folder (default: %(default)s)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="square side in px")
    p.add_argument("--train-per-class", type=int, default=DEFAULT_TRAIN_PER_CLASS)
    p.add_argument("--val-per-class", type=int, default=DEFAULT_VAL_PER_CLASS)
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality 1-95")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--max-mib", type=float, default=DEFAULT_MAX_MIB,
                   help="fail if the result takes more than this on disk (MiB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sample")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _build_parser().parse_args(argv)
    problems = []
    if args.size < 1:
        problems.append(f"--size must be >= 1, got {args.size}")
    if args.train_per_class < 1 or args.val_per_class < 1:
        problems.append("--train-per-class and --val-per-class must be >= 1")
    if not 1 <= args.quality <= 95:
        problems.append(f"--quality must be in [1, 95], got {args.quality}")
    if problems:
        raise SystemExit("; ".join(problems))

    source, dest = args.source.resolve(), args.dest.resolve()
    counts = make_sample(
        source, dest, size=args.size, train_per_class=args.train_per_class,
        val_per_class=args.val_per_class, quality=args.quality, seed=args.seed,
        overwrite=args.overwrite,
    )
    command = (
        f"python data/make_sample.py --size {args.size} --train-per-class {args.train_per_class} "
        f"--val-per-class {args.val_per_class} --quality {args.quality} --seed {args.seed}"
    )
    readme = dest / "README.md"
    # Write once to measure with the README in place, then again with the final numbers
    # (the README's own size does not change by a block between the two writes).
    for _ in range(2):
        write_readme(
            readme, command=command, counts=counts, size=args.size, quality=args.quality,
            seed=args.seed, disk_mib=disk_usage_bytes(dest) / 2**20,
            apparent_mib=apparent_size_bytes(dest) / 2**20,
        )
    disk = disk_usage_bytes(dest) / 2**20
    logger.info("wrote %d images to %s: %.2f MiB on disk, %.2f MiB apparent",
                sum(sum(c.values()) for c in counts.values()), dest, disk,
                apparent_size_bytes(dest) / 2**20)
    if disk > args.max_mib:
        logger.error("sample takes %.2f MiB on disk, over --max-mib %.2f", disk, args.max_mib)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
