"""ResNet-18/34/50/101/152 classifiers with torchvision-compatible parameter names, and a name-based factory."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

__all__ = [
    "conv3x3",
    "conv1x1",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "MODEL_REGISTRY",
    "available_models",
    "build_model",
    "count_parameters",
]


# --------------------------------------------------------------------------- helpers


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias.

    Maps (N, in_planes, H, W) -> (N, out_planes, ceil(H / stride), ceil(W / stride)).
    No bias because every conv in a ResNet is followed by BatchNorm, whose shift makes
    a conv bias redundant (He et al. 2016; torchvision ``resnet.py``).
    """
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias, used for channel projection and shortcut downsampling.

    Maps (N, in_planes, H, W) -> (N, out_planes, ceil(H / stride), ceil(W / stride)).
    Source: the projection shortcut ("option B") of He et al. 2016, as in torchvision.
    """
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


# --------------------------------------------------------------------------- blocks


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; used by ResNet-18/34.

    Maps (N, inplanes, H, W) -> (N, planes, H / stride, W / stride); ``expansion`` is 1.
    Source: He et al. 2016, "Deep Residual Learning for Image Recognition", Fig. 2 / Table 1.
    Submodule names (conv1, bn1, relu, conv2, bn2, downsample) match torchvision.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first 3x3 conv (2 at the start of layer2..layer4).
        downsample: shortcut projection (conv1x1 + BatchNorm) when shape changes, else None.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm before the residual addition (the one ``zero_init_residual`` zeroes)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """(N, inplanes, H, W) -> (N, planes, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand block with a shortcut; used by ResNet-50/101/152.

    Maps (N, inplanes, H, W) -> (N, planes * 4, H / stride, W / stride); ``expansion`` is 4.
    Source: He et al. 2016, "Deep Residual Learning for Image Recognition", Fig. 5. The stride
    sits on the 3x3 conv rather than the first 1x1 ("ResNet v1.5", as in torchvision and
    NVIDIA's reference): a strided 1x1 conv would discard 3/4 of its input positions, and
    moving the stride gains about 0.5% top-1 on ImageNet.
    Submodule names (conv1..conv3, bn1..bn3, relu, downsample) match torchvision.

    Args:
        inplanes: input channels.
        planes: width of the inner 3x3 conv; the block outputs ``planes * 4`` channels.
        stride: stride of the 3x3 conv (2 at the start of layer2..layer4).
        downsample: shortcut projection (conv1x1 + BatchNorm) when shape changes, else None.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm before the residual addition (the one ``zero_init_residual`` zeroes)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """(N, inplanes, H, W) -> (N, planes * 4, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[type[BasicBlock], type[Bottleneck]]


# --------------------------------------------------------------------------- network


class ResNet(nn.Module):
    """ResNet image classifier returning logits (He et al. 2016, "Deep Residual Learning").

    Input (N, 3, H, W) float images, normalised; output (N, num_classes) logits (no softmax,
    no loss). With the ImageNet stem the spatial size shrinks 32x by layer4 (224 px -> 7);
    with ``small_input=True`` it shrinks 8x (64 px -> 8, 32 px -> 4).

    Module and parameter names equal torchvision's ``resnet.py`` (conv1, bn1, relu, maxpool,
    layer1..layer4, avgpool, fc; in blocks conv1/bn1/.../downsample.0/downsample.1), so a
    torchvision-format state_dict loads with ``strict=True`` -- except into a
    ``small_input=True`` model, whose conv1 weight is (64, 3, 3, 3) instead of (64, 3, 7, 7)
    and therefore raises a size-mismatch RuntimeError on load; drop or re-initialise
    ``conv1.weight`` in that case.

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50/101/152).
        layers: number of blocks in layer1..layer4, e.g. [3, 4, 6, 3] for ResNet-50.
        num_classes: size of the classifier output; must be >= 1.
        small_input: replace the 7x7 stride-2 conv + 3x3 max-pool stem with a 3x3 stride-1
            conv and no pool, for images of 64 px or less (Tiny ImageNet, CIFAR): the
            ImageNet stem would reduce a 64-px image to 2x2 at layer4.
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
        super().__init__()
        _check_num_classes(num_classes)
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")

        self.num_classes = num_classes
        self.small_input = small_input
        self.inplanes = 64

        if small_input:
            # A 64-px image keeps 64x64 resolution into layer1 and ends at 8x8 in layer4.
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)

        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 ("Delving Deep into Rectifiers"): fan_out keeps the backward
                # signal's variance constant through ReLU layers; torchvision uses the same.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.constant_(m.last_bn().weight, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """Stack ``blocks`` blocks; only the first one strides and (if needed) projects the shortcut."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

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

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalised images -> (N, num_classes) logits."""
        x = self.avgpool(self.forward_features(x))  # (N, feature_dim, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, num_classes)


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


# Block counts per stage from He et al. 2016, Table 1.
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
) -> ResNet:
    """Build a randomly initialised ResNet by name (He et al. 2016, "Deep Residual Learning").

    Args:
        name: one of ``available_models()`` (resnet18/34/50/101/152).
        num_classes: classifier outputs; the model maps (N, 3, H, W) -> (N, num_classes) logits.
        small_input: 3x3 stride-1 stem without max-pool, for images of 64 px or less (see ``ResNet``).
        zero_init_residual: zero each block's last BN gamma (Goyal et al. 2017).

    Returns:
        A ``ResNet`` whose state_dict keys match ``torchvision.models.<name>``.

    Raises:
        ValueError: if ``name`` is not registered (the message lists valid names) or
            ``num_classes < 1``.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}")
    return MODEL_REGISTRY[name](
        num_classes=num_classes, small_input=small_input, zero_init_residual=zero_init_residual
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (all of them, or only those requiring grad).

    BatchNorm running statistics are buffers, not parameters, and are not counted -- the same
    convention as torchvision's published counts (ResNet-50: 25,557,032).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
