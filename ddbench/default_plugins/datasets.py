"""The built-in datasets, registered through the ``register_datasets`` hook.

This module is imported at startup, so it only imports :mod:`ddbench.contracts`; each
loader imports torch, torchvision or scikit-learn when it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ddbench.contracts import DataOptions, DatasetSpec
from ddbench.host.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from ddbench.data.base import Dataset


def load_digits(options: DataOptions) -> "Dataset":
    from ddbench.data.digits import load_digits as load

    return load(options)


def load_mnist(options: DataOptions) -> "Dataset":
    from ddbench.data.torchvision_sets import load_mnist as load

    return load(options)


def load_fashion_mnist(options: DataOptions) -> "Dataset":
    from ddbench.data.torchvision_sets import load_fashion_mnist as load

    return load(options)


def load_cifar10(options: DataOptions) -> "Dataset":
    from ddbench.data.torchvision_sets import load_cifar10 as load

    return load(options)


def load_cifar100(options: DataOptions) -> "Dataset":
    from ddbench.data.torchvision_sets import load_cifar100 as load

    return load(options)


def load_imagefolder(options: DataOptions) -> "Dataset":
    from ddbench.data.imagefolder import load_imagefolder as load

    return load(options)


# Width 64 (DC's ConvNetW64) is as accurate on the digits' validation split as width 128 and
# 2.3x faster, so the mission command finishes in under 3 minutes on 2 CPU cores (README).
DIGITS_ARCH = "convnet3-bn-w64"

SPECS = (
    DatasetSpec(
        name="digits",
        load=load_digits,
        description="scikit-learn's 8x8 handwritten digits (1,437/360 fixed split), upsampled to 16x16; no download; "
                    f"default observer {DIGITS_ARCH}",
        needs_root=False,
        default_arch=DIGITS_ARCH,
    ),
    DatasetSpec(
        name="mnist",
        load=load_mnist,
        description="MNIST, 1x28x28, 10 classes, from <data-root>/MNIST/raw",
        needs_root=True,
    ),
    DatasetSpec(
        name="fashion-mnist",
        load=load_fashion_mnist,
        description="Fashion-MNIST, 1x28x28, 10 classes, from <data-root>/FashionMNIST/raw",
        needs_root=True,
    ),
    DatasetSpec(
        name="cifar10",
        load=load_cifar10,
        description="CIFAR-10, 3x32x32, 10 classes, from <data-root>/cifar-10-batches-py",
        needs_root=True,
    ),
    DatasetSpec(
        name="cifar100",
        load=load_cifar100,
        description="CIFAR-100 (fine labels), 3x32x32, 100 classes, from <data-root>/cifar-100-python",
        needs_root=True,
    ),
    DatasetSpec(
        name="imagefolder",
        load=load_imagefolder,
        description="train/<class>/ + val|test/<class>/ image folders (or Tiny-ImageNet's layout), any resolution, 64x64 by default",
        needs_root=True,
    ),
)


@hookimpl
def register_datasets(register):
    """Register the built-in datasets."""
    for spec in SPECS:
        register(spec)
