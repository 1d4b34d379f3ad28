"""The public plugin API: the one module a method plugin imports.

Everything a plugin may use is named here; every other ``ddbench`` module is private to the
host and may change without notice. An import-linter contract (``pyproject.toml``, checked by
``tests/test_import_contracts.py``) keeps the in-tree plugins (``lic_plugin``, ``baselines``) and
the example plugin on this module alone.

What is here:

- registration: :data:`hookimpl` (mark ``register_distillers(register)`` and the other hooks);
- contracts: :class:`DistillTask` (what a method gets), :class:`DistilledSet` (what it
  returns), :class:`ArchitectureSpec`, :class:`Normalization`, and :class:`Distiller`, a base
  class whose optional abilities are documented, overridable methods;
- errors: :class:`NonFiniteLossError` (a loss turned NaN or infinite: the host names the method
  and the others go on);
- building blocks shared by methods: tiles (:func:`squeeze`, :func:`expand`,
  :func:`check_tiles_fit`), DSA augmentation (:class:`DSA`, :data:`DEFAULT_STRATEGY`,
  :func:`parse_strategy`), reading an observer's features (:func:`read_features`,
  :func:`layer_output_sizes`), units of work that resume and shard (:func:`run_units`,
  :func:`unit_generator`, :class:`ImageBatch`, :func:`class_major_batches`), the estimates a
  method's ``plan_stages`` is written with (:func:`stage`, :func:`inference_memory`,
  :func:`layer_output_bytes`, :func:`parameter_bytes`), and registered plugins
  (:func:`registered_names`, :func:`get_architecture`).

Test a plugin with :func:`ddbench.testing.check_distiller`; the guide is ``docs/plugins.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ddbench.augment.dsa import DEFAULT_STRATEGY, DSA, parse_strategy
from ddbench.contracts import ArchitectureSpec, DistilledSet, DistillTask, Normalization, options_to_dict
from ddbench.evaluators.training import NonFiniteLossError
from ddbench.host.hookspecs import hookimpl
from ddbench.models.features import layer_output_sizes, read_features
from ddbench.store.partials import ImageBatch, class_major_batches, run_units, unit_generator
from ddbench.pipeline.planner import inference_memory, layer_output_bytes, parameter_bytes, stage
from ddbench.tiles import check_tiles_fit, expand, squeeze

__all__ = [
    "hookimpl", "Distiller", "DistillTask", "DistilledSet", "ArchitectureSpec", "Normalization", "options_to_dict",
    "NonFiniteLossError", "squeeze", "expand", "check_tiles_fit", "DSA", "DEFAULT_STRATEGY", "parse_strategy",
    "read_features", "layer_output_sizes", "run_units", "unit_generator", "ImageBatch", "class_major_batches",
    "registered_names", "get_architecture", "stage", "inference_memory", "layer_output_bytes", "parameter_bytes",
    "Ablation", "AblationPoint", "AblationSetting", "ReferenceFigure",
]


@dataclass
class AblationPoint:
    """One run of an ablation: the method's option overrides (``KEY=VALUE`` values as text) and
    the evaluator (``None``: the command's)."""

    label: str
    value: Any
    options: dict[str, str]
    evaluator: str | None = None


@dataclass
class AblationSetting:
    """What the host knows when it asks an ablation for its points."""

    arch: ArchitectureSpec  # the observer's architecture
    image_shape: tuple[int, int, int]
    ipc: int
    smallest_class: int  # training images of the smallest class
    values: list[int] | None = None  # the command's --values for this ablation, or None for its defaults


@dataclass
class Ablation:
    """A named ablation a method declares (``ddbench ablate METHOD --sweeps NAME``).
    ``points(setting)`` returns the runs and the skipped values (``{"label", "reason"}``);
    ``plot``: ``bars`` (one bar per point), ``line`` (numeric x) or ``categorical``."""

    title: str
    points: Callable[[AblationSetting], tuple[list[AblationPoint], list[dict[str, str]]]]
    plot: str = "line"
    xlabel: str = ""


@dataclass
class ReferenceFigure:
    """A figure from the method's paper printed beside the measured one (for reference only)."""

    source: str  # e.g. "paper (RTX 4090)"
    seconds: float | None = None
    peak_memory_gb: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Distiller:
    """Base class of a distillation method. Set ``name`` and ``options_class`` (a dataclass of
    the options, with defaults; refuse bad values in its ``__post_init__`` by raising
    ``ValueError`` naming the option), implement :meth:`distill` and :meth:`total_work`, and
    override the optional abilities below where the method has them. The host calls every
    ``check_*`` before any work (before the observer trains)."""

    name: ClassVar[str]
    options_class: ClassVar[type]
    #: the method's units are independent: under torchrun the ranks split them (see :func:`run_units`)
    shardable: ClassVar[bool] = False
    #: bump when the same options and seed would now give other images: finished work is then redone
    revision: ClassVar[int] = 0

    def distill(self, task: DistillTask) -> DistilledSet:
        raise NotImplementedError(f"{type(self).__name__} must implement distill(task)")

    def total_work(self, task: DistillTask) -> int:
        """Units of progress :meth:`distill` reports through ``task.progress`` (for progress lines)."""
        return 1

    def check_setup(self, options: Any, image_shape: tuple[int, int, int], ipc: int) -> None:
        """Raise ``ValueError`` when ``options`` cannot work for this image shape or IPC."""

    def check_observer(self, arch: ArchitectureSpec) -> None:
        """Raise ``ValueError`` when the method cannot use an observer of architecture ``arch``
        (name one to use instead)."""

    def check_device(self, options: Any, device: Any) -> None:
        """Raise ``ValueError`` when ``options`` cannot run on ``device`` (e.g. CUDA-only settings)."""

    def ablations(self) -> dict[str, Ablation]:
        """Named ablations for ``ddbench ablate``, in their default order (none by default)."""
        return {}

    def bench_reference(self, arch: str) -> ReferenceFigure | None:
        """The paper's distillation cost for 100 images with observer ``arch`` (``ddbench bench``
        prints it beside the measured cost), or ``None``."""
        return None

    def plan_stages(self, options: Any, spec: dict) -> list[dict] | None:
        """For ``ddbench run --plan``: the stages this method will run for an input of the given
        shape (``spec``: image shape, classes, IPC, observer), each with its forward and backward
        passes and peak memory; ``None`` when the method cannot say."""
        return None


def get_architecture(name: str) -> ArchitectureSpec:
    """A registered architecture by name (``.build(channels, classes, size)`` makes a fresh network)."""
    from ddbench.host import registry

    return registry.get_architecture(name)


def registered_names(kind: str) -> list[str]:
    """The names registered for ``kind`` (``distillers``, ``evaluators``, ``datasets``, ``architectures``)."""
    from ddbench.host import registry

    return sorted(registry.registered(kind))
