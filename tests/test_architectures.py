"""The built-in architectures: shapes, registry metadata, feature reading, small-input stems."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddbench.contracts import ArchitectureSpec
from ddbench.default_plugins import architectures
from ddbench.models.convnet import ConvNet
from ddbench.models.features import read_features, read_layers


def _registered() -> list[ArchitectureSpec]:
    specs: list[ArchitectureSpec] = []
    architectures.register_architectures(register=specs.append)
    return specs


SPECS = _registered()
SHAPES = [(1, 10, 16), (3, 7, 32)]  # (channels, num_classes, image_size)
CASES = [pytest.param(spec, shape, id=f"{spec.name}-{shape[0]}ch-{shape[2]}px") for spec in SPECS for shape in SHAPES]


def _convnet_depth(spec: ArchitectureSpec) -> int | None:
    if not spec.name.startswith("convnet"):
        return None
    return int(spec.name.removeprefix("convnet").removesuffix("-w64").removesuffix("-bn"))


def _convnet_width(spec: ArchitectureSpec) -> int:
    return 64 if spec.name.endswith("-w64") else 128


def _expected_features(spec: ArchitectureSpec, image_size: int) -> tuple[int, int]:
    """(channels, side) of the default feature layer's output."""
    depth = _convnet_depth(spec)
    if depth is not None:
        return _convnet_width(spec), image_size // 2 ** depth  # the last block's output, after its pooling
    if spec.name == "resnet18":
        return 512, image_size // 8  # small stem: only layer2..layer4 downsample
    if spec.name == "mobilenetv2":
        return 1280, image_size // 8  # small variant: strides 1, 1, 2, 2, 2
    raise AssertionError(f"no expectation for {spec.name}")


def test_registry_names() -> None:
    names = [spec.name for spec in SPECS]
    expected = [f"convnet{d}{norm}{width}" for width in ("", "-w64") for norm in ("", "-bn") for d in range(1, 7)]
    assert names == expected + ["resnet18", "mobilenetv2"]
    for spec in SPECS:
        assert spec.description and "\n" not in spec.description
        assert ("BatchNorm" if spec.has_batchnorm else "instance norm") in spec.description
        # shallow to deep, then the logits; the default is the last convolutional block
        assert spec.feature_layers[-1] in ("classifier", "fc")
        assert spec.default_feature_layer == spec.feature_layers[-2]


@pytest.mark.parametrize(("spec", "shape"), CASES)
def test_architecture(spec: ArchitectureSpec, shape: tuple[int, int, int]) -> None:
    channels, num_classes, image_size = shape
    depth = _convnet_depth(spec)
    if depth is not None and image_size // 2**depth < 1:
        pytest.skip(f"ConvNet-{depth} cannot take {image_size} px")
    torch.manual_seed(0)
    model = spec.build(channels, num_classes, image_size)
    x = torch.randn(2, channels, image_size, image_size)

    assert model(x).shape == (2, num_classes)
    assert spec.has_batchnorm == any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    names = dict(model.named_modules())
    for layer in (*spec.feature_layers, spec.default_feature_layer):
        assert layer in names, layer

    x.requires_grad_(True)
    feats = read_features(model, spec.default_feature_layer, x)
    want_channels, want_side = _expected_features(spec, image_size)
    assert feats.shape == (2, want_channels, want_side, want_side)
    feats.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_convnet_too_deep() -> None:
    with pytest.raises(ValueError, match=r"16 px.*maximum depth for 16 px is 4"):
        ConvNet(1, 10, 16, depth=5)
    spec = next(s for s in SPECS if s.name == "convnet6-bn")
    with pytest.raises(ValueError, match="ConvNet-6"):
        spec.build(3, 10, 32)


def test_convnet_module_names() -> None:
    model = ConvNet(3, 10, 32, depth=3, norm="instance")
    names = dict(model.named_modules())
    for i in (1, 2, 3):
        block = names[f"features.block{i}"]
        assert [n for n, _ in block.named_children()] == ["conv", "norm", "relu", "pool"]
        assert isinstance(block.norm, nn.GroupNorm) and block.norm.num_groups == 128
    assert isinstance(names["classifier"], nn.Linear) and names["classifier"].in_features == 128 * 4 * 4
    assert isinstance(ConvNet(3, 10, 32, depth=3, norm="batch").features.block1.norm, nn.BatchNorm2d)


def test_resnet_stems() -> None:
    from ddbench.models.resnet import resnet18

    small = resnet18(1, 10, 32)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and small.conv1.padding == (1, 1)
    assert small.conv1.in_channels == 1
    assert isinstance(small.maxpool, nn.Identity)

    large = resnet18(1, 10, 128)
    assert large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    assert large.conv1.in_channels == 1
    assert isinstance(large.maxpool, nn.MaxPool2d)
    torch.manual_seed(0)
    x = torch.randn(2, 1, 128, 128)
    assert read_features(large, "layer4", x).shape == (2, 512, 4, 4)


def test_mobilenet_strides() -> None:
    from ddbench.models.mobilenet import mobilenet_v2

    small = mobilenet_v2(1, 10, 32)
    assert small.features[0][0].stride == (1, 1) and small.features[0][0].in_channels == 1
    assert small.features[2].conv[1][0].stride == (1, 1)

    large = mobilenet_v2(3, 10, 128)
    assert large.features[0][0].stride == (2, 2)
    assert large.features[2].conv[1][0].stride == (2, 2)


def test_read_features_matches_full_forward() -> None:
    torch.manual_seed(0)
    model = ConvNet(3, 10, 16, depth=3).eval()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    early = read_features(model, "features.block2", x)
    full = read_features(model, "features.block2", x, stop_early=False)
    assert torch.equal(early, full)
    (grad_early,) = torch.autograd.grad(early.sum(), x)
    (grad_full,) = torch.autograd.grad(full.sum(), x)
    assert torch.allclose(grad_early, grad_full) and grad_early.abs().sum() > 0
    assert not model.features.block2._forward_hooks  # no hook left behind


def test_read_features_stops_early() -> None:
    model = ConvNet(3, 10, 16, depth=3)
    ran: list[str] = []
    model.features.block3.register_forward_hook(lambda *args: ran.append("block3"))
    read_features(model, "features.block1", torch.randn(1, 3, 16, 16))
    assert ran == []
    read_features(model, "features.block1", torch.randn(1, 3, 16, 16), stop_early=False)
    assert ran == ["block3"]


def test_read_features_unknown_layer() -> None:
    model = ConvNet(3, 10, 16, depth=2)
    with pytest.raises(ValueError, match=r"no layer named 'features\.block9'.*features\.block2"):
        read_features(model, "features.block9", torch.randn(1, 3, 16, 16))
    assert all(not m._forward_hooks for m in model.modules())


def test_read_features_removes_hook_on_error() -> None:
    model = ConvNet(3, 10, 16, depth=2)
    with pytest.raises(RuntimeError):
        read_features(model, "features.block2", torch.randn(1, 5, 16, 16))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


def test_read_layers_is_one_forward_with_each_layers_output() -> None:
    torch.manual_seed(0)
    model = ConvNet(3, 10, 16, depth=3).eval()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    ran: list[str] = []
    for name in ("block1", "block2", "block3"):
        getattr(model.features, name).conv.register_forward_hook(lambda *args, name=name: ran.append(name))
    shallow, deep = read_layers(model, ["features.block1.relu", "features.block2.relu"], x)
    assert ran == ["block1", "block2"]  # one pass, stopped after the last layer asked for
    assert torch.equal(shallow, read_features(model, "features.block1.relu", x))
    assert torch.equal(deep, read_features(model, "features.block2.relu", x))
    # the order asked for, not the forward's; both differentiable
    first, second = read_layers(model, ["features.block2.relu", "features.block1.relu"], x)
    assert torch.equal(first, deep) and torch.equal(second, shallow)
    (grad,) = torch.autograd.grad(first.sum() + second.sum(), x)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"no layer named 'features\.block9'.*features\.block2"):
        read_layers(model, ["features.block1.relu", "features.block9"], x)
    assert not model.features.block1.relu._forward_hooks and not model.features.block2.relu._forward_hooks
