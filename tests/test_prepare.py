"""Tests for core.prepare on tiny on-disk fixtures laid out like the real ILSVRC2012 / Tiny ImageNet files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from core import prepare
from core.prepare import main, read_class_names, reorganize_tiny_imagenet_val, sort_imagenet_val

# (ILSVRC2012_ID, WNID, words, num_children) — IDs 1..1000 are leaves in the real devkit;
# the last one is a non-leaf (parent) synset that must be ignored.
SYNSETS = [
    (1, "n02119789", "kit fox, Vulpes macrotis", 0),
    (2, "n02100735", "English setter", 0),
    (3, "n01440764", "tench, Tinca tinca", 0),
    (1001, "n02118333", "fox", 5),
]
# Image i (1-based) -> ILSVRC2012_ID, as in ILSVRC2012_validation_ground_truth.txt.
GROUND_TRUTH = [1, 2, 3, 1, 3, 2, 1]
ID_TO_WNID = {s[0]: s[1] for s in SYNSETS if s[3] == 0}
N = len(GROUND_TRUTH)


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


def expected_layout() -> dict[str, str]:
    """File name -> WNID folder it must end up in."""
    return {val_name(i): ID_TO_WNID[gid] for i, gid in enumerate(GROUND_TRUTH, start=1)}


def write_jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((8, 8, 3), seed * 30 % 256, dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_meta_mat(path: Path) -> None:
    """Write a meta.mat with the devkit's field layout (ILSVRC2012_devkit_t12/data/meta.mat)."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    synsets = np.empty((len(SYNSETS), 1), dtype=[(f, "O") for f in fields])  # the real one is (1860, 1)
    for row, (ilsvrc_id, wnid, words, num_children) in enumerate(SYNSETS):
        children = np.arange(1, num_children + 1, dtype=np.uint16) if num_children else np.zeros(0, np.uint16)
        synsets[row, 0] = (
            np.uint16(ilsvrc_id), wnid, words, f"gloss of {words}", np.uint16(num_children),
            children, np.uint8(0 if num_children == 0 else 1), np.uint16(0 if num_children else 1300),
        )
    scipy.io.savemat(str(path), {"synsets": synsets})


@pytest.fixture
def val_dir(tmp_path: Path) -> Path:
    d = tmp_path / "val"
    for i in range(1, N + 1):
        write_jpeg(d / val_name(i), i)
    return d


@pytest.fixture
def kaggle_csv(tmp_path: Path) -> Path:
    path = tmp_path / "LOC_val_solution.csv"
    rows = ["ImageId,PredictionString"]
    # Kaggle's rows are not in image order; several boxes per image repeat the WNID.
    for i, gid in reversed(list(enumerate(GROUND_TRUTH, start=1))):
        wnid = ID_TO_WNID[gid]
        rows.append(f"ILSVRC2012_val_{i:08d},{wnid} 255 142 454 329 {wnid} 44 21 322 295 ")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    write_meta_mat(data / "meta.mat")
    gt = data / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("".join(f"{gid}\n" for gid in GROUND_TRUTH))
    return gt


def tree(root: Path) -> dict[str, tuple[bool, bytes]]:
    """Relative path -> (is symlink, content) of every file under root."""
    return {
        str(p.relative_to(root)): (p.is_symlink(), p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_sorted(dest: Path) -> None:
    for name, wnid in expected_layout().items():
        assert (dest / wnid / name).is_file(), f"{name} not in {wnid}/"
    class_dirs = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert class_dirs == sorted(set(ID_TO_WNID.values()))


def test_meta_mat_fixture_reads_like_the_devkit(devkit: Path) -> None:
    # torchvision's parse_devkit_archive reads meta.mat with squeeze_me=True and indexes fields
    # by position (num_children is the 5th); check our fixture round-trips to that shape.
    synsets = scipy.io.loadmat(str(devkit.with_name("meta.mat")), squeeze_me=True)["synsets"]
    assert synsets.shape == (len(SYNSETS),)
    assert synsets.dtype.names[:5] == ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children")
    assert list(zip(*synsets))[4] == tuple(s[3] for s in SYNSETS)
    assert synsets[0]["WNID"] == "n02119789" and int(synsets[-1]["ILSVRC2012_ID"]) == 1001
    assert prepare._read_devkit_meta(devkit.with_name("meta.mat")) == ID_TO_WNID  # non-leaf 1001 dropped


@pytest.mark.parametrize("labels", ["kaggle_csv", "devkit"])
def test_sort_in_place_both_label_formats(val_dir: Path, labels: str, request: pytest.FixtureRequest) -> None:
    labels_file = request.getfixturevalue(labels)
    summary = sort_imagenet_val(val_dir, labels_file)
    assert summary == {"sorted": N, "already_sorted": 0, "classes": 3, "unlabelled": []}
    assert_sorted(val_dir)
    assert not any(p.is_file() for p in val_dir.iterdir())  # moved: nothing left flat


def test_devkit_explicit_meta_file(tmp_path: Path, val_dir: Path, devkit: Path) -> None:
    gt = tmp_path / "gt.txt"  # renamed and away from meta.mat: needs meta_file
    gt.write_bytes(devkit.read_bytes())
    with pytest.raises(FileNotFoundError, match="meta.mat"):
        sort_imagenet_val(val_dir, gt)
    assert sort_imagenet_val(val_dir, gt, meta_file=devkit.with_name("meta.mat"))["sorted"] == N


@pytest.mark.parametrize("mode", ["move", "symlink", "hardlink", "copy"])
def test_modes_into_separate_dest(tmp_path: Path, val_dir: Path, kaggle_csv: Path, mode: str) -> None:
    originals = tree(val_dir)
    dest = tmp_path / "sorted" / "val"
    summary = sort_imagenet_val(val_dir, kaggle_csv, dest=dest, mode=mode)
    assert summary["sorted"] == N
    assert_sorted(dest)
    for name, wnid in expected_layout().items():
        placed = dest / wnid / name
        assert placed.read_bytes() == originals[name][1]
        assert placed.is_symlink() == (mode == "symlink")
        if mode == "hardlink":
            assert placed.stat().st_ino == (val_dir / name).stat().st_ino
    if mode == "move":
        assert not any(val_dir.iterdir())
    else:
        assert tree(val_dir) == originals  # sources untouched
    assert not list(dest.rglob("*.partial"))


@pytest.mark.parametrize("mode", ["move", "symlink", "copy"])
def test_second_run_changes_nothing(tmp_path: Path, val_dir: Path, devkit: Path, mode: str) -> None:
    dest = val_dir if mode == "move" else tmp_path / "out"
    sort_imagenet_val(val_dir, devkit, dest=dest, mode=mode)
    before_dest, before_src = tree(dest), tree(val_dir)
    summary = sort_imagenet_val(val_dir, devkit, dest=dest, mode=mode)
    assert summary == {"sorted": 0, "already_sorted": N, "classes": 3, "unlabelled": []}
    assert tree(dest) == before_dest and tree(val_dir) == before_src


def test_in_place_copy_keeps_originals_flat_and_is_idempotent(val_dir: Path, kaggle_csv: Path) -> None:
    assert sort_imagenet_val(val_dir, kaggle_csv, mode="copy")["sorted"] == N
    assert all((val_dir / name).is_file() for name in expected_layout())  # originals stay at top level
    summary = sort_imagenet_val(val_dir, kaggle_csv, mode="copy")
    assert summary["sorted"] == 0 and summary["already_sorted"] == N and summary["unlabelled"] == []


def test_resume_after_partial_run(val_dir: Path, kaggle_csv: Path) -> None:
    # Simulate an interrupted run: two images already moved, the rest still flat.
    layout = expected_layout()
    done = list(layout)[:2]
    for name in done:
        (val_dir / layout[name]).mkdir(exist_ok=True)
        os.rename(val_dir / name, val_dir / layout[name] / name)
    summary = sort_imagenet_val(val_dir, kaggle_csv)
    assert summary["sorted"] == N - 2 and summary["already_sorted"] == 2
    assert_sorted(val_dir)


def test_missing_image_raises_before_moving_anything(val_dir: Path, kaggle_csv: Path) -> None:
    (val_dir / val_name(3)).unlink()
    (val_dir / val_name(5)).unlink()
    before = tree(val_dir)
    with pytest.raises(FileNotFoundError) as excinfo:
        sort_imagenet_val(val_dir, kaggle_csv)
    message = str(excinfo.value)
    assert "2 of 7" in message
    assert "ILSVRC2012_val_00000003" in message and "ILSVRC2012_val_00000005" in message
    assert str(val_dir) in message and "nothing was moved" in message
    assert tree(val_dir) == before


def test_unlabelled_files_are_reported_and_left(val_dir: Path, tmp_path: Path) -> None:
    write_jpeg(val_dir / "ILSVRC2012_val_00000099.JPEG", 99)  # not in the labels
    (val_dir / "README.txt").write_text("stray")
    labels = val_dir / "LOC_val_solution.csv"  # a labels file inside val_dir is not "unlabelled"
    labels.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n02119789 1 2 3 4\n")
    summary = sort_imagenet_val(val_dir, labels)
    assert summary["sorted"] == 1 and summary["classes"] == 1
    unlabelled = [val_name(i) for i in range(2, N + 1)] + ["ILSVRC2012_val_00000099.JPEG", "README.txt"]
    assert summary["unlabelled"] == sorted(unlabelled)
    assert all((val_dir / name).is_file() for name in unlabelled)


def test_bad_arguments(val_dir: Path, kaggle_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of: move, symlink, hardlink, copy"):
        sort_imagenet_val(val_dir, kaggle_csv, mode="rename")
    with pytest.raises(FileNotFoundError, match="nope"):
        sort_imagenet_val(tmp_path / "nope", kaggle_csv)
    weird = tmp_path / "labels.txt"
    weird.write_text("hello world\n")
    with pytest.raises(ValueError, match="cannot tell the label format"):
        sort_imagenet_val(val_dir, weird)


# --------------------------------------------------------------------------- Tiny ImageNet

TINY = {"val_0.JPEG": "n01443537", "val_1.JPEG": "n01629819", "val_2.JPEG": "n01443537"}


@pytest.fixture
def tiny_val(tmp_path: Path) -> Path:
    val = tmp_path / "tiny-imagenet-200" / "val"
    for k, name in enumerate(TINY):
        write_jpeg(val / "images" / name, k)
    (val / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t10\t62\t63\n" for name, wnid in TINY.items())
    )
    return val


def test_tiny_imagenet_reorganise_and_idempotent(tiny_val: Path) -> None:
    summary = reorganize_tiny_imagenet_val(tiny_val)
    assert summary == {"sorted": 3, "already_sorted": 0, "classes": 2, "unlabelled": []}
    for name, wnid in TINY.items():
        assert (tiny_val / wnid / name).is_file()
    assert not (tiny_val / "images").exists()
    before = tree(tiny_val)
    again = reorganize_tiny_imagenet_val(tiny_val)
    assert again == {"sorted": 0, "already_sorted": 3, "classes": 2, "unlabelled": []}
    assert tree(tiny_val) == before


def test_tiny_imagenet_unlabelled_keeps_images_dir(tiny_val: Path) -> None:
    write_jpeg(tiny_val / "images" / "val_extra.JPEG", 9)
    summary = reorganize_tiny_imagenet_val(tiny_val)
    assert summary["unlabelled"] == ["val_extra.JPEG"]
    assert (tiny_val / "images" / "val_extra.JPEG").is_file()


def test_tiny_imagenet_root_passed_by_mistake(tiny_val: Path) -> None:
    with pytest.raises(FileNotFoundError, match="looks like the dataset root"):
        reorganize_tiny_imagenet_val(tiny_val.parent)


# --------------------------------------------------------------------------- class names


def test_read_class_names_kaggle_mapping(tmp_path: Path) -> None:
    (tmp_path / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
    )
    train = tmp_path / "train"
    train.mkdir()
    expected = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus"}
    assert read_class_names(tmp_path) == expected
    assert read_class_names(train) == expected  # found in root.parent


def test_read_class_names_tiny_words(tiny_val: Path) -> None:
    root = tiny_val.parent
    (root / "words.txt").write_text("n00001740\tentity\nn01443537\tgoldfish, Carassius auratus\n")
    assert read_class_names(root)["n01443537"] == "goldfish, Carassius auratus"
    assert read_class_names(tiny_val) == {"n00001740": "entity", "n01443537": "goldfish, Carassius auratus"}


def test_read_class_names_missing_returns_empty(tmp_path: Path) -> None:
    assert read_class_names(tmp_path / "a" / "b") == {}


# --------------------------------------------------------------------------- CLI


def test_cli_sort_val_and_tiny_val(tmp_path: Path, val_dir: Path, devkit: Path, tiny_val: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cli_out"
    assert main(["sort-val", str(val_dir), str(devkit), "--dest", str(dest), "--mode", "symlink"]) == 0
    assert_sorted(dest)
    assert "sorted:         7" in capsys.readouterr().out
    assert main(["tiny-val", str(tiny_val)]) == 0
    assert main(["sort-val", str(tmp_path / "missing"), str(devkit)]) == 1
    assert "error:" in capsys.readouterr().err
