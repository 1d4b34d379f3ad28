"""What every stage of one run shares, and the identities and summaries recorded with results."""

from __future__ import annotations

import functools
import platform
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from ddbench.data.base import Dataset
from ddbench.runtime.distributed import SINGLE, Cluster
from ddbench.store.artifacts import RunStore, file_digest
from ddbench.observer import Observer
from ddbench.pipeline.config import Plan, RunConfig


@dataclass
class RunContext:
    """What every stage of one run shares."""

    config: RunConfig
    plan: Plan
    dataset: Dataset
    observer: Observer
    teacher: Observer
    device: torch.device
    store: RunStore
    ui: Any
    cluster: Cluster = SINGLE

    @functools.cached_property
    def observer_id(self) -> dict[str, Any]:
        return observer_identity(self.observer)

    @functools.cached_property
    def teacher_id(self) -> dict[str, Any]:
        return self.observer_id if self.teacher is self.observer else observer_identity(self.teacher)


def summarize(per_seed: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed), in percent."""
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return {"per_seed": [round(a, 4) for a in per_seed], "mean": round(statistics.fmean(per_seed), 4), "std": round(std, 4)}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    from ddbench.version import __version__

    found = {"ddbench": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for package in ("torchvision", "kornia", "pluggy"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return found


def observer_identity(observer: Observer) -> dict[str, Any]:
    """What decides a model's soft labels and features: its architecture and its weights' file."""
    return {"architecture": observer.arch.name, "sha256": file_digest(observer.checkpoint)}


def training_identity(dataset: Dataset) -> dict[str, Any]:
    """The data identity of the images a method distils from (without the evaluation split)."""
    return {k: v for k, v in dataset.identity().items() if k != "evaluation"}
