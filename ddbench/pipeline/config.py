"""The run's configuration and plan: every name and option resolved, before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddbench.host import registry
from ddbench.settings.budget import EvalBudget, resolve_budget
from ddbench.contracts import DataOptions
from ddbench.data.base import Dataset
from ddbench.settings.options import apply_overrides



RESULTS_SCHEMA = "ddbench-results/1"


DIST_EVAL_MODES = ("auto", "seeds", "ddp")


class RunError(ValueError):
    """A run that cannot start as asked (bad IPC, a method that broke its contract...)."""


@dataclass
class RunConfig:
    methods: list[str]  # the main method first, then the baselines
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    data_memory_gib: float = 2.0  # image-file splits that fit are decoded once (and cached under cache_dir)
    data_workers: int | None = None  # decoding processes (None: one less than the CPUs, at most 8)
    ipc: int = 10
    arch: str | None = None  # None: the dataset's default (convnet3-bn; convnet3-bn-w64 on the digits)
    verifier: str | None = None
    evaluator: str = "relabel"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    distill_seed: int = 0
    distill_seeds: int = 1  # each method distils this many times (seeds distill_seed, distill_seed + 1, ...)
    compare_random: bool = False  # add random real images and DD-Ranking's HLR, IOR and score
    budget: EvalBudget = field(default_factory=lambda: resolve_budget("quick"))
    method_options: dict[str, list[str]] = field(default_factory=dict)
    evaluator_options: list[str] = field(default_factory=list)
    observer_seed: int = 0
    observer_epochs: int | None = None
    observer_shift: float | None = None  # None: the dataset's default recipe
    observer_low_res: float | None = None  # None: the dataset's default recipe
    observer_checkpoint: str | None = None
    teacher_checkpoint: str | None = None
    validation_per_class: int = 0
    validation_seed: int = 0
    cache_dir: str | None = None
    device: str = "auto"
    out: str | None = None
    command: str = ""
    results_name: str = "results.json"  # the results file in the output folder; its tables share its stem
    saved_sets: list[str] = field(default_factory=list)  # distilled-set files evaluated as they are (ddbench eval)
    saved_pixels: str = "normalized"  # how tensor files from other tools hold pixels: normalized or unit ([0, 1])
    dist_eval: str = "auto"  # under torchrun: "seeds" over ranks, "ddp" (all ranks train each seed), or auto

    def __post_init__(self) -> None:
        if self.arch is None:
            self.arch = registry.default_arch(self.dataset)

    def distill_seed_list(self) -> list[int]:
        return [self.distill_seed + i for i in range(self.distill_seeds)]

    def output_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / f"{self.dataset}-{self.arch}-ipc{self.ipc}"


@dataclass
class Plan:
    """The resolved plugins and options of a run."""

    distillers: dict[str, Any]
    method_options: dict[str, Any]
    evaluator: Any
    evaluator_options: Any
    dataset_spec: Any
    observer_arch: Any
    verifier_arch: Any
    hard_evaluator: Any = None  # with compare_random: the hard-label evaluator HLR needs


def check_method_observer(name: str, distiller: Any, arch: Any) -> None:
    """The method's own ``check_observer``, as a RunError naming both."""
    call_method_check(name, distiller, "check_observer", arch, what=f" cannot use observer {arch.name!r}")


def plan_run(config: RunConfig) -> Plan:
    """Resolve every name and option; raises before any work if something is wrong."""
    if not config.methods and not config.saved_sets:
        raise RunError("nothing to evaluate: name a method (ddbench run --method) or a saved set (ddbench eval PATH)")
    if len(set(config.methods)) != len(config.methods):
        raise RunError(f"a method is named twice in {config.methods}")
    if config.distill_seeds < 1:
        raise RunError(f"--distill-seeds must be at least 1, got {config.distill_seeds}")
    if config.compare_random and config.saved_sets:
        raise RunError("--compare-random distils random real images beside the methods of a run; ddbench eval has no "
                       "methods to compare (run ddbench run --method random at the same IPC instead)")
    if config.compare_random and "random" not in config.methods:
        config.methods = [*config.methods, "random"]  # the reference IOR is measured against
    distillers = {name: registry.get_distiller(name) for name in config.methods}
    unknown = sorted(set(config.method_options) - set(config.methods))
    if unknown:
        raise RunError(f"--option given for {', '.join(unknown)}, which this run does not use (methods: {', '.join(config.methods)})")
    method_options = {
        name: d.resolve_options(apply_overrides(d.options_class(), config.method_options.get(name, []),
                                                what=f"method {name!r}"), config.dataset)
        for name, d in distillers.items()
    }
    evaluator = registry.get_evaluator(config.evaluator)
    evaluator_options = apply_overrides(evaluator.options_class(), config.evaluator_options, what=f"evaluator {config.evaluator!r}")
    dataset_spec = registry.get_dataset(config.dataset)
    observer_arch = registry.get_architecture(config.arch)
    verifier_arch = registry.get_architecture(config.verifier or config.arch)
    for name, distiller in distillers.items():
        check_method_observer(name, distiller, observer_arch)
    if config.ipc < 1:
        raise RunError(f"--ipc must be at least 1, got {config.ipc}")
    if not config.seeds:
        raise RunError("--seeds must name at least one seed")
    repeated = sorted({seed for seed in config.seeds if list(config.seeds).count(seed) > 1})
    if repeated:
        raise RunError(f"--seeds names seed {', '.join(map(str, repeated))} more than once: a repeated seed repeats "
                       f"the same run and shrinks the std; give distinct seeds")
    if config.validation_per_class < 0:
        raise RunError(f"--validation must be 0 (the test split) or a number of images per class, got "
                       f"{config.validation_per_class}")
    from ddbench.observer import default_recipe
    from ddbench.settings.observer_fields import recipe_overrides

    try:  # the recipe's own checks, before the data loads or anything trains
        default_recipe(config.dataset, **recipe_overrides(config))
    except ValueError as error:
        raise RunError(str(error)) from None
    if config.image_size is not None and config.image_size < 1:
        raise RunError(f"--image-size must be a positive number of pixels, got {config.image_size}; leave it out for "
                       f"the dataset's own size")
    if config.dist_eval not in DIST_EVAL_MODES:
        raise RunError(f"--dist-eval {config.dist_eval!r}: use one of {', '.join(DIST_EVAL_MODES)}")
    hard_evaluator = None
    if config.compare_random:
        hard_evaluator = evaluator if evaluator.name == "train" else registry.get_evaluator("train")
    return Plan(distillers, method_options, evaluator, evaluator_options, dataset_spec, observer_arch, verifier_arch,
                hard_evaluator)


def resolve_for_data(plan: Plan, dataset: Dataset, ipc: int) -> None:
    """Each method's options with what follows the loaded images and the IPC filled in
    (``Distiller.options_for_data``: the image shape, the IPC and the smallest class's training
    images, counted before any validation split, so that a validation run resolves as the run it
    stands for), before anything is keyed or recorded: a run that leaves such an option unset and
    one that gives the value it resolves to are the same run."""
    class_images = dataset.smallest_class_size()
    plan.method_options = {name: plan.distillers[name].options_for_data(options, dataset.name, dataset.image_shape, ipc,
                                                                        class_images)
                           for name, options in plan.method_options.items()}


def call_method_check(name: str, distiller: Any, hook: str, *args: Any, what: str = "") -> None:
    """A method's check ``hook(*args)`` (a :class:`~ddbench.plugin_base.Distiller` method; the base
    class accepts everything); its ValueError becomes a RunError naming the method (and ``what``
    it was checked against)."""
    try:
        getattr(distiller, hook)(*args)
    except ValueError as exc:
        raise RunError(f"method {name!r}{what}: {exc}") from None


def check_devices(plan: Plan, device: torch.device) -> None:
    """Each method's own check of its options against the device (``check_device``), before any work."""
    for name, distiller in plan.distillers.items():
        call_method_check(name, distiller, "check_device", plan.method_options[name], device)


def check_setup_all(plan: Plan, config: RunConfig, dataset: Dataset) -> None:
    """Each method's own check of its options against the image shape and IPC, before any work."""
    for name, distiller in plan.distillers.items():
        call_method_check(name, distiller, "check_setup", plan.method_options[name], dataset.image_shape, config.ipc)


def data_options(config: Any) -> DataOptions:
    """What the dataset loader gets from a run's config (any config with the data fields)."""
    from ddbench.observer import cache_dir

    return DataOptions(root=config.data_root, download=config.download, image_size=config.image_size,
                       memory_budget_gib=getattr(config, "data_memory_gib", 2.0), workers=getattr(config, "data_workers", None),
                       cache_dir=str(cache_dir(config.cache_dir)))
