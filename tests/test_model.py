"""Tests for core.model: torchvision parity, shapes, stems, init and the factory, on tiny CPU inputs."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn

from core.model import (
    MODEL_REGISTRY,
    BasicBlock,
    Bottleneck,
    ResNet,
    apply_blurpool,
    available_models,
    build_model,
    count_parameters,
)

MODEL_NAMES = available_models()

# Published torchvision counts at 1000 classes (torchvision docs, "num_params").
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


@functools.lru_cache(maxsize=None)
def _torchvision_model(name: str) -> nn.Module:
    """Randomly initialised torchvision reference, built once per name (resnet152 init ~1 s)."""
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def test_registry_lists_the_five_resnets() -> None:
    assert MODEL_NAMES == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert set(MODEL_REGISTRY) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_matches_torchvision(name: str) -> None:
    model = build_model(name)
    n = count_parameters(model)
    assert n == TORCHVISION_PARAMS[name]
    assert n == count_parameters(_torchvision_model(name))
    assert model.feature_dim == (512 if name in ("resnet18", "resnet34") else 2048)


@pytest.mark.parametrize("name", MODEL_NAMES)
@torch.no_grad()
def test_torchvision_state_dict_loads_strict_and_logits_match(name: str) -> None:
    reference = _torchvision_model(name)
    model = build_model(name).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours, theirs = model(x), reference(x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("small_input", "size"), [(False, 64), (True, 32)], ids=["imagenet_stem", "small_input"]
)
@pytest.mark.parametrize("name", MODEL_NAMES)
@torch.no_grad()
def test_forward_shape_and_finite(name: str, small_input: bool, size: int) -> None:
    model = build_model(name, num_classes=10, small_input=small_input).eval()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_forward_shape_in_train_mode() -> None:
    # Train-mode BatchNorm uses batch statistics, a different code path from eval.
    out = build_model("resnet18", num_classes=10).train()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@torch.no_grad()
def test_small_input_stem() -> None:
    model = build_model("resnet18", num_classes=10, small_input=True).eval()
    assert model.small_input is True
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    assert model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    feats = model.forward_features(torch.randn(1, 3, 64, 64))
    assert feats.shape == (1, 512, 8, 8)

    default = build_model("resnet18", num_classes=10)
    assert default.small_input is False
    assert default.conv1.kernel_size == (7, 7) and default.conv1.stride == (2, 2)
    assert isinstance(default.maxpool, nn.MaxPool2d)


def test_small_input_rejects_torchvision_conv1() -> None:
    # Documented limitation: the 3x3 stem cannot take torchvision's 7x7 conv1 weight.
    model = build_model("resnet18", small_input=True)
    with pytest.raises(RuntimeError, match="conv1.weight"):
        model.load_state_dict(_torchvision_model("resnet18").state_dict(), strict=True)


def _last_bns(model: ResNet) -> list[nn.BatchNorm2d]:
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert blocks
    return [b.bn2 if isinstance(b, BasicBlock) else b.bn3 for b in blocks]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("zero_init_residual", [True, False])
def test_zero_init_residual(name: str, zero_init_residual: bool) -> None:
    model = build_model(name, num_classes=10, zero_init_residual=zero_init_residual)
    fill = 0.0 if zero_init_residual else 1.0
    for bn in _last_bns(model):
        assert torch.all(bn.weight == fill)
        assert torch.all(bn.bias == 0)
    # Other BNs keep gamma = 1 either way.
    assert torch.all(model.bn1.weight == 1)
    assert torch.all(model.layer1[0].bn1.weight == 1)


def test_zero_init_residual_is_default() -> None:
    assert all(torch.all(bn.weight == 0) for bn in _last_bns(build_model("resnet18")))


def test_conv_init_is_kaiming_fan_out() -> None:
    torch.manual_seed(0)
    conv = build_model("resnet50").layer3[0].conv2  # 3x3, 256 -> 256
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    expected_std = (2.0 / fan_out) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)


@pytest.mark.parametrize("bad", ["resnet51", "ResNet18", ""])
def test_unknown_name_lists_valid_names(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        build_model(bad)
    assert str(info.value) == (
        f"unknown model {bad!r}; choose one of: resnet18, resnet34, resnet50, resnet101, resnet152"
    )


@pytest.mark.parametrize("bad", [0, -1])
def test_num_classes_below_one_raises(bad: int) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", num_classes=bad)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18").reset_classifier(bad)


@torch.no_grad()
def test_reset_classifier_changes_output_dim() -> None:
    model = build_model("resnet18", num_classes=10).eval()
    old_fc = model.fc
    model.reset_classifier(7)
    assert model.fc is not old_fc
    assert model.num_classes == 7
    assert model.fc.in_features == model.feature_dim == 512
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_count_parameters_trainable_only() -> None:
    model = build_model("resnet18", num_classes=10)
    total = count_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    assert count_parameters(model, trainable_only=True) == 512 * 10 + 10
    assert count_parameters(model) == total


# Values of a seeded build by the project's own ResNet before the model moved onto torchvision's (commit 77289ae):
# seeded runs, small-input ones included, start from the same weights as before.
_SEEDED_RESNET18_10_CLASSES = {
    "conv1.weight": [-0.05027889832854271, 0.08094241470098495],
    "layer1.0.conv1.weight": [-0.005109685007482767, 0.012853236868977547],
    "layer4.1.conv2.weight": [0.0036232727579772472, 0.009469520300626755],
    "fc.weight": [0.0010148012079298496, -0.03527168929576874],
    "fc.bias": [-0.015743063762784004, 0.002786307130008936],
}


def test_seeded_small_input_init_is_unchanged() -> None:
    torch.manual_seed(0)
    state = build_model("resnet18", num_classes=10, small_input=True).state_dict()
    for key, first_two in _SEEDED_RESNET18_10_CLASSES.items():
        assert state[key].flatten()[:2].tolist() == pytest.approx(first_two, rel=1e-6), key


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_small_input_checkpoint_keys_are_torchvisions(name: str) -> None:
    # Checkpoints of either stem hold torchvision's keys; only conv1's shape differs with small_input.
    ours = build_model(name, num_classes=10, small_input=True).state_dict()
    theirs = _torchvision_model(name).state_dict()
    assert list(ours) == list(theirs)
    assert {k for k in ours if ours[k].shape != theirs[k].shape} == {"conv1.weight", "fc.weight", "fc.bias"}
    assert ours["conv1.weight"].shape == (64, 3, 3, 3)


# ---------------------------------------------------------------------------------------------- BlurPool


def _blurred_convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and hasattr(m, "blur_kernel")]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_blurpool_blurs_the_strided_convs_and_keeps_torchvisions_weights(name: str) -> None:
    torch.manual_seed(0)
    plain = build_model(name, num_classes=10).state_dict()
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, blurpool=True)
    # the first conv and the downsample of layer2-4's first block; not the 3-channel stem, nor layer1
    assert _blurred_convs(model) == [f"layer{i}.0.{c}" for i in (2, 3, 4)
                                     for c in (("conv2" if name in ("resnet50", "resnet101", "resnet152")
                                                else "conv1"), "downsample.0")]
    state = model.state_dict()
    assert list(state) == list(plain) and all(torch.equal(state[k], plain[k]) for k in plain)
    # a torchvision state_dict loads strictly into a BlurPool model
    build_model("resnet18", blurpool=True).load_state_dict(_torchvision_model("resnet18").state_dict(), strict=True)


def test_blurpool_removes_what_the_stride_would_alias() -> None:
    # A checkerboard is the highest frequency a stride-2 sampling aliases; the [1, 2, 1]^2 / 16 filter maps it to 0
    # away from the zero-padded border, and a constant map to itself, so the strided conv then sees only the mean.
    model = build_model("resnet18", num_classes=10, blurpool=True).eval()
    conv = model.layer2[0].conv1  # 64 -> 128 channels, stride 2
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((yy + xx) % 2 * 2 - 1).float().expand(1, 64, 16, 16)  # (1, 64, 16, 16) of +-1
    plain_conv = nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)
    plain_conv.load_state_dict(conv.state_dict())
    with torch.no_grad():
        blurred, unblurred = conv(board + 3.0), plain_conv(board + 3.0)
        constant = plain_conv(torch.full((1, 64, 16, 16), 3.0))
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(blurred[inner], constant[inner], rtol=0, atol=1e-4)
    assert (unblurred[inner] - constant[inner]).abs().max() > 0.1  # without the blur the pattern gets through


def test_blurpool_twice_raises_and_survives_deepcopy_and_channels_last() -> None:
    import copy

    model = build_model("resnet18", num_classes=10, blurpool=True).eval()
    with pytest.raises(ValueError, match="BlurPool already"):
        apply_blurpool(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(copy.deepcopy(model)(x), ref)  # EMA copies the model this way
        fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
