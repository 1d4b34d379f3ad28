"""The built-in architectures, registered through the ``register_architectures`` hook.

- ``convnet1`` .. ``convnet6``: ConvNet-D with instance norm (DC/DSA/MTT).
- ``convnet1-bn`` .. ``convnet6-bn``: the same with BatchNorm.
- ``convnet1-w64`` .. ``convnet6-bn-w64``: the same at width 64 instead of 128 (DC's ``ConvNetW64``);
  the embedded digits' default observer is ``convnet3-bn-w64``.
- ``resnet18``: torchvision ResNet-18, small-input stem at <= 64 px (SRe2L/RDED).
- ``mobilenetv2``: torchvision MobileNet-V2, CIFAR-style strides at <= 64 px.

Model modules (and torch) are imported inside the build functions so that importing
this plugin, as ``ddbench --help`` does, stays fast.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable

from ddbench.contracts import ArchitectureSpec
from ddbench.host.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

CONVNET_DEPTHS = range(1, 7)
CONVNET_WIDTH = 128
CONVNET_NARROW_WIDTH = 64  # DC's width ablation (ConvNetW64): 4x fewer multiply-adds per layer
MOBILENET_FEATURE_LAYERS = ("features.3", "features.6", "features.10", "features.13", "features.17", "features.18", "classifier")


def build_convnet(channels: int, num_classes: int, image_size: int, *, depth: int, norm: str,
                  width: int = CONVNET_WIDTH) -> "nn.Module":
    from ddbench.models.convnet import ConvNet

    return ConvNet(channels, num_classes, image_size, depth=depth, norm=norm, width=width)


def build_resnet18(channels: int, num_classes: int, image_size: int) -> "nn.Module":
    from ddbench.models.resnet import resnet18

    return resnet18(channels, num_classes, image_size)


def build_mobilenetv2(channels: int, num_classes: int, image_size: int) -> "nn.Module":
    from ddbench.models.mobilenet import mobilenet_v2

    return mobilenet_v2(channels, num_classes, image_size)


def convnet_spec(depth: int, norm: str, width: int = CONVNET_WIDTH) -> ArchitectureSpec:
    # Each block's activation before its pooling, shallow to deep; the last block's output after
    # its pooling, the network's embedding (what the classifier reads: DC/DM's ``embed``, the
    # layer the authors' successor code LINs-lab/CIM aligns), the default; then the logits.
    blocks = tuple(f"features.block{i}.relu" for i in range(1, depth + 1))
    embedding = f"features.block{depth}.pool"
    if norm == "instance":
        name, norm_text = f"convnet{depth}", f"instance norm (GroupNorm {width})"
    else:
        name, norm_text = f"convnet{depth}-bn", "BatchNorm"
    if width != CONVNET_WIDTH:
        name += f"-w{width}"
    return ArchitectureSpec(
        name=name,
        build=partial(build_convnet, depth=depth, norm=norm, width=width),
        description=f"ConvNet-{depth}, width {width}, {norm_text}, DC/DSA/MTT",
        has_batchnorm=norm == "batch",
        feature_layers=(*blocks, embedding, "classifier"),
        default_feature_layer=embedding,
    )


def all_specs() -> list[ArchitectureSpec]:
    """Every built-in architecture, in listing order."""
    specs = [convnet_spec(depth, "instance") for depth in CONVNET_DEPTHS]
    specs += [convnet_spec(depth, "batch") for depth in CONVNET_DEPTHS]
    specs += [convnet_spec(depth, norm, CONVNET_NARROW_WIDTH) for norm in ("instance", "batch") for depth in CONVNET_DEPTHS]
    specs.append(
        ArchitectureSpec(
            name="resnet18",
            build=build_resnet18,
            description="ResNet-18 (torchvision), BatchNorm, 3x3 stride-1 stem without max-pool at <= 64 px (SRe2L/RDED)",
            has_batchnorm=True,
            feature_layers=("layer1", "layer2", "layer3", "layer4", "fc"),
            default_feature_layer="layer4",
        )
    )
    specs.append(
        ArchitectureSpec(
            name="mobilenetv2",
            build=build_mobilenetv2,
            description="MobileNet-V2 (torchvision), BatchNorm, CIFAR-style stride-1 stem and stage 2 at <= 64 px",
            has_batchnorm=True,
            feature_layers=MOBILENET_FEATURE_LAYERS,
            default_feature_layer="features.18",
        )
    )
    return specs


@hookimpl
def register_architectures(register: Callable[[ArchitectureSpec], None]) -> None:
    for spec in all_specs():
        register(spec)
