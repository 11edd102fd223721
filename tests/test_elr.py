"""Early-learning regularization: its targets and gradient, its settings, the trainer's use of it (exact resume) and
its exchange of updates under DDP."""

from __future__ import annotations

import shutil
import signal

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import tiny_config
from core.checkpoint import CheckpointMismatchError, load_checkpoint
from core.config import ExperimentConfig, TrainingConfig
from core.elr import EarlyLearningRegularization
from core.trainer import ImageNetTrainer

CPU = torch.device("cpu")


def _reference_term(targets: torch.Tensor, logits: torch.Tensor, strength: float = 3.0) -> torch.Tensor:
    """The reference code's term (shengliu66/ELR ``elr_loss``) on given targets: clamped softmax, targets held."""
    p = torch.softmax(logits, 1).clamp(1e-4, 1 - 1e-4)
    return strength * torch.log(1 - (targets.detach() * p).sum(1)).mean()


def test_targets_are_a_temporal_ensemble_committed_at_the_step():
    elr = EarlyLearningRegularization(5, 3, beta=0.7, strength=3.0, device=CPU)
    logits = torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # the first saturates: the clamp and renormalising bite
    p = torch.softmax(logits, 1).clamp(1e-4, 1 - 1e-4)
    p = p / p.sum(1, keepdim=True)
    elr(torch.tensor([4, 1]), logits)
    assert elr.targets.abs().sum() == 0  # not written before the optimizer step
    elr.commit()
    torch.testing.assert_close(elr.targets[[4, 1]], 0.3 * p)
    assert elr.targets[[0, 2, 3]].abs().sum() == 0  # positions not trained keep an empty target
    elr(torch.tensor([4]), logits[1:])  # sample 4 again, now predicted as class 2
    elr.commit()
    torch.testing.assert_close(elr.targets[4], 0.7 * 0.3 * p[0] + 0.3 * p[1])

    # the term and its gradient are the reference's, on the targets updated by this very micro-batch
    z = torch.tensor([[0.0, 2.0, 0.0], [25.0, -3.0, 1.0]], requires_grad=True)
    before = elr.targets[[4, 0]].clone()
    term = elr(torch.tensor([4, 0]), z)
    zr = z.detach().clone().requires_grad_(True)
    q = torch.softmax(zr.detach(), 1).clamp(1e-4, 1 - 1e-4)
    expected_targets = 0.7 * before + 0.3 * q / q.sum(1, keepdim=True)
    reference = _reference_term(expected_targets, zr)
    torch.testing.assert_close(term.detach(), reference.detach())
    term.backward()
    reference.backward()
    torch.testing.assert_close(z.grad, zr.grad)

    # a resume drops updates that were never committed (their micro-batches replay) and checks the training set
    elr(torch.tensor([2]), logits[:1])
    elr.load_state_dict(elr.state_dict(np.arange(5)), np.arange(5))
    elr.commit()
    assert elr.targets[2].abs().sum() == 0
    with pytest.raises(ValueError, match="another training set"):
        elr.load_state_dict(elr.state_dict(np.arange(5)), np.arange(5)[::-1].copy())


def test_elr_settings_are_checked():
    with pytest.raises(ValueError, match="beta in \\[0, 1\\) and a strength > 0"):
        EarlyLearningRegularization(4, 2, beta=1.0, strength=3.0, device=CPU)
    with pytest.raises(ValueError, match="strength > 0"):
        EarlyLearningRegularization(4, 2, beta=0.7, strength=0.0, device=CPU)
    elr = EarlyLearningRegularization(4, 2, beta=0.7, strength=3.0, device=CPU)
    with pytest.raises(ValueError, match="another training set or class count"):
        elr.load_state_dict({"targets": torch.zeros(5, 2), "sample_ids": torch.arange(5)}, np.arange(4))
    for bad, match in (({"elr_lambda": -1.0}, "training.elr_lambda"), ({"elr_beta": 1.0}, "training.elr_beta"),
                       ({"elr_lambda": 3.0, "mixup_alpha": 0.2}, "a mixed image is two samples")):
        with pytest.raises(ValueError, match=match):
            ExperimentConfig(training=TrainingConfig(**bad))


def _fit(tmp_path, stop_at_step: int = 0, **training) -> ImageNetTrainer:
    cfg = tiny_config(tmp_path, data={"fraction": 0.15}, training={"epochs": 2, "elr_lambda": 3.0, "elr_beta": 0.7,
                                                                  "resume": "auto", **training})
    trainer = ImageNetTrainer(cfg)
    if stop_at_step:  # as a SIGTERM during that optimizer step: checkpoint after it, then stop
        update = trainer._update

        def update_then_signal(micro: int) -> None:
            update(micro)
            if trainer.state.global_step == stop_at_step:
                trainer._stop_signal = signal.SIGTERM

        trainer._update = update_then_signal
    trainer.fit()
    return trainer


def _weights(trainer: ImageNetTrainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.unwrapped_model().parameters()])


def test_the_trainer_resumes_elr_exactly_and_the_targets_matter(tmp_path, one_torch_thread):
    """Two epochs straight, and the same two epochs stopped after step 3 (mid-epoch 1) and resumed: the same
    weights and targets, bit for bit (the targets travel in the checkpoint). A resume whose targets were emptied
    trains to other weights, so the term reads them. Every trained position's target sums to 1 - beta^k after k
    epochs that trained it (the sampler cuts each epoch to whole micro-batches, so some positions miss one)."""
    straight = _fit(tmp_path / "straight")
    _fit(tmp_path / "stopped", stop_at_step=3)
    ckpt_path = tmp_path / "stopped" / "run" / "models" / "last.pt"
    assert load_checkpoint(ckpt_path)["elr"]["targets"].abs().sum() > 0
    shutil.copytree(tmp_path / "stopped", tmp_path / "emptied")
    resumed = _fit(tmp_path / "stopped")
    assert resumed.resumed_from is not None
    torch.testing.assert_close(_weights(resumed), _weights(straight), rtol=0, atol=0)
    torch.testing.assert_close(resumed.elr.targets, straight.elr.targets, rtol=0, atol=0)
    sums = straight.elr.targets.sum(1).numpy()
    seen = np.isclose(sums[:, None], [0.0, 0.3, 0.51], atol=1e-5)
    assert seen.any(1).all() and seen[:, 2].sum() > seen[:, 1].sum() > 0

    path = tmp_path / "emptied" / "run" / "models" / "last.pt"
    ckpt = load_checkpoint(path)
    ckpt["elr"]["targets"].zero_()
    torch.save(ckpt, path)
    assert not torch.equal(_weights(_fit(tmp_path / "emptied")), _weights(straight))

    del ckpt["elr"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointMismatchError, match="no ELR targets"):
        _fit(tmp_path / "emptied")


def _rank_step(rank: int, store: str, positions: torch.Tensor, logits: torch.Tensor, out: dict) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        elr = EarlyLearningRegularization(8, 3, beta=0.7, strength=3.0, device=CPU)
        b = positions.shape[1] // 2
        for step in range(2):  # two micro-batches, rank r training block r of each
            term = elr(positions[step, rank * b:(rank + 1) * b], logits[step, rank * b:(rank + 1) * b])
            elr.commit()
            out[(rank, step)] = float(term)
        out[(rank, "targets")] = elr.targets.clone()
    finally:
        torch.distributed.destroy_process_group()


def test_under_ddp_every_rank_keeps_the_whole_table_of_one_process(tmp_path):
    """Two gloo ranks, each training its half of every micro-batch: both end with the table one process builds
    from the whole micro-batches, and each rank's term is the one process's term on that rank's samples."""
    g = torch.Generator().manual_seed(0)
    positions = torch.stack([torch.randperm(8, generator=g)[:4], torch.randperm(8, generator=g)[:4]])
    logits = torch.randn(2, 4, 3, generator=g)
    out = mp.Manager().dict()
    mp.spawn(_rank_step, args=(str(tmp_path / "store"), positions, logits, out), nprocs=2)  # no port to lose

    one = EarlyLearningRegularization(8, 3, beta=0.7, strength=3.0, device=CPU)
    for step in range(2):
        one(positions[step], logits[step])
        one.commit()
        for rank in range(2):
            # the rank's term reads its rows of the table as updated by this micro-batch, every rank's part of it
            p = torch.softmax(logits[step, rank * 2:(rank + 1) * 2], 1).clamp(1e-4, 1 - 1e-4)
            expected = 3.0 * torch.log(1 - (one.targets[positions[step, rank * 2:(rank + 1) * 2]] * p).sum(1)).mean()
            assert out[(rank, step)] == pytest.approx(float(expected), rel=1e-6)
    for rank in range(2):
        torch.testing.assert_close(out[(rank, "targets")], one.targets)
