"""The preprocessing spec of core.preprocessing: resize arithmetic, dict round trip, and reading it from checkpoints."""

from __future__ import annotations

import pytest
import torch

from core.config import DataConfig, ExperimentConfig
from core.preprocessing import CHECKPOINT_KEY, PreprocessingSpec, preprocessing_of_checkpoint
from deployment.export import build_export_config


@pytest.mark.parametrize(("size", "ratio", "resize"), [(224, 0.875, 256), (64, 0.875, 73), (32, 1.0, 32)])
def test_resize_size_is_rounded_input_over_crop_ratio(size: int, ratio: float, resize: int) -> None:
    spec = PreprocessingSpec.from_data_config(DataConfig(val_crop_ratio=ratio), input_size=size)
    assert spec.resize_size == resize == round(size / ratio)


def test_dict_round_trip_and_checks() -> None:
    spec = PreprocessingSpec.from_data_config(DataConfig())
    d = spec.to_dict()
    assert d == {"input_size": DataConfig().val_image_size, "resize_size": spec.resize_size, "crop_ratio": 0.875,
                 "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert PreprocessingSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="resize_size"):
        PreprocessingSpec.from_dict({**d, "resize_size": d["resize_size"] + 1})
    with pytest.raises(ValueError, match="crop_ratio"):
        PreprocessingSpec.from_dict({k: v for k, v in d.items() if k != "crop_ratio"})


def test_checkpoint_spec_wins_over_its_config_and_old_checkpoints_fall_back() -> None:
    config = ExperimentConfig().to_dict()
    config["data"]["val_image_size"] = 80
    old = {"config": config}
    assert preprocessing_of_checkpoint(old) == PreprocessingSpec.from_data_config(ExperimentConfig.from_dict(config).data)
    assert preprocessing_of_checkpoint(old).input_size == 80
    saved = PreprocessingSpec(input_size=96, crop_ratio=0.9, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert preprocessing_of_checkpoint({**old, CHECKPOINT_KEY: saved.to_dict()}) == saved
    with pytest.raises(ValueError, match=CHECKPOINT_KEY):
        preprocessing_of_checkpoint({"model": {}})


def test_export_writes_the_checkpoints_spec(tmp_path) -> None:
    saved = PreprocessingSpec(input_size=96, crop_ratio=0.9, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    ckpt = {"config": ExperimentConfig().to_dict(), "model": {"fc.weight": torch.zeros(10, 512)},
            CHECKPOINT_KEY: saved.to_dict()}
    config = build_export_config(ckpt, tmp_path / "models" / "best.pt", "model")
    assert config["preprocessing"] == saved.to_dict() and config["preprocessing"]["resize_size"] == 107
