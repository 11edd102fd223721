"""Soft training targets: their validation, the soft-label cleaning, the device table and the trainer's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from core.soft_targets import SoftTargets, soft_label_cleaning, soft_target_table
from core.step import build_run_data
from core.trainer import ImageNetTrainer


def _probs(rows: int, classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(classes), size=rows).astype(np.float32)


def test_soft_targets_refuse_what_is_not_a_probability_table():
    probs = _probs(3, 4)
    SoftTargets(np.array([2, -1, 0, 1]), probs)  # fine
    with pytest.raises(ValueError, match="softmax outputs, not logits"):
        SoftTargets(np.array([0, 1, 2]), np.log(probs))
    with pytest.raises(ValueError, match="share a soft-target row"):
        SoftTargets(np.array([0, 0, 1]), probs)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 3\)"):
        SoftTargets(np.array([0, 3]), probs)
    with pytest.raises(ValueError, match=r"integer rows \(M,\) and probs \(S, C\)"):
        SoftTargets(np.array([[0]]), probs)
    with pytest.raises(ValueError, match="integer rows"):
        SoftTargets(np.array([0.7, -1.0]), probs)  # never truncated to row 0
    with pytest.raises(ValueError, match="must share M"):
        SoftTargets.for_flagged(np.array([True, False]), probs)
    soft = SoftTargets.for_flagged(np.array([False, True, True]), probs)
    with pytest.raises(ValueError, match="do not fit a training set of 4;"):
        soft.check(4, 4)
    with pytest.raises(ValueError, match="over 4 classes do not fit a model with 5 outputs"):
        soft.check(3, 5)
    with pytest.raises(ValueError, match="mixup_alpha"):
        soft_target_table(soft, 3, 4, torch.device("cpu"), mixing=True)
    assert soft_target_table(None, 3, 4, torch.device("cpu")) is None


def test_soft_label_cleaning_keeps_every_sample_and_soft_labels_the_flagged_ones():
    labels = np.array([0, 1, 2, 3, 0, 1])
    probs = _probs(6, 4, seed=1)
    probs[[0, 2]] = [[0.1, 0.6, 0.2, 0.1], [0.5, 0.2, 0.2, 0.1]]  # flagged, the model prefers another class
    probs[4] = [0.7, 0.1, 0.1, 0.1]  # flagged, but its most probable class is its given label
    flagged = np.array([True, False, True, False, True, False])
    cleaning = soft_label_cleaning(labels, probs, flagged)
    assert cleaning.targets.num_soft == 3 and cleaning.num_unchanged == 1
    np.testing.assert_array_equal(cleaning.labels, np.where(flagged, probs.argmax(1), labels))
    np.testing.assert_array_equal(cleaning.targets.rows, [0, -1, 1, -1, 2, -1])
    np.testing.assert_allclose(cleaning.targets.probs, probs[flagged])

    table = soft_target_table(cleaning.targets, 6, 4, torch.device("cpu"))
    positions = torch.tensor([4, 1, 0])
    out = table(positions, torch.from_numpy(cleaning.labels)[positions])
    np.testing.assert_allclose(out.numpy(), [probs[4], np.eye(4)[1], probs[0]], rtol=1e-6)
    with pytest.raises(ValueError, match="both be"):
        soft_label_cleaning(labels[:5], probs, flagged)


def test_a_new_training_subset_or_labels_drop_the_soft_targets(tmp_path):
    data = build_run_data(tiny_config(tmp_path))
    m, c = len(data.train_ids), data.num_classes
    soft = SoftTargets.for_flagged(np.arange(m) % 3 == 0, _probs(m, c))
    data.set_train_soft_targets(soft)
    assert data.clone().train_soft_targets is soft
    data.set_train_labels(data.train_labels)
    assert data.train_soft_targets is None
    data.set_train_soft_targets(soft)
    data.set_train_subset(data.train_ids[:-1])
    assert data.train_soft_targets is None
    with pytest.raises(ValueError, match="do not fit"):
        data.set_train_soft_targets(soft)


def _trained_weights(tmp_path, soft: bool, training: dict) -> torch.Tensor:
    """One epoch on the bundled sample with every label moved to the next class: as hard labels, or with every
    other position keeping its folder label and training on the moved label as a one-hot soft target."""
    cfg = tiny_config(tmp_path, training={"epochs": 1, **training})
    data = build_run_data(cfg)
    moved = (data.train_labels + 1) % data.num_classes
    if soft:
        odd = np.arange(moved.size) % 2 == 1
        data.set_train_labels(np.where(odd, data.train_labels, moved))
        data.set_train_soft_targets(SoftTargets.for_flagged(odd, np.eye(data.num_classes)[moved]))
    else:
        data.set_train_labels(moved)
    trainer = ImageNetTrainer(cfg, data=data)
    trainer.fit()
    return torch.cat([p.detach().flatten() for p in trainer.unwrapped_model().parameters()])


@pytest.mark.parametrize("training", [{}, {"batch_size": 8, "grad_accum_steps": 2}], ids=["plain", "accumulated"])
def test_the_trainer_trains_soft_positions_on_their_targets(tmp_path, one_torch_thread, training):
    """A one-hot soft target trains exactly as the same hard label does: the loss reads the soft target of each
    position, in the order the sampler serves them (also over accumulated micro-batches), not the dataset's label,
    which differs from it for every soft position here."""
    hard = _trained_weights(tmp_path / "hard", False, training)
    soft = _trained_weights(tmp_path / "soft", True, training)
    torch.testing.assert_close(soft, hard, rtol=0, atol=0)
