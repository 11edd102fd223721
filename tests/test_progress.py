"""Progress bars: every long loop draws a tqdm bar with its total and an ETA slot, and none draws one when the
progress flag (``--logging.progress_bar``) is off."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import tiny_config
from core.config import BUNDLED_SAMPLE_ROOT, DataConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bars(text: str) -> dict[str, int]:
    """{description: total} of the tqdm bars drawn in ``text`` ("desc:  40%|####  | 4/10 [00:01<00:02, ...]");
    the ``<`` is the ETA slot."""
    return {m[1]: int(m[2]) for m in re.finditer(r"(?:^|\r)([^\r\n:]+): +\d+%\|[^|]*\| *\d+/(\d+) \[[\d:]+<", text)}


def sample_data(tmp_path: Path, progress: bool, **data) -> "ImageNetDataManager":  # noqa: F821
    from core.data.manager import ImageNetDataManager

    cfg = DataConfig(image_size=32, val_image_size=32, num_workers=0, index_cache_dir=tmp_path / "cache", **data)
    return ImageNetDataManager(cfg, progress=progress)


@pytest.mark.parametrize("progress", [True, False])
def test_indexing_statistics_device_cache_and_val_sorting(tmp_path, capsys, progress):
    from core.data.device_cache import build_device_cache
    from core.data.stats import compute_dataset_stats
    from core.prepare import sort_imagenet_val

    data = sample_data(tmp_path, progress, fraction=0.05)  # a fresh index cache: both splits are scanned
    compute_dataset_stats(data, num_images=4, resolution=32, progress=progress)
    build_device_cache(data, torch.device("cpu"), side=16, batch_size=8)
    flat = tmp_path / "val"
    flat.mkdir()
    wnids = sorted(p.name for p in (BUNDLED_SAMPLE_ROOT / "val").iterdir())[:3]
    for i, wnid in enumerate(wnids, start=1):  # three flat ILSVRC2012-style val images and Kaggle's labels
        (flat / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(next((BUNDLED_SAMPLE_ROOT / "val" / wnid).iterdir())
                                                            .read_bytes())
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i:08d},{w} 1 2 3 4\n" for i, w in enumerate(wnids, start=1)))
    sort_imagenet_val(flat, labels, progress=progress)

    drawn = bars(capsys.readouterr().err)
    if not progress:
        assert drawn == {}
        return
    assert drawn["indexing train"] == 10 and drawn["indexing val"] == 10  # one step per class folder
    assert drawn["dataset statistics"] == 4
    assert drawn["device cache (16 px)"] == len(data.train_ids)
    assert drawn["sorting validation images"] == 3


@pytest.mark.parametrize("progress", [True, False])
def test_evaluation_and_lr_finder(tmp_path, capsys, progress):
    from core.trainer import ImageNetTrainer
    from services.lr_finder import LRFinder

    trainer = ImageNetTrainer(tiny_config(tmp_path, data={"val_fraction": 0.2}, logging={"progress_bar": progress}))
    trainer.evaluate()
    trainer.close()
    model = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss()).range_test(
        iter(lambda: (x, y), None), num_steps=12, progress=progress)

    drawn = bars(capsys.readouterr().err)
    if not progress:
        assert drawn == {}
        return
    assert drawn["evaluating"] == len(trainer.val_loader)
    assert drawn["LR finder"] == 12


@pytest.mark.parametrize("progress", [True, False])
def test_grad_cam_analysis(tmp_path, capsys, progress):
    from core.model import build_model
    from services.gradcam_analyzer import analyze

    data = sample_data(tmp_path, False, val_fraction=0.1)
    capsys.readouterr()
    report = analyze(build_model("resnet18", num_classes=10), data, tmp_path / "gc", top_k=1, num_pairs=1,
                     pair_examples=1, batch_size=8, display_size=32, progress=progress)

    drawn = bars(capsys.readouterr().err)
    if not progress:
        assert drawn == {}
        return
    assert drawn["Grad-CAM val predictions"] == -(-report.summary.num_images // 8)  # batches
    assert drawn["Grad-CAM maps"] == len(list((tmp_path / "gc" / "overlays").glob("*.png")))


class _FoldTrainer:
    """Stands in for ImageNetTrainer in the K-fold loop: no training, a fixed linear model on pooled pixels."""

    def __init__(self, cfg, data):
        Path(cfg.logging.output_dir).mkdir(parents=True, exist_ok=True)  # the fold's run folder, as the trainer's
        self.device, self.amp_dtype = torch.device("cpu"), None
        self.model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, data.num_classes))

    def fit(self) -> dict:
        return {"interrupted": False}

    def unwrapped_model(self) -> nn.Module:
        return self.model


@pytest.mark.parametrize("progress", [True, False])
def test_k_fold_training_and_scoring(tmp_path, capsys, monkeypatch, progress):
    import core.trainer
    from services.label_issues import out_of_sample_pred_probs

    monkeypatch.setattr(core.trainer, "ImageNetTrainer", _FoldTrainer)
    cfg = tiny_config(tmp_path, logging={"progress_bar": progress})
    data = sample_data(tmp_path, False, fraction=0.1)
    capsys.readouterr()
    probs = out_of_sample_pred_probs(cfg, data, tmp_path / "cl", folds=3)
    assert probs.shape == (len(data.train_ids), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)

    drawn = bars(capsys.readouterr().err)
    if not progress:
        assert drawn == {}
        return
    assert drawn["K-fold label issues"] == 3
    assert {f"scoring fold {k}/3" for k in (1, 2, 3)} <= set(drawn)
