"""The baseline plugins (``baselines.squeeze``, ``baselines.sre2l``): found through the
entry points, squeeze tiles exactly the images it reports, SRe2L's recover lowers the
BatchNorm-statistics loss and returns valid images, and a BN-free observer is refused early."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.squeeze import SqueezeDistiller, SqueezeOptions
from baselines.sre2l import SRe2LDistiller, SRe2LOptions
from baselines.sre2l_config import SRE2L_DEFAULTS, dataset_family
from ddbench.host import registry
from ddbench.contracts import DataOptions, DistillTask, Normalization
from ddbench.data.base import Dataset, TensorSource
from ddbench.tiles import cut_tiles

CPU = torch.device("cpu")


def pattern_dataset(num_classes: int = 3, per_class: int = 20, size: int = 8) -> Dataset:
    """Every training image a distinct random pattern in [0, 1] (classes interleaved)."""
    generator = torch.Generator().manual_seed(123)
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))

    def split(count: int) -> TensorSource:
        labels = torch.arange(num_classes).repeat(count)
        return TensorSource(torch.rand(len(labels), 3, size, size, generator=generator), labels, norm, size)

    return Dataset("patterns", split(per_class), split(2), tuple(f"c{i}" for i in range(num_classes)), 3, size, norm)


def squeeze_task(dataset: Dataset, ipc: int = 2, n: int = 4, seed: int = 0) -> DistillTask:
    arch = registry.get_architecture("convnet1")
    return DistillTask(dataset, nn.Identity(), arch, ipc=ipc, device=CPU, seed=seed, options=SqueezeOptions(n=n))


def test_plugins_found_through_entry_points() -> None:
    found = registry.registered("distillers")
    for name, module in (("sre2l", "baselines.sre2l"), ("squeeze", "baselines.squeeze")):
        assert name in found, f"{name} not registered; run pip install -e . so the entry points exist"
        assert found[name].plugin.name == name
        assert found[name].plugin.origin != "builtin"
        assert type(found[name].item).__module__ == module


def test_squeeze_tiles_exactly_the_reported_images() -> None:
    dataset = pattern_dataset()
    distilled = SqueezeDistiller().distill(squeeze_task(dataset, ipc=2, n=4))
    assert distilled.tile_grid == 2 and distilled.soft_labels == "observer"
    assert distilled.images.shape == (6, 3, 8, 8) and distilled.images.dtype == torch.float32
    assert distilled.images_per_class(3) == [2, 2, 2]
    assert distilled.labels.tolist() == [0, 0, 1, 1, 2, 2]
    tiles = cut_tiles(distilled.images, 2).view(6, 4, 3, 4, 4)
    sources = distilled.extras["source_indices"]
    used = []
    for image_index, label in enumerate(distilled.labels.tolist()):
        per_image = sources[str(label)][image_index % 2]
        assert len(per_image) == 4
        assert all(int(dataset.train.labels[i]) == label for i in per_image)
        used += per_image
        real = dataset.train.load(torch.tensor(per_image))
        expected = F.interpolate(real, size=(4, 4), mode="bilinear", align_corners=False, antialias=True)
        for k in range(4):  # row-major tile k holds source k
            torch.testing.assert_close(tiles[image_index, k], expected[k], atol=1e-5, rtol=0)
    assert len(set(used)) == len(used) == 24


def test_squeeze_seeding() -> None:
    dataset = pattern_dataset()
    first = SqueezeDistiller().distill(squeeze_task(dataset, seed=0))
    again = SqueezeDistiller().distill(squeeze_task(dataset, seed=0))
    other = SqueezeDistiller().distill(squeeze_task(dataset, seed=1))
    assert torch.equal(first.images, again.images)
    assert first.extras == again.extras
    assert first.extras != other.extras and not torch.equal(first.images, other.images)


@pytest.mark.parametrize(("n", "size", "match"), [(3, 8, "perfect square"), (25, 8, "under 2 px")])
def test_squeeze_refuses_bad_n(n: int, size: int, match: str) -> None:
    dataset = pattern_dataset(size=size)
    with pytest.raises(ValueError, match=match):
        SqueezeDistiller().distill(squeeze_task(dataset, n=n))


def test_squeeze_refuses_too_few_images() -> None:
    with pytest.raises(ValueError, match=r"class 0 .* only 20"):
        SqueezeDistiller().distill(squeeze_task(pattern_dataset(per_class=20), ipc=6, n=4))


@pytest.fixture(scope="module")
def digits8() -> Dataset:
    return registry.get_dataset("digits").load(DataOptions(image_size=8))


@pytest.fixture(scope="module")
def bn_observer(digits8: Dataset) -> nn.Module:
    """ConvNet-2-BN after a few SGD steps on digits (so BN running stats describe the data)."""
    torch.manual_seed(0)
    model = registry.get_architecture("convnet2-bn").build(1, 10, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(12):
        idx = torch.randint(len(digits8.train), (64,), generator=generator)
        loss = F.cross_entropy(model(digits8.train.load(idx)), digits8.train.labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    return model


def test_sre2l_recovers(digits8: Dataset, bn_observer: nn.Module) -> None:
    arch = registry.get_architecture("convnet2-bn")
    running = [m.running_mean.clone() for m in bn_observer.modules() if isinstance(m, nn.BatchNorm2d)]
    # r_bn = 1 (SRe2L's Tiny-ImageNet weight): at CIFAR's 0.01 the cross-entropy dominates the
    # first 30 steps and clipping the initial noise to digits' narrow pixel range raises the
    # first BN layer's term, so the fall only shows over hundreds of iterations.
    ipc, options = 2, SRe2LOptions(iterations=30, batch_size=12, r_bn=1.0)
    task = DistillTask(digits8, bn_observer, arch, ipc=ipc, device=CPU, seed=0, options=options)
    distiller = SRe2LDistiller()
    assert distiller.total_work(task) == 2 * 30  # 20 images in chunks of 12
    distilled = distiller.distill(task)

    trace = distilled.extras["loss_trace"]
    assert len(trace) == 2
    for chunk in trace:
        assert chunk["bn_loss_last"] < chunk["bn_loss_first"], chunk
        assert len(chunk["classes"]) > 1  # a chunk mixes classes
    config = distilled.extras["config"]
    assert config["family"] == "digits" and config["version"] == 1
    assert (config["iterations"], config["r_bn"], config["lr"], config["jitter"]) == (30, 1.0, 0.25, 4)

    assert distilled.images.shape == (ipc * 10, 1, 8, 8) and distilled.images.dtype == torch.float32
    assert distilled.images.device.type == "cpu" and not distilled.images.requires_grad
    assert torch.isfinite(distilled.images).all()
    assert distilled.labels.dtype == torch.int64
    assert distilled.labels.tolist() == torch.arange(10).repeat_interleave(ipc).tolist()
    low, high = digits8.normalization.pixel_bounds()
    assert distilled.images.min() >= low[0] - 1e-6 and distilled.images.max() <= high[0] + 1e-6
    assert distilled.soft_labels == "observer" and distilled.tile_grid == 1

    assert not bn_observer.training
    bns = [m for m in bn_observer.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(len(m._forward_hooks) == 0 for m in bns)
    assert all(torch.equal(m.running_mean, r) for m, r in zip(bns, running))  # eval mode: stats untouched
    assert all(p.grad is None for p in bn_observer.parameters())


def test_sre2l_never_gives_the_observer_weight_gradients(digits8: Dataset) -> None:
    """Even an observer whose parameters were left trainable gets no ``.grad``."""
    arch = registry.get_architecture("convnet2-bn")
    model = arch.build(1, 10, 8).eval()  # parameters still require grad
    task = DistillTask(digits8, model, arch, ipc=1, device=CPU, seed=0, options=SRe2LOptions(iterations=2))
    SRe2LDistiller().distill(task)
    assert all(p.grad is None for p in model.parameters())


def test_sre2l_per_channel_clip_and_overrides() -> None:
    dataset = pattern_dataset(size=8)
    arch = registry.get_architecture("convnet1-bn")
    model = arch.build(3, 3, 8).eval()
    options = SRe2LOptions(iterations=3, lr=2.0, r_bn=0.5, jitter=2, random_resized_crop=True)
    distilled = SRe2LDistiller().distill(DistillTask(dataset, model, arch, ipc=2, device=CPU, seed=1, options=options))
    low, high = (torch.tensor(b).view(1, 3, 1, 1) for b in dataset.normalization.pixel_bounds())
    assert (distilled.images >= low - 1e-6).all() and (distilled.images <= high + 1e-6).all()
    config = distilled.extras["config"]
    assert (config["lr"], config["r_bn"], config["jitter"], config["random_resized_crop"]) == (2.0, 0.5, 2, True)
    assert sorted(config["overridden"]) == ["iterations", "jitter", "lr", "r_bn", "random_resized_crop"]


def test_sre2l_default_families() -> None:
    assert dataset_family("cifar100", 32)[0] == "cifar"
    assert dataset_family("digits", 16)[0] == "digits" and dataset_family("fashion-mnist", 28)[0] == "cifar"
    digits, cifar = SRE2L_DEFAULTS["digits"], SRE2L_DEFAULTS["cifar"]
    assert digits.iterations < cifar.iterations and "ours" in digits.source
    assert (digits.lr, digits.r_bn, digits.jitter) == (cifar.lr, cifar.r_bn, cifar.jitter)
    assert dataset_family("imagefolder", 64)[0] == "tiny-imagenet"
    assert dataset_family("imagefolder", 224)[0] == "imagenet"
    assert (SRE2L_DEFAULTS["cifar"].lr, SRE2L_DEFAULTS["cifar"].iterations, SRE2L_DEFAULTS["cifar"].r_bn) == (0.25, 1000, 0.01)
    assert SRE2L_DEFAULTS["imagenet"].jitter == 32 and SRE2L_DEFAULTS["imagenet"].random_resized_crop
    assert SRE2L_DEFAULTS["tiny-imagenet"].r_bn == 1.0 and "ours" in SRE2L_DEFAULTS["tiny-imagenet"].source


def test_sre2l_refuses_bn_free_observer() -> None:
    distiller = SRe2LDistiller()
    with pytest.raises(ValueError, match="convnet3-bn"):
        distiller.check_observer(registry.get_architecture("convnet3"))
    distiller.check_observer(registry.get_architecture("convnet3-bn"))
    distiller.check_observer(registry.get_architecture("resnet18"))


def test_a_refused_observer_is_a_run_error_naming_method_and_observer() -> None:
    from ddbench.pipeline.config import RunError, check_method_observer

    with pytest.raises(RunError, match=r"^method 'sre2l' cannot use observer 'convnet3': .*convnet3-bn"):
        check_method_observer("sre2l", SRe2LDistiller(), registry.get_architecture("convnet3"))
    check_method_observer("sre2l", SRe2LDistiller(), registry.get_architecture("convnet3-bn"))


def test_cli_refuses_bn_free_observer_before_training(tmp_path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ddbench", "run", "--method", "sre2l", "--dataset", "digits", "--arch", "convnet3",
         "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "convnet3-bn" in result.stderr
    assert not (tmp_path / "observers").exists()
    assert not (tmp_path / "out").exists()
    assert elapsed < 30, f"refusal took {elapsed:.1f} s: did it train something first?"
