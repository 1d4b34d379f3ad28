"""The contracts between the host and its plugins.

A plugin registers *specs* through the hooks in :mod:`ddbench.host.hookspecs`:

- :class:`DatasetSpec`: how to load a dataset (:class:`ddbench.data.Dataset`).
- :class:`ArchitectureSpec`: how to build a network for an image shape.
- :class:`DistillTask` / :class:`DistilledSet`: what a distiller gets and returns.
- :class:`EvalContext` / :class:`EvalResult`: what an evaluator gets and returns for one seed.

The base classes a distiller and an evaluator subclass are in :mod:`ddbench.plugin_base`.

Everything here is plain data; torch is imported only for type checking so that
``ddbench --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from ddbench.data.base import Dataset


ProgressCallback = Callable[[int], None]
"""Called with the number of units of work just finished (see ``DistillTask.total_work``)."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std: images inside ddbench are ``(x - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def pixel_bounds(self) -> tuple[list[float], list[float]]:
        """Per-channel normalised values of pixel 0 and pixel 1 (the valid range)."""
        low = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        high = [(1.0 - m) / s for m, s in zip(self.mean, self.std)]
        return low, high


@dataclass(frozen=True)
class DataOptions:
    """What a dataset loader receives from the command line."""

    root: str | None = None
    download: bool = False
    image_size: int | None = None  # resize to this many pixels a side; None keeps the native size
    memory_budget_gib: float = 2.0  # splits of image files that fit are decoded once and kept as uint8
    workers: int | None = None  # processes that decode image files (None: one less than the CPUs, at most 8)
    cache_dir: str | None = None  # where decoded splits are saved for later runs (None: kept in memory only)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a plugin offers. ``load`` returns a :class:`ddbench.data.Dataset`.
    ``default_arch``: the observer architecture a run on it uses when none is named (``--arch``)."""

    name: str
    load: Callable[[DataOptions], "Dataset"]
    description: str
    needs_root: bool = False
    default_arch: str = "convnet3-bn"


@dataclass(frozen=True)
class ArchitectureSpec:
    """A network family member. ``build(channels, num_classes, image_size)`` returns an ``nn.Module``.

    ``feature_layers`` names the intermediate layers (``named_modules`` names) that methods
    may read features from, shallow to deep; ``default_feature_layer`` is the deepest of them
    before the classifier: for ConvNets the last block's output after its pooling (the embedding
    the classifier reads), for ResNet-18 and MobileNet-V2 the last stage before global pooling.
    """

    name: str
    build: Callable[[int, int, int], "nn.Module"]
    description: str
    has_batchnorm: bool
    feature_layers: tuple[str, ...] = ()
    default_feature_layer: str = ""


UNIT_SECONDS = "unit_seconds"  # a saved part's metadata: the seconds it took (see ddbench.store.partials)


@dataclass
class DistillTask:
    """Everything a distiller needs. Images are float tensors in normalised space."""

    dataset: "Dataset"
    observer: "nn.Module"  # eval mode, parameters frozen
    observer_arch: ArchitectureSpec
    ipc: int
    device: "torch.device"
    seed: int
    options: Any  # an instance of the distiller's ``options_class``
    progress: ProgressCallback = lambda n: None
    # finished units of a distillation that was stopped (a ddbench.store.partials.PartialStore); None keeps nothing
    partials: Any = None
    # this process's rank among torchrun's (a ddbench.runtime.distributed.Cluster); None: a single process
    cluster: Any = None
    # counts work an earlier, stopped run did (see progress_resumed); None: ``progress`` does
    resumed_progress: ProgressCallback | None = None

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def load_part(self, name: str) -> "tuple[dict[str, torch.Tensor], dict[str, Any]] | None":
        """A unit of this distillation saved by ``save_part`` before the run was stopped, else None."""
        return None if self.partials is None else self.partials.load(name)

    def save_part(self, name: str, tensors: "dict[str, torch.Tensor]", metadata: dict[str, Any],
                  seconds: float | None = None) -> None:
        """Keep a finished unit (tensors plus JSON metadata) so a restarted run can skip it.
        A unit's result must not depend on other units (see :mod:`ddbench.store.partials`).
        ``seconds``: the time the unit took, counted towards the distillation's time when a
        restarted run resumes it (:meth:`resume_part`). Saving under the same name replaces it."""
        if self.partials is not None:
            self.partials.save(name, tensors, {**metadata, **({UNIT_SECONDS: round(seconds, 4)} if seconds is not None else {})})

    def resume_part(self, name: str) -> "tuple[dict[str, torch.Tensor], dict[str, Any]] | None":
        """``load_part`` for a run that goes on from what an earlier, stopped run saved: the part's
        ``seconds`` count towards this distillation's time, as ``run_units`` counts its units'."""
        return None if self.partials is None else self.partials.resume(name)

    def progress_resumed(self, n: int) -> None:
        """Advance the progress by ``n`` units an earlier, stopped run did (loaded, not computed
        now): like ``progress``, but the time estimate keeps to the work this run does."""
        (self.resumed_progress or self.progress)(n)

    def owns(self, unit: int) -> bool:
        """Whether this process computes unit ``unit`` (always, outside torchrun)."""
        return self.cluster is None or self.cluster.owns(unit)

    def sync_parts(self, failed: bool = False) -> bool:
        """Wait until every rank has saved its units (or failed); True when none failed. In a
        single process: ``not failed``."""
        if self.cluster is not None:
            return self.cluster.all_ok(failed)
        return not failed

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    @property
    def normalization(self) -> Normalization:
        return self.dataset.normalization

    def train_indices_by_class(self) -> dict[int, "torch.Tensor"]:
        """Indices of the training images of each class (the distillation pool)."""
        return self.dataset.train_indices_by_class()

    def load_train(self, indices: "torch.Tensor") -> "torch.Tensor":
        """Training images at ``indices`` as a float tensor on the task's device."""
        return self.dataset.train.load(indices).to(self.device)


SOFT_LABEL_KINDS = ("hard", "observer", "stored")


@dataclass
class DistilledSet:
    """A distilled dataset as a method returns it.

    ``soft_labels`` says where training targets come from: ``"hard"`` (the integer labels),
    ``"observer"`` (the observer relabels every augmented view online) or ``"stored"``
    (``stored_soft_labels`` holds a probability vector per image).
    ``tile_grid`` is the side of the tile layout: 1 for whole images, 2 when four images
    were squeezed into a 2x2 grid, and so on; a side the grid does not divide is cut at
    ``k * side // grid`` (:func:`ddbench.tiles.tile_edges`).
    """

    images: "torch.Tensor"  # [K, C, H, W] float32, normalised space, CPU
    labels: "torch.Tensor"  # [K] int64
    method: str
    soft_labels: str = "observer"
    stored_soft_labels: "torch.Tensor | None" = None
    tile_grid: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def images_per_class(self, num_classes: int) -> list[int]:
        import torch

        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class EvalContext:
    """What an evaluator receives besides the distilled set: one seed of one evaluation."""

    dataset: "Dataset"
    verifier_arch: ArchitectureSpec
    teacher: "nn.Module | None"  # the observer, for soft labels
    budget: Any  # ddbench.settings.budget.EvalBudget
    seed: int
    device: "torch.device"
    options: Any = None  # an instance of the evaluator's ``options_class``
    progress: ProgressCallback = lambda n: None
    # set when the ranks of a torchrun launch train this one verifier together (DistributedDataParallel):
    # pass it to ddbench.evaluators.training.fit and ddbench.runtime.metrics.accuracy; None: a single process
    cluster: Any = None


@dataclass
class EvalResult:
    """One seed's outcome. ``accuracy`` is the last epoch's test accuracy in percent."""

    accuracy: float
    seed: int
    extras: dict[str, Any] = field(default_factory=dict)


def options_to_dict(options: Any) -> dict[str, Any]:
    """A plugin's options dataclass as a plain dict (for results and manifests)."""
    if options is None:
        return {}
    if dataclasses.is_dataclass(options):
        return dataclasses.asdict(options)
    raise TypeError(f"options must be a dataclass instance, got {type(options).__name__}")
