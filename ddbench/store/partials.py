"""Units of work inside one distillation.

A distiller that takes long splits its work into units whose results do not depend on each
other or on the order they run in: each unit has its own random generator (``unit_generator``)
and covers a fixed group of classes (``class_major_batches``). Each finished unit is saved to a
``PartialStore`` so that a killed distillation, started again, redoes only the unfinished ones
and still gives bit-identical images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ddbench.contracts import UNIT_SECONDS  # a saved unit's metadata: the seconds it took to compute
from ddbench.store.io import ArtifactError, load_tensors, save_tensors


def unit_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed derived from the run seed and the unit's name (stable across processes)."""
    blob = json.dumps([int(seed), *parts], default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def unit_generator(seed: int, *parts: Any) -> torch.Generator:
    """A CPU generator for one unit of work, e.g. ``unit_generator(seed, "lic-select", label)``."""
    return torch.Generator().manual_seed(unit_seed(seed, *parts))


@dataclass(frozen=True)
class ImageBatch:
    """Distilled images ``start:stop`` (class-major order) of the classes ``classes``."""

    index: int
    start: int
    stop: int
    classes: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"batch-{self.index:05d}"

    def __len__(self) -> int:
        return self.stop - self.start


def class_major_batches(num_classes: int, ipc: int, batch_size: int) -> list[ImageBatch]:
    """Batches of at most ``batch_size`` distilled images, made of whole classes where a class
    fits (``batch_size // ipc`` classes each), else of consecutive chunks of one class. The
    layout depends only on these three numbers, never on how many processes share the work."""
    if batch_size < 1 or ipc < 1:
        raise ValueError(f"batch_size and ipc must be at least 1, got {batch_size} and {ipc}")
    batches: list[ImageBatch] = []
    if batch_size >= ipc:
        per_batch = batch_size // ipc
        for first in range(0, num_classes, per_batch):
            classes = tuple(range(first, min(num_classes, first + per_batch)))
            batches.append(ImageBatch(len(batches), first * ipc, (classes[-1] + 1) * ipc, classes))
        return batches
    for label in range(num_classes):
        for offset in range(0, ipc, batch_size):
            start = label * ipc + offset
            batches.append(ImageBatch(len(batches), start, min(start + batch_size, (label + 1) * ipc), (label,)))
    return batches


class PartialStore:
    """The finished units of one distillation, one safetensors file each (atomic writes).

    ``PartialStore(None)`` keeps nothing: every ``load`` misses, as in a one-off distillation.
    """

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None
        # the units an earlier, stopped run left: only these are resumed (under torchrun, a unit
        # another rank of this run saves meanwhile is this run's work, not an earlier run's)
        self.earlier = frozenset(self.finished())
        self.resumed_units = 0  # units finished by an earlier, stopped run and loaded by this one
        self.resumed_seconds = 0.0  # the time those units took when they were computed

    def resume(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The unit as an earlier, stopped run saved it (its time counted as resumed), else None."""
        saved = self.load(name) if name in self.earlier else None
        if saved is not None:
            self.resumed_units += 1
            self.resumed_seconds += float(saved[1].get(UNIT_SECONDS, 0.0))
        return saved

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}.safetensors"

    def load(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The unit's tensors and metadata if it finished before, else None. A file that exists
        but cannot be read raises ``ArtifactError`` naming it (atomic writes never leave one)."""
        if self.folder is None or not self._path(name).exists():
            return None
        try:
            return load_tensors(self._path(name))
        except ArtifactError as exc:
            raise ArtifactError(f"{exc}; delete {self._path(name)} to redo that unit (the other finished units are "
                                f"kept)") from None

    def save(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        if self.folder is not None:
            save_tensors(self._path(name), tensors, metadata)

    def finished(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(".safetensors")] for p in self.folder.glob("*.safetensors"))

    def clear(self) -> None:
        """Remove the folder once the whole distilled set is saved."""
        if self.folder is not None and self.folder.is_dir():
            shutil.rmtree(self.folder)
            try:
                self.folder.parent.rmdir()  # the run folder's partial/, once no distillation is unfinished
            except OSError:
                pass


def run_units(task: Any, names: Sequence[str], compute: Callable[[int], tuple[dict[str, torch.Tensor], dict[str, Any]]],
              work: Callable[[int], int] = lambda i: 0, cheap: bool = False,
              ) -> list[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """Every unit's (tensors, metadata), in order, computing only what this process must.

    A unit saved before (a resumed run) is loaded; otherwise the rank that owns it
    (``task.owns(i)``) computes it with ``compute(i)`` and saves it. After
    ``task.sync_parts()`` the units of the other ranks are read from the shared run folder.
    ``work(i)`` is the progress a skipped unit counts for. ``cheap=True``: the units take no
    time worth resuming, so they are written only to share them between ranks.
    """
    shared = task.cluster is not None and task.cluster.active
    results: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
    try:
        for index, name in enumerate(names):
            saved = None if cheap and not shared else task.resume_part(name)  # counts the time it took then
            if saved is not None:
                results[index] = _without_time(saved)
                task.progress_resumed(work(index))
            elif task.owns(index):
                started = time.perf_counter()
                results[index] = compute(index)
                if shared or not cheap:  # the time is kept on disk only: the method sees its own metadata
                    tensors, metadata = results[index]
                    task.save_part(name, tensors, {**metadata, UNIT_SECONDS: round(time.perf_counter() - started, 4)})
    except BaseException:
        task.sync_parts(failed=True)  # the other ranks stop too instead of waiting for this one
        raise
    if not task.sync_parts():
        raise RuntimeError("another rank failed while distilling (see its output); finished units are kept: "
                           "run the same command again")
    for index, name in enumerate(names):
        if index not in results:
            saved = task.load_part(name)
            if saved is None:
                raise RuntimeError(f"unit {name} was not saved by the rank that owns it; run the same command "
                                   f"again (finished units are kept and only the missing ones are redone)")
            results[index] = _without_time(saved)
    return [results[index] for index in range(len(names))]


def _without_time(saved: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, metadata = saved
    return tensors, {k: v for k, v in metadata.items() if k != UNIT_SECONDS}
