"""ConvNet-D, the standard dataset-distillation network of DC, DSA and MTT.

D blocks of ``conv 3x3 (width, pad 1) -> norm -> ReLU -> AvgPool 2x2``, then
``flatten -> linear``. ``norm="instance"`` is instance norm written as
``GroupNorm(width, width, affine=True)`` (the classic ``convnet``); ``norm="batch"``
uses ``BatchNorm2d`` (the ``-bn`` variant).

Module names are stable: ``features.block1`` ... ``features.blockD`` (each a
``Sequential`` of ``conv``, ``norm``, ``relu``, ``pool``) and ``classifier``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

NORMS = ("instance", "batch")


def max_depth(image_size: int) -> int:
    """The deepest ConvNet whose final feature map is still at least 1 pixel."""
    depth = 0
    while image_size // 2 ** (depth + 1) >= 1:
        depth += 1
    return depth


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "instance":
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(width)
    raise ValueError(f"unknown ConvNet norm {kind!r}; expected one of {NORMS}")


class ConvNet(nn.Module):
    """ConvNet-``depth`` for ``channels`` x ``image_size`` x ``image_size`` inputs."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        depth: int,
        norm: str = "instance",
        width: int = 128,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"ConvNet depth must be at least 1, got {depth}")
        if norm not in NORMS:
            raise ValueError(f"unknown ConvNet norm {norm!r}; expected one of {NORMS}")
        final_size = image_size // 2**depth
        if final_size < 1:
            raise ValueError(
                f"ConvNet-{depth} cannot take {image_size} px images: {depth} 2x2 poolings "
                f"shrink them below 1 pixel; the maximum depth for {image_size} px is "
                f"{max_depth(image_size)}"
            )
        self.depth = depth
        self.norm = norm
        self.width = width
        self.final_size = final_size

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = channels
        for index in range(1, depth + 1):
            blocks[f"block{index}"] = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                    norm=_norm(norm, width),
                    relu=nn.ReLU(),
                    pool=nn.AvgPool2d(kernel_size=2, stride=2),
                )
            )
            in_channels = width
        self.features = nn.Sequential(blocks)
        self.classifier = nn.Linear(width * final_size * final_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
