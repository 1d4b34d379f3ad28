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

    def fingerprint(self) -> str:
        """A digest of the pixels, labels and working size (see :mod:`ddbench.data.identity`)."""
        from ddbench.data.identity import tensor_digest

        return tensor_digest(self.pixels, self.labels, extra=f"tensor-source:{self.image_size}")

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

    def fingerprint(self) -> str:
        from ddbench.data.identity import source_digest, tensor_digest

        return tensor_digest(self.indices, extra=f"subset-of:{source_digest(self.base)}")

    @property
    def streamed(self) -> bool:
        return bool(getattr(self.base, "streamed", False))

    @property
    def workers(self) -> int:
        return int(getattr(self.base, "workers", 0))

    def decode_threads(self, count: int) -> None:
        if hasattr(self.base, "decode_threads"):
            self.base.decode_threads(count)

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
    full_train: ImageSource | None = None  # with a validation split: the training split it was carved from
    held_out: tuple[int, int] | None = None  # with a validation split: (images per class, seed)
    held_out_indices: torch.Tensor | None = None  # with a validation split: its indices into ``full_train``
    _identity: dict[str, object] | None = field(default=None, init=False, repr=False)
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
        from ddbench.data.identity import split_indices

        if per_class < 1:
            raise ValueError(f"a validation split needs at least 1 image per class, got {per_class}; "
                             f"leave --validation out (0) to evaluate on the test split")
        by_class = self.train_indices_by_class()
        try:
            keep_index, held_index = split_indices(by_class, per_class, seed)
        except ValueError:
            smallest = min(by_class, key=lambda c: len(by_class[c]))
            raise ValueError(f"--validation {per_class} per class leaves nothing to train on: class {smallest} "
                             f"({self.class_names[smallest]}) has {len(by_class[smallest])} training images") from None
        return Dataset(
            name=self.name, train=SubsetSource(self.train, keep_index), test=SubsetSource(self.train, held_index),
            class_names=self.class_names, channels=self.channels, image_size=self.image_size,
            normalization=self.normalization, source=self.source,
            evaluation_split=f"validation ({per_class} per class, seed {seed}, carved from train)",
            full_train=self.train, held_out=(per_class, seed), held_out_indices=held_index,
        )

    def full_train_by_class(self) -> dict[int, torch.Tensor]:
        """Per class, the indices of the full training split (before any validation split)."""
        if self.full_train is None:
            return self.train_indices_by_class()
        return indices_by_class(self.full_train.labels, self.num_classes)

    def smallest_class_size(self) -> int:
        """Training images in the smallest class of the full training split (before any validation
        split: what a method that scales with the class size resolves, so that a validation run
        resolves as the run it stands for)."""
        return min(len(pool) for pool in self.full_train_by_class().values())

    def identity(self) -> dict[str, object]:
        """What this dataset's models are trained and judged on (:mod:`ddbench.data.identity`):
        digests of the full training split, of the training images in use and of the
        evaluation images, and the held-out split. Computed once."""
        if self._identity is None:
            from ddbench.data.identity import IDENTITY_VERSION, source_digest

            full = source_digest(self.full_train if self.full_train is not None else self.train)
            train = full if self.full_train is None else source_digest(self.train)
            held = None if self.held_out is None else {"per_class": self.held_out[0], "seed": self.held_out[1]}
            self._identity = {"version": IDENTITY_VERSION, "dataset": self.name, "image_size": self.image_size,
                              "source": full, "train": train, "held_out": held, "evaluation": source_digest(self.test)}
        return self._identity

    @property
    def split_tag(self) -> str:
        """A short, readable tag for cache names: empty for the full training set (the digest
        in :meth:`identity` is what tells splits apart)."""
        if self.held_out is None:
            return ""
        return f"-minusval{self.held_out[0]}s{self.held_out[1]}"


def indices_by_class(labels: torch.Tensor, num_classes: int) -> dict[int, torch.Tensor]:
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return {c: chunk for c, chunk in enumerate(torch.split(order, counts))}


def load_all(source: ImageSource, batch_size: int = 1024) -> torch.Tensor:
    """Every image of a source as one tensor (small datasets only)."""
    chunks = [source.load(torch.arange(i, min(i + batch_size, len(source)))) for i in range(0, len(source), batch_size)]
    return torch.cat(chunks)
