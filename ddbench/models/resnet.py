"""ResNet-18 from torchvision, with the small-input stem of SRe2L and RDED.

For inputs of at most :data:`SMALL_INPUT_MAX` pixels, ``conv1`` becomes a 3x3 stride-1
convolution (padding 1) and the max-pool is removed, as in SRe2L, RDED and DD-Ranking.
Larger inputs keep the ImageNet stem (7x7 stride 2 and max-pool). ``conv1`` always takes
``channels`` inputs (1 for grayscale).
"""

from __future__ import annotations

import torchvision
from torch import nn

SMALL_INPUT_MAX = 64


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    # The same initialisation torchvision gives its own convolutions.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def resnet18(channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A randomly initialised ResNet-18 (BatchNorm) for ``image_size`` px inputs."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if image_size <= SMALL_INPUT_MAX:
        model.conv1 = _kaiming(nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False))
        model.maxpool = nn.Identity()
    elif channels != model.conv1.in_channels:
        model.conv1 = _kaiming(nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False))
    return model
