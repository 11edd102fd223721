"""Checks on the bundled real-image sample `data/imagenette_sample/` (tests, default run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "imagenette_sample"

# As documented in data/imagenette_sample/README.md (written by data/make_sample.py).
IMAGE_SIZE = 112  # px, square
PER_CLASS = {"train": 60, "val": 18}
MAX_BYTES = 5 * 2**20  # 5 MiB of file data
WNIDS = [
    "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
]
SPLITS = tuple(PER_CLASS)


def _images(split: str, wnid: str) -> list[Path]:
    return sorted((SAMPLE / split / wnid).iterdir())


def test_sample_exists() -> None:
    assert SAMPLE.is_dir(), f"{SAMPLE} missing; build it with `python data/make_sample.py`"
    assert {p.name for p in SAMPLE.iterdir()} == {"train", "val", "README.md",
                                                  "LOC_synset_mapping.txt"}


@pytest.mark.parametrize("split", SPLITS)
def test_classes_and_equal_counts(split: str) -> None:
    assert sorted(p.name for p in (SAMPLE / split).iterdir()) == WNIDS
    for wnid in WNIDS:
        files = _images(split, wnid)
        assert len(files) == PER_CLASS[split], (split, wnid)
        assert all(f.suffix == ".JPEG" and f.is_file() for f in files)


def test_readme_documents_counts_and_size() -> None:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert f"{IMAGE_SIZE}x{IMAGE_SIZE} px" in text
    for split, n in PER_CLASS.items():
        assert f"| {split} | {n * len(WNIDS)} | {n} |" in text
    assert "make_sample.py" in text and "Apache-2.0" in text


def test_synset_mapping() -> None:
    lines = (SAMPLE / "LOC_synset_mapping.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == WNIDS
    assert lines[0] == "n01440764 tench, Tinca tinca"
    assert all(len(line.split(" ", 1)) == 2 for line in lines)


@pytest.mark.parametrize("split", SPLITS)
def test_every_image_decodes_to_rgb_at_documented_size(split: str) -> None:
    for wnid in WNIDS:
        for path in _images(split, wnid):
            with Image.open(path) as im:
                assert im.format == "JPEG", path
                im.load()  # full decode, not just the header
                assert im.mode == "RGB", path
                assert im.size == (IMAGE_SIZE, IMAGE_SIZE), path


def test_loads_with_imagefolder() -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    for split in SPLITS:
        ds = datasets.ImageFolder(str(SAMPLE / split))
        assert ds.classes == WNIDS
        assert len(ds) == PER_CLASS[split] * len(WNIDS)


def test_sample_is_at_most_5_mib() -> None:
    paths = [SAMPLE, *SAMPLE.rglob("*")]
    apparent = sum(p.stat().st_size for p in paths if p.is_file())
    # file data only: blocks on disk depend on the filesystem (4 KiB blocks round 4 KB JPEGs up to 8 KiB)
    assert apparent <= MAX_BYTES, f"{apparent / 2**20:.2f} MiB of file data"
