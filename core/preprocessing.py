"""The evaluation preprocessing spec that travels with a model (input size, crop ratio, resize, mean/std, interpolation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from core.config import DataConfig, ExperimentConfig

__all__ = ["CHECKPOINT_KEY", "PreprocessingSpec", "preprocessing_of_checkpoint"]

CHECKPOINT_KEY = "pretrained_cfg"
"""Where a checkpoint keeps the spec (timm's name for the same record)."""


@dataclass(frozen=True)
class PreprocessingSpec:
    """How an image becomes the network's input at evaluation: resize the short side to ``resize_size``, centre-crop
    ``input_size`` x ``input_size``, scale to [0, 1] and normalise with ``mean`` / ``std`` (per RGB channel).

    Modelled on timm's ``pretrained_cfg`` (``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``);
    ``crop_ratio`` is timm's ``crop_pct`` and torchvision's 224 / 256 = 0.875.

    Attributes:
        input_size: side of the square crop fed to the network, px.
        crop_ratio: input_size / resize_size, in (0, 1].
        mean, std: of [0, 1] RGB pixels.
        interpolation: of the resize ("bilinear": cv2.INTER_LINEAR in the eval transform).
    """

    input_size: int
    crop_ratio: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    @property
    def resize_size(self) -> int:
        """The short side before the centre crop, px: ``round(input_size / crop_ratio)`` (64 px at 0.875 -> 73)."""
        return int(round(self.input_size / self.crop_ratio))

    @classmethod
    def from_data_config(cls, cfg: DataConfig, input_size: int | None = None) -> "PreprocessingSpec":
        """The spec of ``cfg``'s evaluation transform at ``input_size`` (default ``cfg.val_image_size``)."""
        return cls(input_size=int(cfg.val_image_size if input_size is None else input_size),
                   crop_ratio=float(cfg.val_crop_ratio), mean=tuple(map(float, cfg.mean)),
                   std=tuple(map(float, cfg.std)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, ``resize_size`` included (the keys of the export's ``config.json["preprocessing"]``)."""
        return {"input_size": self.input_size, "resize_size": self.resize_size, "crop_ratio": self.crop_ratio,
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessingSpec":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing, or ``resize_size`` disagrees with ``input_size / crop_ratio``.
        """
        missing = [k for k in ("input_size", "crop_ratio", "mean", "std") if k not in d]
        if missing:
            raise ValueError(f"preprocessing spec lacks {', '.join(missing)}: {dict(d)}")
        spec = cls(input_size=int(d["input_size"]), crop_ratio=float(d["crop_ratio"]),
                   mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])),
                   interpolation=str(d.get("interpolation", "bilinear")))
        if "resize_size" in d and int(d["resize_size"]) != spec.resize_size:
            raise ValueError(f"preprocessing spec: resize_size {d['resize_size']} is not "
                             f"round({spec.input_size} / {spec.crop_ratio}) = {spec.resize_size}")
        return spec


def preprocessing_of_checkpoint(ckpt: Mapping[str, Any]) -> PreprocessingSpec:
    """The spec a checkpoint was evaluated with: its ``pretrained_cfg`` entry, else (checkpoints written before the
    entry existed) the one derived from its saved ``config["data"]``.

    Raises:
        ValueError: the checkpoint has neither.
    """
    if ckpt.get(CHECKPOINT_KEY):
        return PreprocessingSpec.from_dict(ckpt[CHECKPOINT_KEY])
    if not ckpt.get("config"):
        raise ValueError(f"checkpoint has neither '{CHECKPOINT_KEY}' nor a saved config: preprocessing unknown")
    return PreprocessingSpec.from_data_config(ExperimentConfig.from_dict(ckpt["config"]).data)
