"""Tests for services.lr_finder: the sweep's pure pieces, exact state restoration, a real small run, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from conftest import tiny_config
from core.data_manager import ImageNetDataManager
from core.model import build_model
from core.trainer import build_optimizer, forward_backward, optimizer_step
from services.lr_finder import (LRFinder, cycle_train_loader, exponential_lrs, main, smooth_losses, suggest_lr)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_exponential_lrs_endpoints_and_constant_ratio() -> None:
    lrs = exponential_lrs(1e-5, 1.0, 6)
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10.0)
    for bad in [(0, 1, 10), (1, 1, 10), (1e-3, 1, 1)]:
        with pytest.raises(ValueError):
            exponential_lrs(*bad)


def test_smooth_losses_is_bias_corrected_ema() -> None:
    # beta 0.5: avg = 0.5, 1.25, 1.125 -> / (1 - 0.5^k) = 1, 5/3, 9/7
    assert smooth_losses([1.0, 2.0, 1.0], beta=0.5) == pytest.approx([1.0, 5 / 3, 9 / 7])
    assert smooth_losses([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])  # no warm-up bias


def test_suggest_lr_on_a_known_curve() -> None:
    lrs = np.logspace(-5, 1, 61)  # 0.1 decades apart
    x = np.log10(lrs)
    # Falls fastest at 1e-2 (logistic centre), bottoms out at 10^-0.5, then rises.
    loss = 2.0 - 1.0 / (1 + np.exp(-4 * (-x - 2.0) * -1)) + 2.0 * np.clip(x + 0.5, 0, None) ** 2
    steep, min10 = suggest_lr(lrs, loss)
    assert steep == pytest.approx(1e-2, rel=0.3)
    assert min10 == pytest.approx(lrs[np.argmin(loss)] / 10)
    with pytest.raises(ValueError, match="finite"):
        suggest_lr([1e-3, 1e-2, 1e-1], [1.0, math.nan, math.inf])


def _state_tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = [v.detach().clone() for v in model.state_dict().values()]
    for state in optimizer.state_dict()["state"].values():
        out += [v.detach().clone() for v in state.values() if isinstance(v, torch.Tensor)]
    return out


def test_stops_on_divergence_and_restores_state() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    forward_backward(model, x, y, nn.CrossEntropyLoss(), None, torch.amp.GradScaler("cpu", enabled=False), 1)
    optimizer_step(optimizer, torch.amp.GradScaler("cpu", enabled=False), model)  # momentum buffers now exist
    before = _state_tensors(model, optimizer)
    finder = LRFinder(model, optimizer, nn.CrossEntropyLoss())
    result = finder.range_test(iter(lambda: (x, y), None), start_lr=1e-3, end_lr=1e6, num_steps=100)
    assert result.diverged
    assert 3 <= len(result.lrs) < 100 and len(result.losses) == len(result.smoothed) == len(result.lrs)
    after = _state_tensors(model, optimizer)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_real_run_restores_state_exactly_and_suggests(tmp_path: Path) -> None:
    """ResNet-18 on the bundled sample with gradient accumulation: the sweep trains, then everything is undone."""
    cfg = tiny_config(tmp_path, training={"batch_size": 8, "grad_accum_steps": 2, "lr": 0.1})
    torch.manual_seed(0)
    data = ImageNetDataManager(cfg.data, seed=0)
    model = build_model("resnet18", num_classes=data.num_classes)
    optimizer = build_optimizer(model, cfg.training)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loader = data.train_loader(8, 2)
    batches = cycle_train_loader(loader)
    for _ in range(2):  # one real optimizer step so that momentum buffers and BN statistics are non-trivial
        images, targets = next(batches)
        forward_backward(model, images, targets, nn.CrossEntropyLoss(), None, scaler, 2)
    optimizer_step(optimizer, scaler, model)
    model.eval()
    before = _state_tensors(model, optimizer)
    rng_before = torch.get_rng_state()

    result = LRFinder(model, optimizer, nn.CrossEntropyLoss(), grad_accum_steps=2).range_test(
        batches, start_lr=1e-4, end_lr=50.0, num_steps=14, beta=0.7)

    after = _state_tensors(model, optimizer)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))
    assert not model.training  # the mode is restored too
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.1]
    assert optimizer.state_dict()["state"]  # momentum buffers survived

    # The sweep trained for real: finite losses that change, and a suggestion inside the sweep, below the minimum.
    assert all(math.isfinite(v) for v in result.losses[:5])
    assert np.ptp(result.losses) > 0.01
    lr_at_min = result.lrs[int(np.nanargmin(result.smoothed))]
    assert 1e-4 <= result.steepest_lr <= lr_at_min
    assert result.min_loss_lr_div10 == pytest.approx(lr_at_min / 10)
    files = result.save(tmp_path / "out")
    assert float(files["optimal_lr"].read_text().splitlines()[0]) == pytest.approx(result.suggested_lr, rel=1e-5)
    curve = json.loads(files["curve"].read_text())
    assert len(curve["lrs"]) == len(curve["losses"]) == len(result.lrs)
    assert curve["steepest_lr"] == result.steepest_lr and curve["min_loss_lr_div10"] == result.min_loss_lr_div10
    with Image.open(files["plot"]) as im:
        assert im.format == "PNG" and im.size[0] >= 600


def test_command_line_with_config_file_and_flags(tmp_path: Path, capsys) -> None:
    cfg = tiny_config(tmp_path, training={"batch_size": 8})
    config_file = cfg.save_yaml(tmp_path / "exp.yaml")
    out = tmp_path / "lr"
    code = main(["--config", str(config_file), "--out", str(out), "--num-steps", "5", "--start-lr", "1e-3",
                 "--end-lr", "1", "--training.batch_size", "4"])
    assert code == 0, capsys.readouterr().err
    assert "suggested LR" in capsys.readouterr().out
    curve = json.loads((out / "lr_finder.json").read_text())
    assert curve["settings"]["batch_size"] == 4 and curve["settings"]["model"] == "resnet18"
    assert len(curve["lrs"]) == 5
    assert (out / "lr_finder.png").stat().st_size > 0 and (out / "optimal_lr.txt").stat().st_size > 0
    assert main(["--config", str(config_file), "--num-steps", "1", "--out", str(out)]) == 2  # < 2 steps
