"""What exactly a model or a distilled set was trained on, and whether it saw held-out images.

Every cache key and every saved artifact carries a *data identity*:

- ``source``: a digest of the full training split as loaded (content, labels and working
  image size), before any validation split is carved out of it;
- ``train``: a digest of the training images actually used (``source`` restricted to the
  images kept after the validation split);
- ``held_out``: ``{"per_class": N, "seed": S}`` when a validation split was carved out
  (``--validation N --validation-seed S``), else ``None``;
- ``evaluation``: a digest of the images accuracy is measured on (test or validation split).

A source's digest comes from its ``fingerprint()`` method: tensor sources hash their pixels
and labels; image folders hash every file's path (relative to the folder) and bytes with the
labels (remembered in the cache folder under the files' sizes and modification times, so a
re-copied folder keeps its identity and an unchanged one is not read again). A source
without ``fingerprint()`` (a third-party dataset plugin) is hashed by content, by loading
every image once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from ddbench.store.io import ArtifactError

IDENTITY_VERSION = 1


class LeakError(ArtifactError):
    """A model or a set that saw (or may have seen) the images a run holds out for validation."""


def tensor_digest(*tensors: torch.Tensor, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for tensor in tensors:
        contiguous = tensor.detach().cpu().contiguous()
        digest.update(f"{contiguous.dtype}{tuple(contiguous.shape)}".encode())
        digest.update(contiguous.view(torch.uint8).numpy().tobytes() if contiguous.numel() else b"")
    return digest.hexdigest()


def content_digest(source: Any, batch_size: int = 512) -> str:
    """A digest of every image a source loads and its labels (for sources without ``fingerprint``)."""
    digest = hashlib.sha256(tensor_digest(source.labels).encode())
    for start in range(0, len(source), batch_size):
        digest.update(tensor_digest(source.load(torch.arange(start, min(start + batch_size, len(source))))).encode())
    return digest.hexdigest()


def source_digest(source: Any, progress: Callable[[int], None] | None = None) -> str:
    """The digest of a split: its own ``fingerprint()``, else its content. Computed once per
    source object (a folder of a million files is listed once); ``progress(n)``, when given,
    is passed to ``fingerprint`` to be told of each file it reads."""
    cached = getattr(source, "_ddbench_digest", None)
    if cached is None:
        fingerprint = getattr(source, "fingerprint", None)
        if callable(fingerprint):
            cached = fingerprint() if progress is None else fingerprint(progress)
        else:
            cached = content_digest(source)
        try:
            source._ddbench_digest = cached
        except AttributeError:  # a source that takes no new attributes is hashed each time
            pass
    return cached


def split_indices(by_class: dict[int, torch.Tensor], per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (kept, held-out) training indices of a seeded, class-balanced validation split:
    ``per_class`` images of each class held out. The same inputs always give the same split,
    and for one seed a smaller ``per_class`` holds out a subset of a larger one's."""
    generator = torch.Generator().manual_seed(seed)
    keep, held_out = [], []
    for label, pool in by_class.items():
        if per_class >= len(pool):
            raise ValueError(f"--validation {per_class} per class leaves nothing to train on: class {label} "
                             f"has {len(pool)} training images")
        shuffled = pool[torch.randperm(len(pool), generator=generator)]
        held_out.append(shuffled[:per_class])
        keep.append(shuffled[per_class:])
    return torch.cat(keep).sort().values, torch.cat(held_out).sort().values


def describe_record(record: dict[str, Any] | None) -> str:
    if not record:
        return "an unknown training split"
    held = record.get("held_out")
    if not held:
        return "the full training split"
    return f"the training split minus a validation split of {held['per_class']} per class (seed {held['seed']})"


def check_unseen(record: dict[str, Any] | None, dataset: Any, what: str, fix: str) -> None:
    """Refuse ``what`` (an observer, a teacher, a saved set) when the run evaluates on a
    validation split and ``record`` (its data identity) says it saw any of the held-out
    images, or does not say what it was trained on. ``fix`` says what to do instead."""
    if dataset.held_out is None:
        return
    run_split = describe_record(dataset.identity())
    if not record or "source" not in record:
        raise LeakError(f"{what} does not record which images it was trained on, so it may have seen this run's "
                        f"validation images ({run_split}); {fix}")
    if record["source"] != dataset.identity()["source"]:
        raise LeakError(f"{what} was made from other training data than this run's (data digest "
                        f"{record['source'][:12]} vs {dataset.identity()['source'][:12]}), so it may have seen this "
                        f"run's validation images; {fix}")
    held = record.get("held_out")
    if not held:
        raise LeakError(f"{what} was made from {describe_record(record)}, which contains every image of this run's "
                        f"validation split ({run_split}); {fix}")
    _, its_held_out = split_indices(dataset.full_train_by_class(), int(held["per_class"]), int(held["seed"]))
    ours = dataset.held_out_indices
    seen = int((~torch.isin(ours, its_held_out)).sum())
    if seen:
        raise LeakError(f"{what} was made from {describe_record(record)}: it saw {seen} of the {len(ours)} images of "
                        f"this run's validation split ({run_split}); {fix}")
