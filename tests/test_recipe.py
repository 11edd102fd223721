"""Recipe features: progressive resizing, RandAugment/TrivialAugment and erasing, MixUp/CutMix, EMA, LR scaling,
initial weights, head re-initialisation and frozen backbones."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from core.checkpoint import CheckpointMismatchError, load_checkpoint
from core.config import DataConfig, TrainingConfig
from core.data.manager import ImageNetDataManager
from core.data.transforms import TrainTransform
from core.data.transforms import build_train_transform as make_train_transform
from core.schedules import resolution_at
from core.step import build_batch_mix
from core.trainer import ImageNetTrainer


def test_resolution_schedule_ramps_in_multiples_of_32():
    cfg = DataConfig(progressive_resizing=True, start_image_size=160, image_size=224, ramp_start_epoch=2,
                     ramp_end_epoch=10)
    got = [resolution_at(e, cfg) for e in range(14)]
    assert got[:3] == [160, 160, 160] and got[10:] == [224] * 4
    assert all(r % 32 == 0 for r in got) and got == sorted(got)
    assert resolution_at(6, cfg) == 192  # halfway
    assert resolution_at(5, DataConfig(image_size=128)) == 128  # off: constant


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
def test_auto_augment_and_erasing_are_seeded_per_sample(tmp_path, policy):
    cfg = DataConfig(auto_augment=policy, random_erasing=1.0, index_cache_dir=tmp_path)
    tf = make_train_transform(cfg, 48)
    assert isinstance(tf, TrainTransform)
    image = np.asarray(ImageNetDataManager(cfg, seed=0)._readers[0].read(0))
    outs = []
    for seed in (1, 1, 2):
        tf.set_random_seed(seed)
        outs.append(tf(image=image)["image"])
    assert outs[0].shape == (3, 48, 48) and outs[0].dtype == torch.float32
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert (outs[0] == 0).all(dim=0).any()  # an erased rectangle (value 0 = the mean colour after Normalize)
    before = torch.get_rng_state()
    tf(image=image)
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is untouched


def test_mixup_cutmix_give_soft_labels():
    mix = build_batch_mix(TrainingConfig(mixup_alpha=0.2, cutmix_alpha=1.0), num_classes=10)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    mixed, soft = mix(x, y)
    assert mixed.shape == x.shape and soft.shape == (8, 10)
    assert torch.allclose(soft.sum(1), torch.ones(8))
    assert build_batch_mix(TrainingConfig(), 10) is None


def test_linear_lr_scaling():
    t = TrainingConfig(lr=0.1, batch_size=64, grad_accum_steps=4, lr_scaling="linear", lr_reference_batch=256)
    assert t.peak_lr() == pytest.approx(0.1) and t.peak_lr(world_size=8) == pytest.approx(0.8)
    assert dataclasses.replace(t, lr_scaling="none").peak_lr(8) == 0.1


def test_recipe_run_with_ema_mix_progressive_resizing(tmp_path):
    cfg = tiny_config(tmp_path, data={"progressive_resizing": True, "start_image_size": 32, "image_size": 64,
                                      "ramp_start_epoch": 0, "ramp_end_epoch": 1, "auto_augment": "trivialaugment",
                                      "random_erasing": 0.25},
                      training={"epochs": 2, "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "ema_decay": 0.9,
                                "label_smoothing": 0.1, "grad_clip_norm": 1.0})
    trainer = ImageNetTrainer(cfg)
    seen_sizes = []
    real = trainer.model.forward
    trainer.model.forward = lambda x: (seen_sizes.append(x.shape[-1]), real(x))[1]
    trainer.fit()
    assert set(seen_sizes) == {32, 64}  # the crop grows per epoch (eval runs at val_image_size 32)
    lines = [json.loads(x) for x in (tmp_path / "run" / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert {"val_top1_ema", "val_top5_ema", "val_loss_ema"} <= set(lines[-1])
    ckpt = load_checkpoint(tmp_path / "run" / "models" / "last.pt")
    assert set(ckpt["model_ema"]) == set(ckpt["model"]) and ckpt["ema_n_averaged"].item() == ckpt["global_step"]
    assert any(not torch.equal(ckpt["model_ema"][k], ckpt["model"][k]) for k in ckpt["model"])
    # best.pt follows the EMA's top-1 when EMA is on
    assert ckpt["best_top1"] == max(x["val_top1_ema"] for x in lines)


def test_init_from_checks_classes_and_reinit_head_reuses_the_backbone(tmp_path, sample_copy):
    ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1})).fit()
    first = load_checkpoint(tmp_path / "run" / "models" / "last.pt")
    import shutil
    for split in ("train", "val"):  # the next stage has other classes (9 instead of 10)
        shutil.rmtree(sample_copy / split / "n03888257")
    stage2 = dict(data={}, training={"epochs": 1, "init_from": tmp_path / "run" / "models" / "last.pt"},
                  logging={"output_dir": tmp_path / "stage2"})
    with pytest.raises(CheckpointMismatchError, match="--training.reinit_head true"):
        ImageNetTrainer(tiny_config(tmp_path, root=sample_copy, **stage2))
    stage2["training"]["reinit_head"] = True
    trainer = ImageNetTrainer(tiny_config(tmp_path, root=sample_copy, **stage2))
    model = trainer.unwrapped_model()
    assert model.fc.out_features == 9
    assert torch.equal(model.layer3[0].conv1.weight, first["model"]["layer3.0.conv1.weight"])


def test_frozen_backbone_trains_only_the_classifier(tmp_path):
    ImageNetTrainer(tiny_config(tmp_path, training={"epochs": 1})).fit()
    start = load_checkpoint(tmp_path / "run" / "models" / "last.pt")["model"]
    cfg = tiny_config(tmp_path, training={"epochs": 1, "init_from": tmp_path / "run" / "models" / "last.pt",
                                          "freeze_backbone": True, "lr": 0.5},
                      logging={"output_dir": tmp_path / "repair"})
    ImageNetTrainer(cfg).fit()
    after = load_checkpoint(tmp_path / "repair" / "models" / "last.pt")
    for k, v in start.items():
        if k.startswith("fc."):
            assert not torch.equal(v, after["model"][k]), k
        else:  # weights and BatchNorm running statistics untouched
            assert torch.equal(v, after["model"][k]), k


@pytest.mark.parametrize("name", ["rn18_16_epochs", "rn18_24_epochs", "rn18_32_epochs", "rn18_88_epochs",
                                  "rn50_16_epochs", "rn50_24_epochs", "rn50_32_epochs", "rn50_88_epochs"])
def test_ffcv_style_imagenet_configs_parse_and_follow_ffcv(name):
    """The FFCV-style ImageNet configs load through the phase-1 script's layers and keep ffcv-imagenet's
    schedule: the peak LR at epoch 2 then linearly to 0, 160 -> 192 px, evaluation at 256 px with flip TTA."""
    from core.cli import experiment_config
    from core.config import PROJECT_ROOT
    from core.schedules import lr_at

    script_dir = PROJECT_ROOT / "experiments" / "phase1_subset_20pct"
    cfg = experiment_config(script_dir, ["--data.root", "/data/ILSVRC2012", "--config",
                                         str(script_dir / "ffcv" / f"{name}.yaml")])
    d, t = cfg.data, cfg.training
    epochs = int(name.split("_")[1])
    assert cfg.model.name == ("resnet18" if name.startswith("rn18") else "resnet50") and t.epochs == epochs
    assert d.fraction == 1.0 and d.val_image_size == 256 and t.eval_hflip and t.label_smoothing == 0.1
    assert cfg.model.blurpool  # ffcv-imagenet's use_blurpool: 1 in every ResNet config
    assert [resolution_at(e, d) for e in (0, d.ramp_start_epoch, epochs - 1)] == [160, 160, 192]
    spe = 100
    lrs = [lr_at(s, t, spe) for s in range(epochs * spe)]
    assert int(np.argmax(lrs)) == 2 * spe - 1 and lrs[-1] < 0.01 * max(lrs)
    ffcv_peak = {"rn18": 0.5 * t.effective_batch_size / 1024, "rn50": 1.7 * t.effective_batch_size / 4096}
    assert max(lrs) == pytest.approx(ffcv_peak[name[:4]])  # ffcv's LR at its batch, scaled linearly to ours
