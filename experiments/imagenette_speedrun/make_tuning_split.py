"""Make the speedrun's tuning split: a stratified 10 % of Imagenette's *train* held out as a val split, so that no
tuning decision sees Imagenette's real val split (RESULTS.md, "Tuning").

    python experiments/imagenette_speedrun/make_tuning_split.py ../shared/data/imagenette2-224 /tmp/imagenette-tune
    python experiments/imagenette_speedrun/train.py --data.root /tmp/imagenette-tune --config ...short.yaml

OUT/train and OUT/val are ImageFolder trees of symlinks to ROOT/train: per class, round(10 %) of the files (sorted by
name, then ``random.Random(seed).sample``) go to OUT/val and the rest to OUT/train. On Imagenette2 that is 8,522 /
947 images. The tree is made once; an OUT that already holds a split made from the same files is kept as it is.

Raises (as one-line errors): ROOT/train missing, or OUT holding something else.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path


def split_class(files: list[str], fraction: float, seed: int) -> set[str]:
    """The names held out of one class: round(fraction x len(files)) of them, drawn from the sorted list."""
    return set(random.Random(seed).sample(sorted(files), round(fraction * len(files))))


def make_split(root: Path, out: Path, fraction: float = 0.1, seed: int = 0) -> tuple[int, int]:
    """Write OUT/{train,val}/<wnid>/<file> symlinks; returns (train images, held-out images)."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir} not found: give the root of an ImageFolder tree with a train/ folder")
    counts = [0, 0]
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        files = [p.name for p in class_dir.iterdir() if p.is_file()]
        held = split_class(files, fraction, seed)
        for name in files:
            split = "val" if name in held else "train"
            link = out / split / class_dir.name / name
            link.parent.mkdir(parents=True, exist_ok=True)
            target = (class_dir / name).resolve()
            if not link.is_symlink() and not link.exists():
                link.symlink_to(target)
            elif not (link.is_symlink() and link.resolve() == target):  # a link of this split is kept as it is
                raise FileExistsError(f"{link} exists and is not this split's link: choose an empty OUT folder")
            counts[split == "val"] += 1
    return counts[0], counts[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="ImageFolder root with train/ (Imagenette2)")
    p.add_argument("out", type=Path, help="folder for the split (train/ and val/ of symlinks)")
    p.add_argument("--fraction", type=float, default=0.1, help="share of each class held out")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        n_train, n_val = make_split(args.root, args.out, args.fraction, args.seed)
    except (FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n_train} train, {n_val} held out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
