"""Datasets as ddbench sees them: two image sources (train, test), a fixed class map and a
normalisation. Sources load images lazily by index, so folder datasets of any size work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from ddbench.contracts import Normalization


class ImageSource(Protocol):
    """A split: integer labels for every image, and images loaded on demand."""

    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int: ...

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` as float32 [k, C, H, W] in normalised space, on the CPU."""


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a float batch to ``size`` x ``size``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrinking = images.shape[-1] > size or images.shape[-2] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def normalize(images01: torch.Tensor, norm: Normalization) -> torch.Tensor:
    mean = torch.tensor(norm.mean, dtype=images01.dtype).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=images01.dtype).view(1, -1, 1, 1)
    return (images01 - mean) / std


def denormalize(images: torch.Tensor, norm: Normalization) -> torch.Tensor:
    mean = torch.tensor(norm.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return images * std + mean


@dataclass
class TensorSource:
    """A split held in memory as uint8 (or float in [0, 1]) [N, C, H, W] pixels."""

    pixels: torch.Tensor
    labels: torch.Tensor
    normalization: Normalization
    image_size: int

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4:
            raise ValueError(f"pixels must be [N, C, H, W], got shape {tuple(self.pixels.shape)}")
        if len(self.pixels) != len(self.labels):
            raise ValueError(f"{len(self.pixels)} images but {len(self.labels)} labels")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        batch = self.pixels[indices]
        batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        return normalize(resize_batch(batch, self.image_size), self.normalization)


@dataclass
class SubsetSource:
    """A view of another source restricted to ``indices`` (used for validation splits)."""

    base: ImageSource
    indices: torch.Tensor
    labels: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.labels = self.base.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        return self.base.load(self.indices[indices])


@dataclass
class Dataset:
    """A loaded dataset. ``class_names[i]`` is class index ``i``: the map is fixed per dataset."""

    name: str
    train: ImageSource
    test: ImageSource
    class_names: tuple[str, ...]
    channels: int
    image_size: int
    normalization: Normalization
    source: str = ""  # where it was read from, for the record
    evaluation_split: str = "test"  # what ``test`` holds: the test split, or a validation split carved from train
    _by_class: dict[int, torch.Tensor] | None = field(default=None, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def train_indices_by_class(self) -> dict[int, torch.Tensor]:
        """Class-balanced index: for each class, the sorted indices of its training images."""
        if self._by_class is None:
            self._by_class = indices_by_class(self.train.labels, self.num_classes)
        return self._by_class

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "train_size": len(self.train),
            "test_size": len(self.test),
            "normalization": {"mean": list(self.normalization.mean), "std": list(self.normalization.std)},
            "class_names": list(self.class_names),
            "source": self.source,
            "evaluated_on": self.evaluation_split,
        }

    def with_validation_split(self, per_class: int, seed: int) -> "Dataset":
        """A copy whose ``test`` is a seeded, class-balanced validation split carved out of
        ``train`` (``per_class`` images of each class) and whose ``train`` is the rest. The
        real test split is not reachable from the copy, so nothing can be tuned on it."""
        generator = torch.Generator().manual_seed(seed)
        keep, held_out = [], []
        for label, pool in self.train_indices_by_class().items():
            if per_class >= len(pool):
                raise ValueError(f"--validation {per_class} per class leaves nothing to train on: class {label} "
                                 f"({self.class_names[label]}) has {len(pool)} training images")
            shuffled = pool[torch.randperm(len(pool), generator=generator)]
            held_out.append(shuffled[:per_class])
            keep.append(shuffled[per_class:])
        keep_index = torch.cat(keep).sort().values
        held_index = torch.cat(held_out).sort().values
        return Dataset(
            name=self.name, train=SubsetSource(self.train, keep_index), test=SubsetSource(self.train, held_index),
            class_names=self.class_names, channels=self.channels, image_size=self.image_size,
            normalization=self.normalization, source=self.source,
            evaluation_split=f"validation ({per_class} per class, seed {seed}, carved from train)",
        )

    @property
    def split_tag(self) -> str:
        """A short tag for caches: empty for the full training set."""
        if self.evaluation_split == "test":
            return ""
        per_class = len(self.test) // max(1, self.num_classes)
        return f"-minusval{per_class}"


def indices_by_class(labels: torch.Tensor, num_classes: int) -> dict[int, torch.Tensor]:
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return {c: chunk for c, chunk in enumerate(torch.split(order, counts))}


def load_all(source: ImageSource, batch_size: int = 1024) -> torch.Tensor:
    """Every image of a source as one tensor (small datasets only)."""
    chunks = [source.load(torch.arange(i, min(i + batch_size, len(source)))) for i in range(0, len(source), batch_size)]
    return torch.cat(chunks)
