"""Decode image files once: every image, resized to the working size, kept as uint8 pixels.

A split of image files that fits in a memory budget (``DataOptions.memory_budget_gib``, 2 GiB
by default) at its working size is decoded at most once per process: :class:`DecodedPixels`
holds a uint8 [N, C, S, S] store and a mask of what is decoded; a ``load`` decodes only what is
missing, so the second epoch of any loop decodes nothing. :meth:`DecodedPixels.fill` decodes
everything missing in worker processes (``torch.utils.data.DataLoader``, ``workers``) and,
with a cache folder, saves the store as a raw file named by the split's data digest and size
(``<cache>/decoded/<digest>-<size>px.u8``), memory-mapped by later runs: a second run decodes
nothing at all. A split over the budget (ImageNet-1K at 224 px is 193 GB) is never held whole:
each ``load`` decodes its batch on a thread pool.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch

from ddbench.store.io import atomic_write_bytes, atomic_write_text

DEFAULT_MEMORY_BUDGET_GIB = 2.0


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _Decode(torch.utils.data.Dataset):
    """Index -> (index, uint8 image): what DataLoader workers run."""

    def __init__(self, decode: Callable[[int], torch.Tensor], indices: list[int]):
        self.decode = decode
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor]:
        index = self.indices[position]
        return index, self.decode(index)


def _collate(items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([i for i, _ in items]), torch.stack([image for _, image in items])


class DecodedPixels:
    """The uint8 pixels of ``count`` images of ``shape``, decoded on demand by ``decode(i)``."""

    def __init__(self, decode: Callable[[int], torch.Tensor], count: int, shape: tuple[int, int, int],
                 memory_budget_bytes: int, workers: int = 0, cache_file: Path | None = None):
        self.decode = decode
        self.count = count
        self.shape = shape
        self.workers = workers
        self.nbytes = count * shape[0] * shape[1] * shape[2]
        self.held = self.nbytes <= memory_budget_bytes
        self.cache_file = cache_file if self.held else None  # only a held split is saved for later runs
        self.store: torch.Tensor | None = None
        self.have: torch.Tensor | None = None
        self.decoded = 0  # images decoded by this process (for tests and logs)

    def _open(self) -> None:
        if self.store is not None:
            return
        if self.cache_file is not None and self.cache_file.exists() and self._cache_fits():
            self.store = torch.from_file(str(self.cache_file), shared=False, size=self.nbytes,
                                         dtype=torch.uint8).view(self.count, *self.shape)
            self.have = torch.ones(self.count, dtype=torch.bool)
            return
        self.store = torch.empty(self.count, *self.shape, dtype=torch.uint8)
        self.have = torch.zeros(self.count, dtype=torch.bool)

    def _cache_fits(self) -> bool:
        header = self.cache_file.with_suffix(".json")
        try:
            meta = json.loads(header.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get("shape") == [self.count, *self.shape] and self.cache_file.stat().st_size == self.nbytes

    def _decode_many(self, indices: list[int]) -> list[torch.Tensor]:
        self.decoded += len(indices)
        if len(indices) < 8:
            return [self.decode(i) for i in indices]
        with ThreadPoolExecutor(max_workers=max(1, self.workers or 1)) as pool:
            return list(pool.map(self.decode, indices))

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 [k, C, S, S] for ``indices``; decodes only images not decoded before."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if not self.held:
            images = self._decode_many(idx.tolist())
            return torch.stack(images) if images else torch.empty(0, *self.shape, dtype=torch.uint8)
        self._open()
        missing = idx[~self.have[idx]].unique()
        if len(missing):
            for i, image in zip(missing.tolist(), self._decode_many(missing.tolist())):
                self.store[i] = image
            self.have[missing] = True
            self._save_if_complete()
        return self.store[idx]

    def pending(self) -> int:
        """Images :meth:`fill` would decode now (0 for a streamed split or a complete cache)."""
        if not self.held:
            return 0
        self._open()
        return int((~self.have).sum())

    def fill(self, progress: Callable[[int], None] = lambda n: None) -> None:
        """Decode every image not decoded yet, in ``workers`` processes (held splits only)."""
        if not self.held:
            return
        self._open()
        missing = torch.nonzero(~self.have).flatten().tolist()
        if not missing:
            return
        loader = torch.utils.data.DataLoader(_Decode(self.decode, missing), batch_size=64, num_workers=self.workers,
                                             collate_fn=_collate)
        for indices, images in loader:
            self.store[indices] = images
            self.have[indices] = True
            self.decoded += len(indices)
            progress(len(indices))
        self._save_if_complete()

    def _save_if_complete(self) -> None:
        if self.cache_file is None or not bool(self.have.all()) or self.cache_file.exists():
            return
        try:
            atomic_write_bytes(self.cache_file, self.store.numpy().tobytes())
            atomic_write_text(self.cache_file.with_suffix(".json"), json.dumps({"shape": [self.count, *self.shape]}) + "\n")
        except OSError as exc:  # the run goes on; only the next run's decoding is lost, and the user is told
            warnings.warn(f"could not save decoded images to {self.cache_file} ({exc}); later runs will decode "
                          f"them again (check that --cache-dir is writable)", stacklevel=2)
