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
