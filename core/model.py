"""ResNet-18/34/50/101/152 classifiers built on ``torchvision.models.resnet``, with a small-input stem, optional
BlurPool and a name-based factory."""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "MODEL_REGISTRY",
    "apply_blurpool",
    "available_models",
    "build_model",
    "count_parameters",
]

Block = Union[type[BasicBlock], type[Bottleneck]]


# --------------------------------------------------------------------------- helpers

# The 3x3 binomial low-pass filter [1, 2, 1] x [1, 2, 1] / 16 ("Tri-3" of Zhang 2019, the one FFCV's ImageNet
# example uses). Only strided convolutions with at least this many input channels are blurred: the RGB stem is not.
_BLUR_KERNEL = (1.0, 2.0, 1.0)
BLURPOOL_MIN_CHANNELS = 16


def _blur_input(conv: nn.Conv2d, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Forward pre-hook of a blurred conv: (N, C, H, W) -> the same shape, each channel low-passed (zero padding)."""
    (x,) = args
    kernel = conv.blur_kernel.to(dtype=x.dtype)
    return (F.conv2d(x, kernel, padding=1, groups=conv.in_channels),)


def apply_blurpool(model: nn.Module) -> int:
    """Blur the input of every strided convolution that has >= 16 input channels, in place (BlurPool: Zhang 2019,
    "Making Convolutional Networks Shift-Invariant Again", ICML; as FFCV's ImageNet example applies it, with
    ``blurpool: 1`` in all of its ResNet configs).

    Each such conv keeps its stride and its weights; a forward pre-hook first convolves its input, channel by
    channel, with the 3x3 binomial filter [1, 2, 1] x [1, 2, 1] / 16 (stride 1, zero padding 1), so the stride-2
    sampling that follows sees a low-passed map. In a ResNet these are the first conv and the 1x1 downsample conv of
    layer2-4's first block; the stem (3 input channels) is left alone. The filter is a non-persistent buffer: the
    state_dict keys and values are unchanged, so torchvision weights load and a BlurPool model's weights load into
    a plain one (whose logits then differ: rebuild it with BlurPool to evaluate it). Costs one depthwise 3x3
    convolution per blurred conv (measured in ``experiments/imagenette_speedrun/RESULTS.md``).

    Returns:
        the number of convolutions blurred (6 for every torchvision ResNet).

    Raises:
        ValueError: ``model`` has BlurPool already (a second pass would blur twice).
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and max(m.stride) > 1
             and m.in_channels >= BLURPOOL_MIN_CHANNELS]
    if any(hasattr(m, "blur_kernel") for m in convs):
        raise ValueError("this model has BlurPool already; apply_blurpool must run once per model")
    k = torch.tensor(_BLUR_KERNEL)
    kernel = (k[:, None] * k[None, :]) / (k.sum() ** 2)  # (3, 3), sums to 1
    for conv in convs:
        w = conv.weight
        conv.register_buffer("blur_kernel", kernel.to(w.device, w.dtype).expand(conv.in_channels, 1, 3, 3).clone(),
                             persistent=False)  # (C, 1, 3, 3): one filter per channel (groups = C)
        conv.register_forward_pre_hook(_blur_input)
    return len(convs)


# --------------------------------------------------------------------------- network


class ResNet(TorchvisionResNet):
    """torchvision's ResNet (He et al. 2016, "Deep Residual Learning") with an optional small-input stem.

    Input (N, 3, H, W) float images, normalised; output (N, num_classes) logits (no softmax,
    no loss). With the ImageNet stem the spatial size shrinks 32x by layer4 (224 px -> 7);
    with ``small_input=True`` it shrinks 8x (64 px -> 8, 32 px -> 4).

    The blocks, the layers, ``forward`` and the initialisation are torchvision's, so the
    state_dict keys, the parameter counts and the logits equal ``torchvision.models.<name>``
    and a torchvision-format state_dict loads with ``strict=True`` -- except into a
    ``small_input=True`` model, whose conv1 weight is (64, 3, 3, 3) instead of (64, 3, 7, 7)
    and therefore raises a size-mismatch RuntimeError on load; drop or re-initialise
    ``conv1.weight`` in that case.

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50/101/152), torchvision's.
        layers: number of blocks in layer1..layer4, e.g. [3, 4, 6, 3] for ResNet-50.
        num_classes: size of the classifier output; must be >= 1.
        small_input: swap the 7x7 stride-2 conv + 3x3 max-pool stem for a 3x3 stride-1 conv
            and no pool, for images of 64 px or less (Tiny ImageNet, CIFAR): the ImageNet
            stem would reduce a 64-px image to 2x2 at layer4.
        zero_init_residual: zero the gamma of the last BatchNorm in each block so every
            residual branch starts as zero and each block as the identity; this eases
            large-batch training (Goyal et al. 2017, "Accurate, Large Minibatch SGD", Sec. 5.1).

    Raises:
        ValueError: if ``num_classes < 1`` or ``layers`` does not have 4 positive entries.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        small_input: bool = False,
        zero_init_residual: bool = True,
    ) -> None:
        _check_num_classes(num_classes)
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")
        rng_before = torch.get_rng_state()
        super().__init__(block, list(layers), num_classes=num_classes, zero_init_residual=zero_init_residual)
        self.num_classes = num_classes
        self.small_input = small_input
        if small_input:
            # A 64-px image keeps 64x64 resolution into layer1 and ends at 8x8 in layer4.
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
            self._reinit_like_construction(rng_before)

    def _reinit_like_construction(self, rng_before: Tensor) -> None:
        """Re-draw every weight from ``rng_before`` as if the 3x3 stem had been built in place of the 7x7 one.

        Keeps a seeded small-input model bitwise equal to the one this project built before it used
        torchvision: each default init draws as many numbers as its tensor has elements, so replaying
        the default inits (conv1 now 3x3), then fc's, then torchvision's conv init gives the same values.
        The BatchNorm weights (1, or 0 under ``zero_init_residual``) draw nothing and are left as they are.
        """
        torch.set_rng_state(rng_before)
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        for conv in convs:  # the draws of the constructors; their values are overwritten below
            conv.reset_parameters()
        self.fc.reset_parameters()
        for conv in convs:  # torchvision's init: He et al. 2015, fan_out
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    @property
    def feature_dim(self) -> int:
        """Channels of the pooled feature vector fed to ``fc``: 512 (Basic) or 2048 (Bottleneck)."""
        return self.fc.in_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a freshly initialised Linear(feature_dim, num_classes).

        The new layer is created on the old one's device and dtype, with torchvision's default
        Linear init. Used for staged training and head re-initialisation (timm's API name).

        Raises:
            ValueError: if ``num_classes < 1``.
        """
        _check_num_classes(num_classes)
        old = self.fc
        self.fc = nn.Linear(
            self.feature_dim, num_classes, device=old.weight.device, dtype=old.weight.dtype
        )
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) images -> (N, feature_dim, H/32, W/32) layer4 maps (H/8 with small_input)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _check_num_classes(num_classes: int) -> None:
    """Raise ValueError unless ``num_classes`` is an int >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")


# --------------------------------------------------------------------------- factory


def _make_factory(block: Block, layers: list[int], name: str) -> Callable[..., ResNet]:
    """Return a constructor ``(num_classes, small_input, zero_init_residual) -> ResNet``."""

    def factory(
        num_classes: int = 1000, small_input: bool = False, zero_init_residual: bool = True
    ) -> ResNet:
        return ResNet(block, list(layers), num_classes, small_input, zero_init_residual)

    factory.__name__ = name
    factory.__qualname__ = name
    factory.__doc__ = (
        f"{name}: {block.__name__} x {layers} (He et al. 2016, 'Deep Residual Learning', Table 1)."
    )
    return factory


# Block counts per stage from He et al. 2016, Table 1 (the same as torchvision.models.resnet18..152).
MODEL_REGISTRY: dict[str, Callable[..., ResNet]] = {
    "resnet18": _make_factory(BasicBlock, [2, 2, 2, 2], "resnet18"),
    "resnet34": _make_factory(BasicBlock, [3, 4, 6, 3], "resnet34"),
    "resnet50": _make_factory(Bottleneck, [3, 4, 6, 3], "resnet50"),
    "resnet101": _make_factory(Bottleneck, [3, 4, 23, 3], "resnet101"),
    "resnet152": _make_factory(Bottleneck, [3, 8, 36, 3], "resnet152"),
}


def available_models() -> list[str]:
    """Names accepted by ``build_model``, shallowest first."""
    return list(MODEL_REGISTRY)


def build_model(
    name: str,
    num_classes: int = 1000,
    small_input: bool = False,
    zero_init_residual: bool = True,
    blurpool: bool = False,
) -> ResNet:
    """Build a randomly initialised ResNet by name (He et al. 2016, "Deep Residual Learning").

    Args:
        name: one of ``available_models()`` (resnet18/34/50/101/152).
        num_classes: classifier outputs; the model maps (N, 3, H, W) -> (N, num_classes) logits.
        small_input: 3x3 stride-1 stem without max-pool, for images of 64 px or less (see ``ResNet``).
        zero_init_residual: zero each block's last BN gamma (Goyal et al. 2017).
        blurpool: low-pass the input of the strided convolutions (:func:`apply_blurpool`; Zhang 2019, FFCV).
            The weights are drawn as without it and the state_dict keys are the same.

    Returns:
        A ``ResNet`` (a ``torchvision.models.ResNet``) whose state_dict keys match ``torchvision.models.<name>``.

    Raises:
        ValueError: if ``name`` is not registered (the message lists valid names) or
            ``num_classes < 1``.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}")
    model = MODEL_REGISTRY[name](
        num_classes=num_classes, small_input=small_input, zero_init_residual=zero_init_residual
    )
    if blurpool:
        apply_blurpool(model)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (all of them, or only those requiring grad).

    BatchNorm running statistics are buffers, not parameters, and are not counted -- the same
    convention as torchvision's published counts (ResNet-50: 25,557,032).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
