"""Read a split batch by batch, in the order a loop asks for, onto the device.

:class:`BatchReader` is how every loop over real images reads them (observer training, test
accuracy). A split held in memory (tensors, or image files decoded once, see
:mod:`ddbench.data.decoded`) is sliced in the main process: that is a copy, workers would only
add traffic. A *streamed* split (image files over the memory budget, e.g. ImageNet-1K) is
decoded in ``torch.utils.data.DataLoader`` worker processes that stay alive across epochs
(``persistent_workers``), a few batches ahead of the loop, into pinned memory on CUDA, and
copied with ``non_blocking=True``: decoding overlaps training and the main process decodes
nothing.
"""

from __future__ import annotations

from typing import Iterator

import torch

PREFETCH_BATCHES = 4  # per worker


def is_streamed(source) -> bool:
    """True when ``source`` decodes files on every load (over the memory budget)."""
    return bool(getattr(source, "streamed", False))


class _OrderSampler(torch.utils.data.Sampler):
    """Yields the batches (index tensors) of the current epoch; set before each pass."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _LoadBatch(torch.utils.data.Dataset):
    """Index tensor -> (indices, float images): what a worker process runs."""

    def __init__(self, source) -> None:
        self.source = source

    def __getitem__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch, self.source.load(batch)

    def __len__(self) -> int:
        return len(self.source)


def _single_threaded_worker(_: int) -> None:
    """Each worker decodes on one thread: the workers are the parallelism."""
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset.source, "decode_threads"):
        info.dataset.source.decode_threads(1)


class BatchReader:
    """``for indices, images in reader(order, batch_size)``: ``images`` on ``device``."""

    def __init__(self, source, device: torch.device, workers: int | None = None) -> None:
        self.source = source
        self.device = torch.device(device)
        self.workers = (workers if workers is not None else int(getattr(source, "workers", 0))) if is_streamed(source) else 0
        self._sampler = _OrderSampler()
        self._loader: torch.utils.data.DataLoader | None = None

    def __call__(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = list(torch.as_tensor(order).split(batch_size))
        if self.workers <= 0:
            for batch in batches:
                yield batch, self.source.load(batch).to(self.device, non_blocking=True)
            return
        self._sampler.batches = batches
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                _LoadBatch(self.source), sampler=self._sampler, batch_size=None, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", persistent_workers=True, prefetch_factor=PREFETCH_BATCHES,
                worker_init_fn=_single_threaded_worker)
        for batch, images in self._loader:
            yield batch, images.to(self.device, non_blocking=True)
