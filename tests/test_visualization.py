"""Tests for utils.visualization: each plot writes a PNG that PIL can read, jsonl edge cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from utils.visualization import (
    load_metrics,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_training_curves,
    series_styles,
)


def _record(epoch: int, with_val: bool) -> dict:
    rec = {
        "epoch": epoch,
        "train_loss": 2.3 / epoch,
        "train_top1": 10.0 + 8 * epoch,
        "lr": 0.1 * 0.5 ** (epoch - 1),
        "images_per_sec": 1500.0,
        "epoch_time_s": 12.5,
    }
    if with_val:
        rec.update(val_loss=2.4 / epoch, val_top1=9.0 + 7 * epoch, val_top5=40.0 + 5 * epoch)
    return rec


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _check_png(path: Path, min_w: int = 300, min_h: int = 200) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        w, h = im.size
    assert min_w <= w <= 6000 and min_h <= h <= 6000, (w, h)
    return w, h


def test_load_metrics_handles_missing_val_keys_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    recs = [_record(e, with_val=e % 2 == 0) for e in range(1, 5)]
    path.write_text(json.dumps(recs[0]) + "\n\n" + "".join(json.dumps(r) + "\n" for r in recs[1:]))
    loaded = load_metrics(path)
    assert len(loaded) == 4
    assert "val_top1" not in loaded[0] and loaded[1]["val_top1"] == pytest.approx(23.0)


def test_load_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_metrics(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_record(1, True)) + "\n{not json\n")
    with pytest.raises(ValueError, match=":2:"):
        load_metrics(bad)


def test_training_curves_from_jsonl_with_missing_val(tmp_path: Path) -> None:
    recs = [_record(e, with_val=e % 3 == 0) for e in range(1, 11)]
    recs[5]["val_top5"] = math.nan  # NaN is skipped like a missing key
    path = _write_jsonl(tmp_path / "metrics.jsonl", recs)
    out = plot_training_curves(path, tmp_path / "plots" / "curves.png", title="resnet18 test")
    assert out == tmp_path / "plots" / "curves.png"
    w, h = _check_png(out, min_w=1200, min_h=400)
    assert w > h  # three panels side by side


def test_training_curves_single_epoch_and_no_val(tmp_path: Path) -> None:
    out = plot_training_curves([_record(1, with_val=False)], tmp_path / "one.png")
    _check_png(out, min_w=1200, min_h=400)


def test_training_curves_rejects_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_training_curves([], tmp_path / "x.png")


def test_class_distribution_small_and_large(tmp_path: Path) -> None:
    counts = {"tench": 963, "English springer": 955, "cassette player": 993, "chain saw": 858}
    _check_png(plot_class_distribution(counts, tmp_path / "small.png"))
    g = torch.Generator().manual_seed(0)
    many = torch.randint(700, 1301, (1000,), generator=g).tolist()
    _check_png(plot_class_distribution(many, tmp_path / "large.png", title="ImageNet-1k train"))
    with pytest.raises(ValueError):
        plot_class_distribution({}, tmp_path / "empty.png")


@pytest.mark.parametrize(("num_classes", "normalize"), [(10, True), (10, False), (35, True)])
def test_confusion_matrix_png(tmp_path: Path, num_classes: int, normalize: bool) -> None:
    g = torch.Generator().manual_seed(num_classes)
    cm = torch.randint(0, 5, (num_classes, num_classes), generator=g)
    cm += torch.diag(torch.randint(20, 60, (num_classes,), generator=g))
    cm[-1] = 0  # a class without samples
    names = [f"class {i}" for i in range(num_classes)]
    out = plot_confusion_matrix(cm, names, tmp_path / "cm.png", normalize=normalize)
    _check_png(out, min_w=500, min_h=500)


def test_confusion_matrix_refuses_many_classes(tmp_path: Path) -> None:
    cm = torch.zeros(100, 100, dtype=torch.int64)
    with pytest.raises(ValueError, match="most-confused"):
        plot_confusion_matrix(cm, [str(i) for i in range(100)], tmp_path / "big.png")
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(torch.zeros(3, 3), ["a", "b"], tmp_path / "bad.png")


# -- several runs, confused pairs, per-class accuracy, image grids, LR finder -------------------------------------

import numpy as np  # noqa: E402

from core.config import BUNDLED_SAMPLE_ROOT, DataConfig  # noqa: E402
from core.data.decode import decode_image  # noqa: E402
from core.data.transforms import build_train_transform  # noqa: E402
from utils.metrics import per_class_report  # noqa: E402
from utils.visualization import (denormalize, plot_augmentation_preview, plot_lr_finder,  # noqa: E402
                                 plot_most_confused, plot_per_class_accuracy, plot_sample_predictions)

SAMPLE_IMAGES = sorted((BUNDLED_SAMPLE_ROOT / "val").glob("*/*"))


def test_most_confused_view_for_1000_classes(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    cm = torch.diag(torch.randint(30, 50, (1000,), generator=g))
    idx = torch.randint(0, 1000, (3000, 2), generator=g)
    cm.index_put_((idx[:, 0], idx[:, 1]), torch.ones(3000, dtype=torch.int64), accumulate=True)
    names = [f"n{i:08d}, a rather long synset name number {i}" for i in range(1000)]
    w, h = _check_png(plot_most_confused(cm, names, tmp_path / "pairs.png", top_n=25))
    assert h > 600  # one bar per pair
    _check_png(plot_most_confused(torch.eye(4, dtype=torch.int64), None, tmp_path / "none.png"))  # no errors
    with pytest.raises(ValueError):
        plot_most_confused(cm, names, tmp_path / "bad.png", top_n=0)


def test_per_class_accuracy_small_and_large(tmp_path: Path) -> None:
    cm = torch.tensor([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    _check_png(plot_per_class_accuracy(per_class_report(cm, ["tench", "church", "empty"]), tmp_path / "s.png"))
    g = torch.Generator().manual_seed(1)
    big = torch.diag(torch.randint(1, 50, (1000,), generator=g)) + torch.randint(0, 2, (1000, 1000), generator=g)
    _check_png(plot_per_class_accuracy(per_class_report(big, [str(i) for i in range(1000)]), tmp_path / "l.png"))


def test_denormalize_inverts_the_training_pipeline_normalize() -> None:
    cfg = DataConfig(color_jitter=0.0, hflip=False, min_scale=1.0)
    image = decode_image(SAMPLE_IMAGES[0])
    tensor = build_train_transform(cfg, 64)(image=image)["image"]
    back = denormalize(tensor, cfg.mean, cfg.std)
    assert back.shape == (64, 64, 3) and back.dtype == np.uint8
    manual = np.clip((tensor.numpy().transpose(1, 2, 0) * np.array(cfg.std) + np.array(cfg.mean)) * 255, 0, 255)
    assert np.abs(back.astype(float) - manual).max() <= 0.5 + 1e-6
    with pytest.raises(ValueError):
        denormalize(torch.zeros(64, 64, 3), cfg.mean, cfg.std)


def test_sample_predictions_and_augmentation_grids(tmp_path: Path) -> None:
    images = [decode_image(p) for p in SAMPLE_IMAGES[::18][:7]]
    names = [p.parent.name for p in SAMPLE_IMAGES[::18][:7]]
    preds = names[:3] + names[4:] + names[3:4]
    _check_png(plot_sample_predictions(images, names, tmp_path / "pred.png", pred_names=preds,
                                       confidences=[0.9, 0.5, 0.3, 0.8, 0.7, 0.6, 0.2], ncols=4))
    _check_png(plot_sample_predictions(images[:2], names[:2], tmp_path / "plain.png"))
    with pytest.raises(ValueError, match="pred_names"):
        plot_sample_predictions(images, names, tmp_path / "bad.png", pred_names=names[:2])

    cfg = DataConfig()
    tf = build_train_transform(cfg, 48)
    augmented = [[tf(image=im)["image"] for _ in range(4)] for im in images[:2]]
    w, h = _check_png(plot_augmentation_preview(images[:2], augmented, tmp_path / "aug.png", cfg.mean, cfg.std,
                                                row_titles=names[:2]))
    assert w > h
    with pytest.raises(ValueError):
        plot_augmentation_preview(images[:2], augmented[:1], tmp_path / "bad.png", cfg.mean, cfg.std)


def test_lr_finder_plot(tmp_path: Path) -> None:
    lrs = np.logspace(-6, 1, 80)
    smoothed = 2.3 - 1.2 / (1 + np.exp(-3 * (np.log10(lrs) + 2))) + np.clip(np.log10(lrs) + 0.5, 0, None) ** 3
    raw = smoothed + np.random.default_rng(0).normal(0, 0.05, 80)
    _check_png(plot_lr_finder(lrs, raw, smoothed, tmp_path / "lr.png",
                              {"steepest descent": 1e-2, "min loss / 10": 3e-2}), 600, 400)
    with pytest.raises(ValueError):
        plot_lr_finder(lrs, raw[:5], smoothed, tmp_path / "bad.png")


@pytest.mark.parametrize("n", [1, 10, 11, 20, 45])
def test_series_styles_never_repeat_within_a_plot(n: int) -> None:
    # the speedrun's curve has 11 runs: with the 10-colour cycle two of them shared a colour
    styles = series_styles(n)
    assert len(styles) == n and len(set(map(str, styles))) == n
