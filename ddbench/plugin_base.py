"""The base classes of the host's two kinds of plugin code, :class:`Distiller` and
:class:`Evaluator`, and the small records a method declares for the harness (ablations,
reference figures).

A registered distiller must be a :class:`Distiller` and a registered evaluator an
:class:`Evaluator` (the registry refuses anything else, naming the plugin): every optional
ability is an overridable method or class attribute with a documented default, so the host
calls it directly and never probes with ``getattr``. Plugins import these through
:mod:`ddbench.api`; they live here so that the host's own plugins and the pipeline can use
them without importing the API module (which gathers the whole host).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ddbench.contracts import ArchitectureSpec, DistilledSet, DistillTask, EvalContext, EvalResult


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

    def resolve_options(self, options: Any, dataset_name: str) -> Any:
        """``options`` with what the method decides per dataset filled in (e.g. an iteration count
        left unset), so a run records and keys the values it used; unchanged by default."""
        return options

    def options_for_data(self, options: Any, dataset_name: str, image_shape: tuple[int, int, int], ipc: int,
                         class_images: int) -> Any:
        """:meth:`resolve_options` once the run's images are loaded, for what follows their shape
        ``(C, H, W)``, the IPC and ``class_images``, the training images of the smallest class
        before any validation split (a validation run resolves as the run it stands for; e.g.
        LIC's N follows the image side and the share of a class it would squeeze): the run keys,
        records and writes to ``config.toml`` these. By default :meth:`resolve_options`."""
        return self.resolve_options(options, dataset_name)

    def default_iterations(self, task: DistillTask) -> tuple[int, str] | None:
        """For ``ddbench bench`` when the options leave ``iterations`` unset: the count a full run of
        ``task`` uses and where it comes from (e.g. SRe2L's per-dataset table), or ``None``
        (the bench then infers it from :meth:`total_work`)."""
        return None

    def plan_stages(self, options: Any, spec: dict) -> list[dict] | None:
        """For ``ddbench run --plan``: the stages this method will run for an input of the given
        shape (``spec``: image shape, classes, IPC, observer), each with its forward and backward
        passes and peak memory; ``None`` when the method cannot say."""
        return None


class Evaluator:
    """Base class of an evaluator: judges a distilled set by training a verifier on it, one seed
    per :meth:`evaluate` call (the host runs the seeds and reports their mean and std). Set
    ``name`` and ``options_class`` (a dataclass of the options, with defaults)."""

    name: ClassVar[str]
    options_class: ClassVar[type]
    #: results carry one accuracy per step (``extras["per_step"]``): under torchrun the ranks train
    #: each seed together (DDP) rather than splitting the seeds
    per_step: ClassVar[bool] = False

    def evaluate(self, distilled: DistilledSet, context: EvalContext) -> EvalResult:
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate(distilled, context)")

    def total_work(self, distilled: DistilledSet, context: EvalContext) -> int:
        """Units of progress :meth:`evaluate` reports through ``context.progress``."""
        return 1

    def describe(self, distilled: DistilledSet, context: EvalContext) -> dict[str, Any]:
        """The labels this evaluation uses and what they cost to store (``label_storage_bytes``)."""
        return {}
