"""MobileNet-V2 from torchvision, with the CIFAR-style variant for small inputs.

For inputs of at most :data:`SMALL_INPUT_MAX` pixels the first convolution
(``features.0``) has stride 1 and the first block of the second stage (``features.2``)
has a stride-1 depthwise convolution, so a 32 px input reaches the last block at
4 x 4 rather than 1 x 1. The first convolution always takes ``channels`` inputs.
"""

from __future__ import annotations

import torchvision
from torch import nn

SMALL_INPUT_MAX = 64


def mobilenet_v2(channels: int, num_classes: int, image_size: int) -> nn.Module:
    """A randomly initialised MobileNet-V2 (BatchNorm) for ``image_size`` px inputs."""
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    small = image_size <= SMALL_INPUT_MAX
    first = model.features[0][0]
    if small or channels != first.in_channels:
        stride = 1 if small else 2
        conv = nn.Conv2d(channels, first.out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")  # torchvision's own init
        model.features[0][0] = conv
    if small:
        block = model.features[2]
        depthwise = block.conv[1][0]
        depthwise.stride = (1, 1)
        block.stride = 1  # keep the block's bookkeeping consistent; it has no residual (16 -> 24)
    return model
