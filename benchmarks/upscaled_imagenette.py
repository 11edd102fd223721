"""A stand-in for ILSVRC2012-sized JPEGs: Imagenette's 224 px photos upscaled to 384 x 384 (Lanczos), quality 90.

ILSVRC2012 photos average about 400 x 350 px; the only photos on the project's machines are Imagenette's at 224 px,
on which reduced-size decoding (``--data.reduced_decode``) cannot act at 128 px or more. The upscaled copies give
the decoder ImageNet-like pixel counts (not ImageNet's detail; they are smooth), to measure what the reduced decode
buys:

    python benchmarks/upscaled_imagenette.py /tmp/imagenette-384
    python benchmarks/train_throughput.py --loader-only --workers 1 --repeats 3 --sizes 128 176 \\
        --data-root /tmp/imagenette-384 [--reduced-decode]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from bench_common import PROJECT_ROOT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="output ImageFolder root (train/ and val/)")
    p.add_argument("--source", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "imagenette2-224")
    p.add_argument("--side", type=int, default=384, help="output side (px)")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=2)
    args = p.parse_args()
    if not (args.source / "train").is_dir():
        p.error(f"--source {args.source} has no train/ folder")
    for split, n in (("train", args.train_per_class), ("val", args.val_per_class)):
        for cls in sorted((args.source / split).iterdir()):
            out = args.out / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:n]:
                with Image.open(f) as im:
                    im.convert("RGB").resize((args.side, args.side), Image.LANCZOS).save(out / f.name, "JPEG",
                                                                                         quality=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
