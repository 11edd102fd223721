"""Data manager on real images: index, stratified subsets, class mapping, corrupt files, seeding, loaders."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import convert_modes
from core.config import DataConfig
from core.data.decode import decode_image
from core.data.index import scan_image_folder, stratified_subset
from core.data.manager import ImageNetDataManager
from core.data.sampler import EpochSampler
from core.data.stats import compute_dataset_stats

WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042", "n03425413",
         "n03445777", "n03888257"]


def manager(root: Path, tmp_path: Path, run_dir: Path | None = None, **kw) -> ImageNetDataManager:
    cfg = DataConfig(root=root, image_size=32, val_image_size=32, num_workers=0, index_cache_dir=tmp_path / "cache",
                     **kw)
    return ImageNetDataManager(cfg, seed=0, run_dir=run_dir)


# --- stratified subsets ---------------------------------------------------------------------------------------

def test_stratified_subset_exact_per_class_counts():
    counts = np.array([1, 2, 10, 97, 1300, 732])
    labels = np.repeat(np.arange(6), counts)
    np.random.default_rng(1).shuffle(labels)
    idx = stratified_subset(labels, 0.2, seed=3)
    got = np.bincount(labels[idx], minlength=6)
    expected = np.maximum(1, np.rint(counts * 0.2)).astype(int)  # at least one image per class
    assert got.tolist() == expected.tolist() == [1, 1, 2, 19, 260, 146]
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    assert np.array_equal(idx, stratified_subset(labels, 0.2, seed=3))  # seeded
    assert not np.array_equal(idx, stratified_subset(labels, 0.2, seed=4))


def test_stratified_subset_scales_to_imagenet_size():
    labels = np.repeat(np.arange(1000), 1281)[:1_281_167]
    idx = stratified_subset(labels, 0.2, seed=0)
    assert np.bincount(labels[idx]).min() >= 256


def test_subset_of_real_sample_and_cache_reuse(tmp_path):
    run = tmp_path / "logs"
    m = manager(None, tmp_path, run_dir=run, fraction=0.5)
    assert not run.exists()  # constructing writes nothing; the trainer records the distribution
    m.write_class_distribution(run)
    assert m.using_bundled_sample
    assert np.bincount(m.train_labels).tolist() == [30] * 10
    cached = list((tmp_path / "cache").glob("subset-*.npy"))
    assert len(cached) == 1
    # a rerun reuses the cached indices, even if the draw itself would now differ
    np.save(cached[0], np.load(cached[0])[::-1].copy())
    m2 = manager(None, tmp_path, fraction=0.5)
    assert np.array_equal(m2.train_ids, np.load(cached[0]))
    report = (run / "class_distribution.csv").read_text().splitlines()
    assert report[0].startswith("class_index,wnid,name") and len(report) == 11
    assert "tench" in report[1] and report[1].endswith(",60,30,18")
    assert (run / "class_distribution.png").stat().st_size > 0
    assert np.array_equal(np.load(run / "subset_indices.npy"), m.train_ids)
    # written through a temporary file and replaced (a killed run leaves the old record, not half of one)
    m.write_class_distribution(run)
    assert sorted(p.name for p in run.iterdir()) == ["class_distribution.csv", "class_distribution.png",
                                                     "subset_indices.npy"]
    assert (run / "class_distribution.csv").read_bytes().count(b"\r\n") == 11  # csv's own line ends, as before


# --- classes ----------------------------------------------------------------------------------------------------

def test_class_mapping_and_names(tmp_path):
    m = manager(None, tmp_path)
    assert m.classes == WNIDS and m.class_to_idx["n03888257"] == 9
    assert m.class_names[0].startswith("tench") and m.class_names[9].startswith("parachute")
    assert len(m.train_ids) == 600 and len(m.val_ids) == 180


def test_names_fall_back_to_wnid(sample_copy, tmp_path):
    (sample_copy / "LOC_synset_mapping.txt").unlink()
    m = manager(sample_copy, tmp_path)
    assert m.class_names == WNIDS and m.short_names == WNIDS


def test_one_short_name_per_class_everywhere(tmp_path):
    from core.prepare import short_class_names

    m = manager(None, tmp_path)
    m.write_class_distribution(tmp_path / "logs")
    assert m.short_names[:2] == ["tench", "English springer"] and m.short_names[9] == "parachute"
    with open(tmp_path / "logs" / "class_distribution.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["name"] == "tench, Tinca tinca" and rows[0]["short_name"] == "tench"
    # ImageNet-1k's two cranes (a bird and a machine) stay apart; a nameless class shows its identifier
    assert short_class_names(["crane", "crane, derrick", "", "tench, Tinca tinca"],
                             ["n02012849", "n03126707", "n0001", "n01440764"]) == \
        ["crane (n02012849)", "crane (n03126707)", "n0001", "tench"]
    with pytest.raises(ValueError, match="2 class names for 1 class identifiers"):
        short_class_names(["a", "b"], ["n1"])


def test_train_val_class_mismatch_is_an_error_listing_the_difference(sample_copy, tmp_path):
    shutil.rmtree(sample_copy / "val" / "n03888257")
    with pytest.raises(ValueError, match=r"1 only in 'train' \['n03888257'\]"):
        manager(sample_copy, tmp_path)


def test_unsorted_val_folder_gets_a_hint(sample_copy, tmp_path):
    for f in list((sample_copy / "val").rglob("*.JPEG")):
        shutil.move(f, sample_copy / "val" / f.name)
    for d in (sample_copy / "val").iterdir():
        if d.is_dir():
            d.rmdir()
    with pytest.raises(FileNotFoundError, match="sort-val"):
        manager(sample_copy, tmp_path)


def test_index_cache_is_refreshed_when_files_change(sample_copy, tmp_path):
    first = scan_image_folder(sample_copy / "train", tmp_path / "cache")
    victim = sample_copy / "train" / WNIDS[0] / sorted(p.name for p in (sample_copy / "train" / WNIDS[0]).iterdir())[0]
    victim.unlink()
    second = scan_image_folder(sample_copy / "train", tmp_path / "cache")
    assert len(second) == len(first) - 1


# --- decoding and corrupt files ---------------------------------------------------------------------------------

def test_decode_converts_every_mode_to_rgb(tmp_path):
    src = next((Path(__file__).resolve().parents[1] / "data" / "imagenette_sample" / "train").rglob("*.JPEG"))
    for mode, path in convert_modes(src, tmp_path).items():
        arr = decode_image(path)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, mode
    assert decode_image(src.read_bytes()).shape == decode_image(src).shape


@pytest.mark.parametrize("num_workers", [0, 2])
def test_corrupt_images_are_skipped_replaced_and_listed(sample_copy, tmp_path, num_workers):
    cls_dir = sample_copy / "train" / WNIDS[3]
    files = sorted(cls_dir.iterdir())
    files[0].write_bytes(b"")                                    # zero bytes
    files[1].write_bytes(files[1].read_bytes()[:300])            # truncated JPEG
    files[2].write_text("this is not an image")                  # not an image
    for mode, p in convert_modes(files[3], tmp_path).items():   # odd colour modes: converted, not skipped
        shutil.copy(p, cls_dir / f"zz_{p.name}")
    run = tmp_path / "logs"
    m = ImageNetDataManager(DataConfig(root=sample_copy, image_size=32, val_image_size=32, num_workers=num_workers,
                                       persistent_workers=False, index_cache_dir=tmp_path / "cache"),
                            seed=0, run_dir=run)
    loader = m.train_loader(batch_size=20)
    loader.sampler.set_epoch(0)
    labels_seen = []
    for images, labels in loader:  # a whole epoch, no exception
        assert images.shape == (20, 3, 32, 32) and torch.isfinite(images).all()
        labels_seen.append(labels)
    labels_seen = torch.cat(labels_seen)
    # replaced by images of the same class: the class histogram of the epoch is unchanged
    order = np.random.default_rng([0, 0]).permutation(len(m.train_ids))[: len(labels_seen)]
    assert torch.equal(labels_seen, torch.from_numpy(m.train_labels[order]))
    bad = m.corrupt_images()
    assert sorted(Path(b["path"]).name for b in bad) == sorted(f.name for f in files[:3])
    assert all(b["error"] for b in bad)
    m.report_corrupt_images(tmp_path)  # what the trainer writes to its logs at the end of a run
    listed = [line.split("\t") for line in (tmp_path / "corrupt_images.txt").read_text().splitlines()]
    assert sorted(Path(p).name for p, _ in listed) == sorted(f.name for f in files[:3]) and all(e for _, e in listed)


def test_all_images_of_a_class_corrupt_is_a_clear_error(sample_copy, tmp_path):
    for f in (sample_copy / "train" / WNIDS[0]).iterdir():
        f.write_bytes(b"")
    ds = manager(sample_copy, tmp_path).train_dataset()
    with pytest.raises(RuntimeError, match="could not be decoded"):
        ds[(0, 0, 32)]


# --- transforms, seeding, sampling ------------------------------------------------------------------------------

def test_augmentation_is_seeded_per_sample_and_epoch(tmp_path):
    ds = manager(None, tmp_path).train_dataset()
    a, la = ds[(5, 0, 48)]
    b, lb = ds[(5, 0, 48)]
    c, _ = ds[(5, 1, 48)]
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32 and la == lb
    assert torch.equal(a, b) and not torch.equal(a, c)
    ev = manager(None, tmp_path).val_dataset()
    x, _ = ev[3]
    assert x.shape == (3, 32, 32) and torch.equal(x, ev[3][0])
    # normalised with ImageNet mean/std: roughly zero-centred
    assert -2.5 < x.mean().item() < 2.5


def test_batches_are_identical_whatever_the_worker_count(tmp_path):
    batches = {}
    for workers in (0, 2):
        m = ImageNetDataManager(DataConfig(root=None, fraction=0.2, image_size=32, num_workers=workers,
                                           persistent_workers=False, index_cache_dir=tmp_path / "cache"), seed=7)
        loader = m.train_loader(batch_size=8)
        loader.sampler.set_epoch(2)
        batches[workers] = [x for x, _ in loader]
    assert len(batches[0]) == len(batches[2]) == 15
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


def test_sampler_resume_mid_epoch_and_shards():
    full = EpochSampler(103, batch_size=4, grad_accum_steps=2, seed=1, resolution_at=lambda e: 64 + e)
    assert full.micro_batches_per_epoch == 24  # 25 batches, truncated to whole optimizer steps
    full.set_epoch(3)
    keys = list(full)
    assert len(keys) == len(full) == 96 and {k[1:] for k in keys} == {(3, 67)}
    full.set_epoch(3, start_micro_batch=10)
    assert list(full) == keys[40:]
    ranks = [EpochSampler(103, 4, 1, 1, lambda e: 64, num_replicas=2, rank=r) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(0)
    a, b = ([k[0] for k in s] for s in ranks)
    assert len(a) == len(b) == 48 and not set(a) & set(b)
    with pytest.raises(ValueError, match="no full optimizer step"):
        EpochSampler(10, batch_size=8, grad_accum_steps=2, seed=0, resolution_at=lambda e: 32)


# --- Hugging Face datasets source -------------------------------------------------------------------------------

def _hf_dataset(tmp_path: Path):
    import datasets

    sample = Path(__file__).resolve().parents[1] / "data" / "imagenette_sample"
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=WNIDS[:3])})
    splits = {}
    for split, folder in (("train", "train"), ("validation", "val")):
        rows = {"image": [], "label": []}
        for c, wnid in enumerate(WNIDS[:3]):
            for f in sorted((sample / folder / wnid).iterdir())[:6]:
                rows["image"].append({"bytes": f.read_bytes(), "path": None})
                rows["label"].append(c)
        splits[split] = datasets.Dataset.from_dict(rows, features=feats)
    return datasets.DatasetDict(splits)


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet"])
def test_hugging_face_source(tmp_path, layout):
    dd = _hf_dataset(tmp_path)
    root = tmp_path / "hf"
    if layout == "save_to_disk":
        dd.save_to_disk(str(root))
    else:
        (root / "data").mkdir(parents=True)
        for split, ds in dd.items():
            ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    cfg = DataConfig(source="hf", root=root, val_split="validation", image_size=32, val_image_size=32,
                     num_workers=0, index_cache_dir=tmp_path / "cache")
    m = ImageNetDataManager(cfg, seed=0)
    assert m.classes == WNIDS[:3] and m.class_names == WNIDS[:3]  # no names file: WNIDs stand in
    shutil.copy(Path(__file__).resolve().parents[1] / "data" / "imagenette_sample" / "LOC_synset_mapping.txt", root)
    m = ImageNetDataManager(cfg, seed=0)
    assert m.class_names[0].startswith("tench")
    assert np.bincount(m.train_labels).tolist() == [6, 6, 6]
    x, y = m.val_dataset()[7]
    assert x.shape == (3, 32, 32) and y == 1


def test_dataset_stats_written(tmp_path):
    m = manager(None, tmp_path)
    stats = compute_dataset_stats(m, num_images=50, resolution=64, out_path=tmp_path / "dataset_stats.json")
    saved = json.loads((tmp_path / "dataset_stats.json").read_text())
    assert saved["num_images"] == 50 and len(saved["mean"]) == 3
    assert all(0.2 < v < 0.7 for v in stats["mean"]) and all(0.1 < v < 0.45 for v in stats["std"])


def test_set_train_subset_and_labels(tmp_path):
    m = manager(None, tmp_path)
    m.set_train_subset(np.array([3, 70, 599]), labels=np.array([1, 1, 2]))
    assert m.train_ids.tolist() == [3, 70, 599] and m.train_labels.tolist() == [1, 1, 2]
    assert len(m.train_dataset()) == 3
    m.set_train_subset(np.array([0, 599]))
    assert m.train_labels.tolist() == [0, 9]  # folder labels by default
    with pytest.raises(ValueError, match="unique"):
        m.set_train_subset(np.array([1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 600\)"):
        m.set_train_subset(np.array([600]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        m.set_train_labels(np.array([0, 10]))
