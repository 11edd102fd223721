"""The optional fast input paths (issue 7) against the plain path, on the bundled real photos.

- ``--data.decoder opencv``: the same pixels as Pillow, the same handling of odd and broken files;
- ``--data.reduced_decode``: the same crops, flips and labels as the full decode, pixels within interpolation
  tolerance;
- ``--data.normalize_on_device``: uint8 (B, H, W, 3) batches that :func:`to_device` turns into the float batches
  of the plain path;
- per-sample seeding (:func:`sample_seed`, :func:`sample_generators`): a pure function of the sample.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from core.config import BUNDLED_SAMPLE_ROOT, DataConfig
from core.data.decode import decode_image, image_shape
from core.data.manager import ImageNetDataManager
from core.data.rng import sample_generators, sample_seed
from core.data.transforms import build_train_transform as make_train_transform
from core.data.transforms import crop_with_reduced_decode, draw_crop_and_flip, seed_pipeline, to_device
from conftest import convert_modes, tiny_config

SAMPLE_JPEGS = sorted((BUNDLED_SAMPLE_ROOT / "train").rglob("*.JPEG"))
FAST = {"decoder": "opencv", "reduced_decode": True, "normalize_on_device": True}


def manager(tmp_path: Path, root: Path | None = None, **kw) -> ImageNetDataManager:
    kw = {"image_size": 32, "val_image_size": 32, "num_workers": 0, "color_jitter": 0.4, **kw}
    return ImageNetDataManager(DataConfig(root=root, index_cache_dir=tmp_path / "cache", **kw), seed=3)


# --- decoding -----------------------------------------------------------------------------------------------------

def test_opencv_decoder_gives_pillows_pixels_on_real_jpegs():
    worst = 0
    for path in SAMPLE_JPEGS[::5]:
        a, b = decode_image(path, "pil"), decode_image(path, "opencv")
        assert a.shape == b.shape and b.dtype == np.uint8
        worst = max(worst, int(np.abs(a.astype(int) - b).max()))
    assert worst <= 2  # both are libjpeg(-turbo) builds: at most IDCT rounding apart


def _odd_files(src: Path, tmp: Path) -> dict[str, Path]:
    out = convert_modes(src, tmp)
    img = Image.open(src).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90": ImageFolder (and both decoders) ignore it
    wide = img.resize((img.width, img.height // 2))
    wide.save(tmp / "exif.jpg", "JPEG", exif=exif.tobytes())
    out["exif"] = tmp / "exif.jpg"
    return out


def test_opencv_decoder_handles_odd_modes_and_rejects_broken_files(tmp_path):
    for mode, path in _odd_files(SAMPLE_JPEGS[0], tmp_path).items():
        a, b = decode_image(path, "pil"), decode_image(path, "opencv")
        assert b.dtype == np.uint8 and b.shape == a.shape, mode
        if mode != "CMYK":  # libjpeg and Pillow convert CMYK to RGB differently; both give an RGB image
            assert np.abs(a.astype(int) - b).mean() < 1.0, mode
    data = SAMPLE_JPEGS[1].read_bytes()
    broken = {"truncated.jpg": data[:len(data) // 2], "empty.jpg": b"", "text.jpg": b"not an image at all"}
    for name, content in broken.items():
        (tmp_path / name).write_bytes(content)
        for decoder in ("pil", "opencv"):
            with pytest.raises(Exception):
                decode_image(tmp_path / name, decoder)
    with pytest.raises(ValueError, match="decoder must be"):
        decode_image(SAMPLE_JPEGS[0], "turbo")


@pytest.mark.parametrize("decoder", ["pil", "opencv"])
def test_reduced_decode_sizes_and_header_shape(decoder, tmp_path):
    for path in SAMPLE_JPEGS[::60]:
        h, w = image_shape(path)
        assert image_shape(path.read_bytes()) == (h, w) == decode_image(path).shape[:2]
        for f in (2, 4, 8):
            assert decode_image(path, decoder, f).shape == (math.ceil(h / f), math.ceil(w / f), 3)
    png = _odd_files(SAMPLE_JPEGS[0], tmp_path)["RGBA"]
    assert image_shape(png.read_bytes()) == decode_image(png).shape[:2]  # not a JPEG: Pillow reads the header
    with pytest.raises(ValueError, match="reduction"):
        decode_image(SAMPLE_JPEGS[0], decoder, 3)


@pytest.mark.parametrize("policy", [{}, {"auto_augment": "trivialaugment", "random_erasing": 0.5}])
def test_reduced_decode_gives_the_same_crops(policy):
    """Full decode → pipeline vs header → crop box → DCT-scaled decode → exact warp, for the same seeds."""
    cfg = DataConfig(color_jitter=0.4, normalize_on_device=True, **policy)
    size = 24  # the sample's 112 px photos: crops of 48 px or more decode at 1/2, of 96 px or more at 1/4
    tf = make_train_transform(cfg, size)
    used, exact, blurred, other_seed = [], [], [], []

    def blur(x: torch.Tensor) -> np.ndarray:
        return cv2.GaussianBlur(x.numpy().astype(np.float32), (0, 0), 1.0)

    def tensor(x) -> torch.Tensor:  # the plain pipeline gives an (r, r, 3) array, TrainTransform a tensor
        return torch.as_tensor(np.ascontiguousarray(x))

    for k, path in enumerate(SAMPLE_JPEGS[::7]):
        data = path.read_bytes()
        seed = sample_seed(0, 1, k)
        seed_pipeline(tf, seed)
        ref = tensor(tf(image=decode_image(data))["image"])
        whole = tensor(crop_with_reduced_decode(tf, seed, image_shape(data), lambda f: decode_image(data)))
        exact.append(torch.equal(ref, whole))  # decoded whole: bitwise the pipeline's own output

        def read(f: int) -> np.ndarray:
            used.append(f)
            return decode_image(data, "opencv", f)

        reduced = tensor(crop_with_reduced_decode(tf, seed, image_shape(data), read))
        assert reduced.shape == ref.shape == (size, size, 3) and reduced.dtype == torch.uint8
        blurred.append(np.abs(blur(ref) - blur(reduced)).mean())
        shifted = tensor(crop_with_reduced_decode(tf, seed + 1, image_shape(data),
                                                  lambda f: decode_image(data, "pil", f)))
        other_seed.append(np.abs(blur(ref) - blur(shifted)).mean())
    assert all(exact)
    assert {1, 2} <= set(used)  # both paths taken
    # same crop, flip and jitter: only high frequencies differ (DCT scaling vs bilinear on the full image)
    assert np.median(blurred) < 2.0 and np.median(other_seed) > 5 * np.median(blurred)


# --- uint8 batches normalised on the device ------------------------------------------------------------------------

@pytest.mark.parametrize("policy", [{}, {"auto_augment": "randaugment", "random_erasing": 0.5}])
def test_uint8_batches_normalise_to_the_float_batches(tmp_path, policy):
    batches = {}
    for on_device in (False, True):
        m = manager(tmp_path, fraction=0.2, normalize_on_device=on_device, **policy)
        loader = m.train_loader(batch_size=12)
        loader.sampler.set_epoch(1)
        batches[on_device] = [(m.to_device(x, torch.device("cpu")), x.dtype, x.shape, y) for x, y in loader]
    assert len(batches[True]) == len(batches[False]) == 10  # 20 % of 600 images, 12 per batch
    for (a, dtype_a, _, ya), (b, dtype_b, shape_b, yb) in zip(batches[False], batches[True]):
        assert dtype_a == torch.float32 and dtype_b == torch.uint8 and shape_b == (12, 32, 32, 3)
        assert a.shape == b.shape == (12, 3, 32, 32) and b.dtype == torch.float32 and b.is_contiguous()
        assert torch.equal(ya, yb)
        # float path: (x/255 - mean)/std in float32; uint8 path: (x - 255 mean)/(255 std); erasing fills with the
        # mean colour rounded to uint8 (at most 0.5/255/std = 0.009 away from the float path's 0)
        assert torch.allclose(a, b, atol=1e-2 if policy else 1e-5)


def test_to_device_memory_format_and_bad_shapes():
    x = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    y = to_device(x, torch.device("cpu"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.channels_last)
    assert y.shape == (2, 3, 8, 8) and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, (x.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        to_device(x.permute(0, 3, 1, 2), torch.device("cpu"), (0.5,) * 3, (0.25,) * 3)


# --- seeding and determinism -----------------------------------------------------------------------------------------

def test_sample_seeds_and_generators_are_pure_functions_of_the_sample():
    seeds = {sample_seed(s, e, i, a) for s in (0, 1) for e in (0, 1) for i in range(50) for a in (0, 1)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 63 for s in seeds)
    assert sample_seed(-1, 0, 5) == sample_seed(-1, 0, 5)
    numpy_gen, python_gen = sample_generators(123)
    first = (python_gen.random(), numpy_gen.random(3).tolist())
    numpy_gen, python_gen = sample_generators(999)
    python_gen.random(), numpy_gen.random(7)  # another history
    numpy_gen, python_gen = sample_generators(123)
    assert (python_gen.random(), numpy_gen.random(3).tolist()) == first
    numpy_gen, python_gen = sample_generators(124)
    assert (python_gen.random(), numpy_gen.random(3).tolist()) != first


@pytest.mark.parametrize("options", [FAST, {"decoder": "opencv", "auto_augment": "trivialaugment",
                                            "random_erasing": 0.3, "normalize_on_device": True}])
def test_fast_batches_are_identical_whatever_the_worker_count(tmp_path, options):
    batches = {}
    for workers in (0, 2):
        m = manager(tmp_path, fraction=0.2, num_workers=workers, persistent_workers=False, image_size=24,
                    **options)
        loader = m.train_loader(batch_size=8)
        loader.sampler.set_epoch(2)
        batches[workers] = [x for x, _ in loader]
    assert len(batches[0]) == len(batches[2]) == 15
    assert all(a.dtype == torch.uint8 and torch.equal(a, b) for a, b in zip(batches[0], batches[2]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fast_paths_skip_and_list_corrupt_images(sample_copy, tmp_path, num_workers):
    cls_dir = sample_copy / "train" / "n03000684"
    files = sorted(cls_dir.iterdir())
    files[0].write_bytes(b"")
    files[1].write_bytes(files[1].read_bytes()[:300])  # truncated: no EOI marker, so Pillow decides, and raises
    files[2].write_text("this is not an image")
    for name, p in _odd_files(files[3], tmp_path).items():
        shutil.copy(p, cls_dir / f"zz_{p.name}")
    m = ImageNetDataManager(DataConfig(root=sample_copy, image_size=32, val_image_size=32, num_workers=num_workers,
                                       persistent_workers=False, index_cache_dir=tmp_path / "cache", **FAST),
                            seed=0, run_dir=tmp_path / "logs")
    loader = m.train_loader(batch_size=20)
    loader.sampler.set_epoch(0)
    seen = 0
    for images, labels in loader:
        assert images.shape == (20, 32, 32, 3) and images.dtype == torch.uint8
        seen += len(labels)
    assert seen == len(m.train_ids) // 20 * 20
    assert sorted(Path(b["path"]).name for b in m.corrupt_images()) == sorted(f.name for f in files[:3])


def test_training_and_lr_finder_with_every_fast_path(tmp_path):
    from core.cli import build_trainer

    cfg = tiny_config(tmp_path, data={**FAST, "num_workers": 1, "image_size": 48},
                      training={"epochs": 1, "lr_finder": True, "lr_finder_steps": 20})
    result = build_trainer(cfg).fit()
    assert result["epochs_completed"] == 1 and math.isfinite(result["best_top1"])
    assert (tmp_path / "run" / "logs" / "lr_finder" / "optimal_lr.txt").is_file()
    sweep = json.loads((tmp_path / "run" / "logs" / "lr_finder" / "lr_finder.json").read_text())
    assert sweep["settings"]["num_steps"] == 20 and len(sweep["lrs"]) <= 20  # --training.lr_finder_steps


def test_compiled_training_writes_plain_checkpoints_and_resumes(tmp_path):
    from core.checkpoint import load_checkpoint
    from core.model import build_model
    from core.trainer import ImageNetTrainer

    cfg = tiny_config(tmp_path, model={"name": "resnet18", "compile": True},
                      data={"fraction": 0.1, "val_fraction": 0.2},
                      training={"epochs": 1, "batch_size": 20, "resume": "auto"})
    trainer = ImageNetTrainer(cfg)
    assert trainer.model is not trainer.unwrapped_model()  # the OptimizedModule wrapper
    assert trainer.fit()["epochs_completed"] == 1
    ckpt = load_checkpoint(tmp_path / "run" / "models" / "last.pt")
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    build_model("resnet18", num_classes=10).load_state_dict(ckpt["model"], strict=True)
    cfg2 = tiny_config(tmp_path, model={"name": "resnet18", "compile": True},
                       data={"fraction": 0.1, "val_fraction": 0.2},
                       training={"epochs": 2, "batch_size": 20, "resume": "auto"})
    assert ImageNetTrainer(cfg2).fit()["epochs_completed"] == 2


# --- the device cache --------------------------------------------------------------------------------------------------

CACHE = {"device_cache": True, "device_cache_size": 48, "color_jitter": 0.0}


def test_device_cache_batches_equal_the_plain_pipeline_on_the_cached_images(tmp_path):
    from core.data.device_cache import cache_transform
    from core.data.transforms import build_train_transform

    m = manager(tmp_path, fraction=0.2, **CACHE)
    loader = m.train_loader(batch_size=10)  # device: the CPU here; the same code runs on CUDA
    loader.sampler.set_epoch(1)
    keys = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == 12 and len(keys) == 120
    (cache,) = m._device_caches.values()
    assert cache.shape == (120, 48, 48, 3) and cache.dtype == torch.uint8
    for i in (0, 57, 119):  # each cached image is the decoded photo, short side 48, centre square
        photo = decode_image(m.train_reader.source(int(m.train_ids[i])))
        assert np.array_equal(cache[i].numpy(), cache_transform(48)(image=photo)["image"])
    plain = build_train_transform(DataConfig(image_size=32, color_jitter=0.0), 32)
    interior, border = [], []
    for (images, labels), batch_keys in zip(batches, [keys[k:k + 10] for k in range(0, 120, 10)]):
        assert images.shape == (10, 3, 32, 32) and images.dtype == torch.float32
        for row, (position, epoch, resolution) in enumerate(batch_keys):
            assert (epoch, resolution) == (1, 32) and labels[row] == m.train_labels[position]
            (x0, y0, x1, y1), _ = draw_crop_and_flip(plain, sample_seed(m.seed, epoch, position), (48, 48))
            seed_pipeline(plain, sample_seed(m.seed, epoch, position))
            ref = plain(image=cache[position].numpy())["image"]
            diff = (ref - images[row]).abs().amax(0)
            interior.append(diff[1:-1, 1:-1].max().item())
            if x1 - x0 >= 32 and y1 - y0 >= 32:  # not enlarged
                border.append(diff.max().item())
    # the same crops and flips; cv2 rounds to uint8 (0.5 level = 0.009 after Normalize). Only the outer ring may
    # differ more when a crop is enlarged: cv2 repeats the crop's edge, roi_align reads the pixel beyond it.
    assert max(interior) < 0.02
    assert len(border) > 20 and max(border) < 0.02


def test_device_cache_refuses_pixel_augmentations(tmp_path):
    from core.config import ExperimentConfig

    with pytest.raises(ValueError, match="data.color_jitter.*device_cache"):
        ExperimentConfig(data=DataConfig(device_cache=True, color_jitter=0.4))
    with pytest.raises(ValueError, match="data.auto_augment"):
        ExperimentConfig(data=DataConfig(device_cache=True, color_jitter=0.0, auto_augment="randaugment"))


def test_device_cache_is_deterministic_resumable_and_reused(tmp_path):
    runs = {}
    for workers in (0, 2):
        m = manager(tmp_path, fraction=0.2, num_workers=workers, persistent_workers=False, **CACHE)
        loader = m.train_loader(batch_size=8)
        loader.sampler.set_epoch(3)
        runs[workers] = [x for x, _ in loader]
        loader.sampler.set_epoch(3, start_micro_batch=5)  # resume mid-epoch: the remaining batches, unchanged
        assert all(torch.equal(a, b) for a, b in zip(runs[workers][5:], [x for x, _ in loader]))
        again = m.train_loader(batch_size=8)
        assert again.cache is loader.cache  # one cache per manager and device
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_training_on_the_device_cache_with_progressive_resizing(tmp_path):
    from core.trainer import ImageNetTrainer

    cfg = tiny_config(tmp_path, data={**CACHE, "progressive_resizing": True, "start_image_size": 32,
                                      "image_size": 48, "ramp_start_epoch": 0, "ramp_end_epoch": 1,
                                      "resolution_step": 16, "num_workers": 1},
                      training={"epochs": 2})
    trainer = ImageNetTrainer(cfg)
    result = trainer.fit()
    assert result["epochs_completed"] == 2 and math.isfinite(result["best_top1"])
    (cache,) = trainer.data._device_caches.values()
    assert cache.shape[1:] == (48, 48, 3)
