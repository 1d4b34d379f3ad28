"""``ddbench run``: config -> data -> observer -> distillers -> evaluator -> report.

Everything a run needs is resolved and validated before any work starts: unknown methods,
datasets, architectures, evaluators, options and budget fields fail at once.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddbench import registry
from ddbench.budget import EvalBudget, resolve_budget
from ddbench.contracts import DataOptions, DistilledSet, DistillTask, EvalContext, options_to_dict
from ddbench.data.base import Dataset
from ddbench.data.identity import check_unseen
from ddbench.ddranking_metrics import ddranking_metrics
from ddbench.distributed import (SINGLE, Cluster, check_same_file, check_shared_folder, evaluate_distributed,
                                 init_from_environment, main_first)
from ddbench.artifacts import DISTILLED_FORMAT, RunStore, file_digest, git_revision, load_distilled, save_distilled, unit_key
from ddbench.exports import write_image_grid, write_step_outputs, write_tables
from ddbench.io import ArtifactError, atomic_write_json, atomic_write_text, read_metadata
from ddbench.measure import measure_stage, resolve_device
from ddbench.observer import Observer, default_recipe, get_observer, load_teacher
from ddbench.options import apply_overrides
from ddbench.partials import PartialStore
from ddbench.report import SilentUI
from ddbench.set_formats import load_foreign_set

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
    arch: str = "convnet3-bn"
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
    """The method's own ``check_observer`` (if it has one), as a RunError naming both."""
    check_observer = getattr(distiller, "check_observer", None)
    if check_observer is None:
        return
    try:
        check_observer(arch)
    except ValueError as exc:
        raise RunError(f"method {name!r} cannot use observer {arch.name!r}: {exc}") from None


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
        name: apply_overrides(d.options_class(), config.method_options.get(name, []), what=f"method {name!r}")
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
    if config.observer_epochs is not None and config.observer_epochs < 1:
        raise RunError(f"--observer-epochs must be at least 1, got {config.observer_epochs}: an untrained observer "
                       f"scores and labels nothing")
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


def call_method_check(name: str, distiller: Any, hook: str, *args: Any) -> None:
    """A method's optional check ``hook(*args)`` (if it has one); its ValueError becomes a RunError naming it."""
    check = getattr(distiller, hook, None)
    if check is None:
        return
    try:
        check(*args)
    except ValueError as exc:
        raise RunError(f"method {name!r}: {exc}") from None


def check_devices(plan: Plan, device: torch.device) -> None:
    """Each method's own check of its options against the device (``check_device``), before any work."""
    for name, distiller in plan.distillers.items():
        call_method_check(name, distiller, "check_device", plan.method_options[name], device)


def check_setup_all(plan: Plan, config: RunConfig, dataset: Dataset) -> None:
    """Each method's own check of its options against the image shape and IPC, before any work."""
    for name, distiller in plan.distillers.items():
        call_method_check(name, distiller, "check_setup", plan.method_options[name], dataset.image_shape, config.ipc)


def check_architecture_fits(arch: Any, dataset: Dataset) -> None:
    """One forward pass of an untrained ``arch`` on one blank image of the dataset's shape, so
    an image size the network cannot take is refused before any training, naming both."""
    try:
        model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).eval()
        with torch.no_grad():
            model(torch.zeros(1, *dataset.image_shape))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"architecture {arch.name!r} cannot take {dataset.image_size} px images of {dataset.name} "
                       f"({first}); use a larger --image-size or a shallower --arch") from None


def check_writable(folder: Path, what: str, flag: str) -> None:
    """``folder`` is, or can be made, a folder that takes new files: checked before any work, so
    a read-only output is not found after an hour of training. Nothing is left behind: the
    probe file is made (and removed) in the folder or, if it does not exist yet, in its nearest
    existing parent."""
    import tempfile

    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        blocker = "is a file" if existing == folder else f"is under {existing}, which is a file"
        raise RunError(f"{what} {folder} {blocker}; pass {flag} with a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ddbench-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunError(f"{what} {folder} cannot be written ({existing}: {reason}); pass {flag} with a writable "
                       f"folder") from None


def data_options(config: Any) -> DataOptions:
    """What the dataset loader gets from a run's config (any config with the data fields)."""
    from ddbench.observer import cache_dir

    return DataOptions(root=config.data_root, download=config.download, image_size=config.image_size,
                       memory_budget_gib=getattr(config, "data_memory_gib", 2.0), workers=getattr(config, "data_workers", None),
                       cache_dir=str(cache_dir(config.cache_dir)))


def decode_ahead(dataset: Dataset, ui: Any) -> None:
    """Decode the training images now, in worker processes, where the source can (image folders
    that fit the memory budget), so no training loop waits on a decoder."""
    source = dataset.full_train if dataset.full_train is not None else dataset.train
    fill = getattr(source, "fill", None)
    pending = getattr(source, "pending", lambda: 0)()
    if fill is not None and pending:  # nothing to decode (cached, or streamed): no stage to report
        fill(ui.progress(f"decode {dataset.name} training images", pending))


def load_dataset(config: RunConfig, spec: Any, plan: Plan | None = None) -> Dataset:
    dataset = spec.load(data_options(config))
    if plan is not None:
        check_setup_all(plan, config, dataset)
        for arch in {plan.observer_arch.name: plan.observer_arch, plan.verifier_arch.name: plan.verifier_arch}.values():
            check_architecture_fits(arch, dataset)
    if config.validation_per_class:
        try:
            dataset = dataset.with_validation_split(config.validation_per_class, config.validation_seed)
        except ValueError as exc:
            raise RunError(str(exc)) from None
    smallest = min(len(v) for v in dataset.train_indices_by_class().values())
    if config.ipc > smallest:
        raise RunError(f"--ipc {config.ipc} is more than the {smallest} training images of the smallest class of {dataset.name}")
    return dataset


def summarize(per_seed: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed), in percent."""
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return {"per_seed": [round(a, 4) for a in per_seed], "mean": round(statistics.fmean(per_seed), 4), "std": round(std, 4)}


def check_distilled(distilled: DistilledSet, method: str, dataset: Dataset, ipc: int) -> None:
    """The host's contract check on what a distiller returned; names the method that broke it."""
    problems = []
    images, labels = distilled.images, distilled.labels
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != dataset.image_shape:
        problems.append(f"images must be a [K, {', '.join(map(str, dataset.image_shape))}] tensor, got {getattr(images, 'shape', type(images))}")
    elif images.dtype != torch.float32:
        problems.append(f"images must be float32, got {images.dtype}")
    elif not bool(torch.isfinite(images).all()):
        problems.append("images contain NaN or infinite values")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        problems.append("labels must be a 1-D int64 tensor")
    elif isinstance(images, torch.Tensor) and len(labels) != len(images):
        problems.append(f"{len(images)} images but {len(labels)} labels")
    elif len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes):
        problems.append(f"labels must lie in [0, {dataset.num_classes})")
    else:
        per_class = distilled.images_per_class(dataset.num_classes)
        if any(count != ipc for count in per_class):
            problems.append(f"expected {ipc} images per class, got {per_class}")
    if distilled.soft_labels not in ("hard", "observer", "stored"):
        problems.append(f"soft_labels must be hard, observer or stored, got {distilled.soft_labels!r}")
    if problems:
        raise RunError(f"method {method!r} returned an invalid distilled set: " + "; ".join(problems))


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


def run(config: RunConfig, ui) -> dict[str, Any]:
    """Run the comparison and write ``results.json``; ``ui`` shows progress and the table.

    Finished units (each method's distillation, each evaluation seed) are recorded in the
    output folder's manifest and reused when the run is started again.
    """
    plan = plan_run(config)
    device = resolve_device(config.device)
    cluster = init_from_environment(use_cuda=device.type == "cuda")
    if cluster.active and device.type == "cuda":
        device = torch.device("cuda", cluster.local_rank)
    as_given = config.budget  # "auto" fields as the user gave them (for config.toml)
    config.budget = budget = config.budget.resolve_for(device)  # auto precision / channels-last, as used and keyed
    check_devices(plan, device)
    if not cluster.is_main:
        ui = SilentUI()  # rank 0 reports for everyone
    out = config.output_dir()
    if cluster.is_main:
        check_writable(out, "the output folder", "--out")
        from ddbench.observer import cache_dir

        check_writable(cache_dir(config.cache_dir), "the cache folder", "--cache-dir (or $DDBENCH_CACHE)")
    dataset = load_dataset(config, plan.dataset_spec, plan)
    check_saved_sets_unseen(config.saved_sets, dataset)
    check_saved_sets_fit(config, dataset)
    decode_ahead(dataset, ui)
    if cluster.active:
        check_shared_folder(cluster, out)
    store = RunStore(out, writer=cluster.is_main)
    if cluster.is_main:
        from ddbench.config_file import resolved_config

        atomic_write_text(out / "config.toml", resolved_config(config, as_given, plan))
    ui.info(f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test images, "
            f"shape {dataset.image_shape}, {dataset.num_classes} classes; device {device}"
            + (f"; {cluster.world_size} ranks ({cluster.backend})" if cluster.active else ""))
    # rank 0 trains the observer if it must; the others then load it from the cache
    observer = main_first(cluster, lambda: get_observer(
        dataset, plan.observer_arch, device, seed=config.observer_seed,
        recipe=default_recipe(dataset.name, epochs=config.observer_epochs, precision=budget.precision,
                              channels_last=budget.channels_last == "on", compile=budget.compile),
        cache=Path(config.cache_dir) if config.cache_dir else None,
        checkpoint=Path(config.observer_checkpoint) if config.observer_checkpoint else None,
        progress_factory=ui.progress,
    ), "observer")
    if cluster.active:
        check_same_file(cluster, observer.checkpoint, "the observer checkpoint", "--cache-dir")
    ui.info(f"observer {observer.arch.name}: test accuracy {observer.test_accuracy:.2f}% "
            f"({'trained now' if observer.trained_now else 'loaded'} from {observer.checkpoint})")
    teacher = observer
    if config.teacher_checkpoint:
        teacher = load_teacher(Path(config.teacher_checkpoint), dataset, device)
        ui.info(f"teacher for soft labels: {teacher.arch.name}, test accuracy {teacher.test_accuracy:.2f}% ({teacher.checkpoint})")
    store.start({"command": config.command, "git_revision": git_revision(Path(__file__).parent), "versions": versions(),
                 "seeds": config.seeds, "observer": observer.describe(),
                 **({"ranks": cluster.world_size} if cluster.active else {})})

    context = RunContext(config, plan, dataset, observer, teacher, device, store, ui, cluster)
    methods: dict[str, Any] = {}
    for name, distiller in plan.distillers.items():
        try:
            methods[name] = distill_and_evaluate(context, name, distiller)
        except Exception as exc:  # one broken plugin must not sink the others; it is named in the table
            message = f"{type(exc).__name__}: {exc}"
            ui.info(f"method {name!r} failed: {message}")
            methods[name] = {"error": message}
    if config.compare_random:
        add_ddranking_metrics(context, methods)
    for path in config.saved_sets:
        name = saved_set_name(Path(path), methods)
        try:
            methods[name] = evaluate_saved(context, Path(path))
        except Exception as exc:  # a bad file is named in the table; the other sets still run
            message = f"{type(exc).__name__}: {exc}"
            ui.info(f"saved set {path} failed: {message}")
            methods[name] = {"error": message, "source": str(path)}

    ipc = config.ipc
    if not config.methods:  # ddbench eval: the IPC of the first set that could be read
        ipc = next((m["images_per_class"] for m in methods.values() if "images_per_class" in m), ipc)
    results = {
        "schema": RESULTS_SCHEMA,
        "command": config.command,
        "dataset": {**dataset.describe(), "identity": dataset.identity()},
        "ipc": ipc,
        "observer": observer.describe(),
        "teacher": "observer" if teacher is observer else teacher.describe(),
        "verifier": plan.verifier_arch.name,
        "evaluator": {"name": plan.evaluator.name, "options": options_to_dict(plan.evaluator_options)},
        "budget": budget.describe(),
        "budget_notes": budget.notes,
        "seeds": list(config.seeds),
        "distill_seed": config.distill_seed,
        "distill_seeds": config.distill_seed_list(),
        "device": str(device),
        **({"ranks": cluster.world_size, "backend": cluster.backend} if cluster.active else {}),
        "methods": methods,
        "versions": versions(),
    }
    results_path = out / config.results_name
    failed = [name for name, entry in methods.items() if "error" in entry]
    if failed and results_path.exists():  # keep the last good results; this run's go beside them
        results_path = results_path.with_name(f"{Path(config.results_name).stem}.failed.json")
        ui.info(f"{', '.join(failed)} failed: {out / config.results_name} (the last complete results) is kept; "
                f"this run's results are in {results_path}")
    if cluster.is_main:
        atomic_write_json(results_path, results)
        write_tables(out, results, stem=results_path.stem)
        write_step_outputs(out, results, stem=results_path.stem)
        from ddbench.html_report import write_report

        write_report(out, results, name="report.html" if results_path.stem == "results" else f"{results_path.stem}.html")
    ui.results_table(results)
    ui.info(f"results written to {results_path}")
    return results


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


def distill_and_evaluate(ctx: RunContext, name: str, distiller: Any) -> dict:
    """Every distillation of one method (one per distill seed), each evaluated on every seed;
    with several distill seeds the accuracy is over all (distill seed, evaluation seed) pairs."""
    entries = []
    for number, seed in enumerate(ctx.config.distill_seed_list()):
        distilled, record, key = distill_one(ctx, name, distiller, seed)
        if number == 0 and ctx.cluster.is_main:
            write_image_grid(ctx.store.folder / "grids" / f"{name}.png", distilled.images, distilled.labels,
                             ctx.dataset.normalization)
        entry = evaluate_one(ctx, distilled, record, key)
        if ctx.plan.hard_evaluator is not None:  # DD-Ranking's HLR needs the set's hard-label accuracy
            entry["hard_accuracy"] = entry["accuracy"] if ctx.plan.hard_evaluator is ctx.plan.evaluator else \
                evaluate_one(ctx, distilled, record, key, ctx.plan.hard_evaluator)["accuracy"]
        entries.append({**entry, "distill_seed": seed})
    return combine_distillations(entries)


def combine_distillations(entries: list[dict]) -> dict:
    """One method's entry from its distillations: with one, that entry; with several, accuracy
    over every (distill seed, evaluation seed) pair, the spread split into its two sources, the
    mean distillation time and the largest peak memory."""
    if len(entries) == 1:
        return entries[0]
    first = entries[0]
    pairs = [a for entry in entries for a in entry["accuracy"]["per_seed"]]
    means = [entry["accuracy"]["mean"] for entry in entries]
    combined = {
        **first,
        "accuracy": {**summarize(pairs), "over": f"{len(entries)} distillations x {len(first['accuracy']['per_seed'])} "
                                                  f"evaluation seeds"},
        "by_distill_seed": [{"distill_seed": e["distill_seed"], **e["accuracy"],
                             **({"hard_accuracy": e["hard_accuracy"]} if "hard_accuracy" in e else {})} for e in entries],
        "spread": {"between_distillations_std": summarize(means)["std"],
                   "within_distillation_std": round(statistics.fmean(e["accuracy"]["std"] for e in entries), 4)},
        "distill_seconds": round(statistics.fmean(e["distill_seconds"] for e in entries), 3),
        "distill_seconds_each": [e["distill_seconds"] for e in entries],
        "peak_memory_bytes": max(e["peak_memory_bytes"] for e in entries),
        "eval_seconds": round(sum(e["eval_seconds"] for e in entries), 3),
        "distill_seed": [e["distill_seed"] for e in entries],
    }
    if all("hard_accuracy" in e for e in entries):
        combined["hard_accuracy"] = summarize([a for e in entries for a in e["hard_accuracy"]["per_seed"]])
    return combined


def full_data_accuracy(ctx: RunContext) -> tuple[float, str]:
    """Hard-label accuracy (on the run's evaluation split) of the verifier architecture trained on
    the whole training split: the observer itself when the verifier is the observer's
    architecture, else one trained with the observer recipe and cached."""
    if ctx.plan.verifier_arch.name == ctx.observer.arch.name:
        return ctx.observer.test_accuracy, str(ctx.observer.checkpoint)
    config = ctx.config
    model = get_observer(ctx.dataset, ctx.plan.verifier_arch, ctx.device, seed=config.observer_seed,
                         recipe=default_recipe(ctx.dataset.name, epochs=config.observer_epochs),
                         cache=Path(config.cache_dir) if config.cache_dir else None, progress_factory=ctx.ui.progress)
    return model.test_accuracy, str(model.checkpoint)


def add_ddranking_metrics(ctx: RunContext, methods: dict[str, Any]) -> None:
    """DD-Ranking's HLR, IOR and score (:mod:`ddbench.ddranking_metrics`) for every method,
    against the run's random real images."""
    reference = methods.get("random", {})
    if "error" in reference or "accuracy" not in reference:
        ctx.ui.info("--compare-random: random real images failed, so IOR and the DD-Ranking score are not computed")
        return
    full, checkpoint = full_data_accuracy(ctx)
    ctx.ui.info(f"full-data hard-label accuracy ({ctx.plan.verifier_arch.name} on the whole training split): "
                f"{full:.2f}% ({checkpoint})")
    for entry in methods.values():
        if "error" in entry or "hard_accuracy" not in entry:
            continue
        entry["ddranking"] = {**ddranking_metrics(entry["accuracy"]["mean"], entry["hard_accuracy"]["mean"],
                                                  reference["accuracy"]["mean"], full),
                              "full_data_model": checkpoint}


def distill_one(ctx: RunContext, name: str, distiller: Any, seed: int | None = None) -> tuple[DistilledSet, dict, str]:
    """A method's distilled set: from the run folder if it finished before, else distilled now."""
    config, dataset = ctx.config, ctx.dataset
    seed = config.distill_seed if seed is None else seed
    options = ctx.plan.method_options[name]
    description = {
        "method": name, "plugin": registry.registered("distillers")[name].plugin.version,
        "options": options_to_dict(options), "dataset": dataset.describe(), "ipc": config.ipc,
        "seed": seed, "observer": ctx.observer_id, "data": training_identity(dataset),
    }
    if hasattr(distiller, "revision"):  # a method that changed its results says so
        description["revision"] = distiller.revision
    key = unit_key("distill", description)
    # named by method and key: the same method with other options in this folder gets its own file
    path = ctx.store.folder / "distilled" / f"{name}-{key.rsplit('-', 1)[-1]}.safetensors"
    done = ctx.store.finished(key)
    if done is not None and path.exists():
        try:
            distilled, _ = load_distilled(path)
        except ArtifactError as exc:
            raise ArtifactError(f"{exc}; delete {path} to distil {name} again") from None
        ctx.ui.info(f"{name}: distilled set from {path} (finished before)")
        return distilled, done, key
    ctx.cluster.barrier()  # the previous method's parts are cleared before any rank looks
    partials = PartialStore(ctx.store.folder / "partial" / key)
    finished_parts = partials.finished()
    ctx.cluster.barrier()  # every rank has looked at the folder before any writes this method's parts
    if finished_parts:
        ctx.ui.info(f"{name}: resuming, {len(finished_parts)} finished part(s) in {partials.folder}")
    cluster = ctx.cluster
    shardable = cluster.active and getattr(distiller, "shardable", False)
    task = DistillTask(
        dataset=dataset, observer=ctx.observer.model, observer_arch=ctx.observer.arch, ipc=config.ipc,
        device=ctx.device, seed=seed, options=options, partials=partials,
        cluster=cluster if shardable else None,
    )
    task.progress = ctx.ui.progress(f"distill {name}", distiller.total_work(task))

    def distill_and_save() -> tuple[DistilledSet, dict]:
        with measure_stage(ctx.device) as measure:
            distilled = distiller.distill(task)
        if not cluster.is_main:
            return distilled, {}
        check_distilled(distilled, name, dataset, config.ipc)
        # the options as given, with any values the method resolved itself (e.g. per-dataset defaults)
        distilled.options = {**options_to_dict(options), **(distilled.options or {})}
        # a resumed run: the units an earlier run finished count with the time they took then
        resumed = {"resumed_units": partials.resumed_units, "resumed_seconds": round(partials.resumed_seconds, 3)}
        seconds = measure.seconds + partials.resumed_seconds
        distilled.timings.setdefault("distill_seconds", seconds)
        if partials.resumed_units:
            distilled.timings.update(resumed, seconds_this_run=round(measure.seconds, 3))
        distilled.peak_memory_bytes = measure.peak_memory_bytes
        save_distilled(path, distilled, {
            "peak_memory_kind": measure.memory_kind, "dataset": dataset.name, "class_names": list(dataset.class_names),
            "image_shape": list(dataset.image_shape), "ipc": config.ipc, "seed": seed,
            "observer": ctx.observer.describe(), "versions": versions(), "data": training_identity(dataset),
            **({"ranks": cluster.world_size} if shardable else {}),
        })
        record = {"unit": "distill", "method": name, "file": str(path.relative_to(ctx.store.folder)),
                  "distill_seconds": round(seconds, 3), "peak_memory_bytes": measure.peak_memory_bytes,
                  "peak_memory_kind": measure.memory_kind, **({"ranks": cluster.world_size} if shardable else {}),
                  **(resumed if partials.resumed_units else {})}
        ctx.store.finish(key, record)
        return distilled, record

    if not cluster.active:
        distilled, record = distill_and_save()
    elif shardable:  # every rank distills its units; rank 0 merges, checks and saves
        distilled, record = main_first(cluster, distill_and_save, f"method {name!r}", everyone_first=True)
    else:  # a method that cannot split its work: rank 0 distills it, the others read its file
        distilled, record = main_first(cluster, distill_and_save if cluster.is_main else lambda: (None, {}), f"method {name!r}")
    if cluster.active and not cluster.is_main:
        distilled = distilled if shardable else load_distilled(path)[0]
        record = RunStore(ctx.store.folder, writer=False).finished(key) or {}
    if cluster.is_main:
        partials.clear()  # after every rank has read the parts it needed
    return distilled, record, key


def evaluate_one(ctx: RunContext, distilled: DistilledSet, record: dict, distill_key: str, evaluator: Any = None) -> dict:
    """Every evaluation seed of one distilled set; seeds that finished before are reused.
    ``evaluator``: another than the run's (its default options), e.g. hard labels for HLR."""
    config, plan = ctx.config, ctx.plan
    evaluator = evaluator or plan.evaluator
    evaluator_options = plan.evaluator_options if evaluator is plan.evaluator else evaluator.options_class()
    # everything that decides a seed's number: the set (through its key), the observer and the teacher (their
    # weights), the evaluator and its options, the budget, the verifier, the seed and the data (train and
    # evaluation images, held-out split)
    observer_id, teacher_id = ctx.observer_id, ctx.teacher_id
    contexts, keys = {}, {}
    for seed in config.seeds:
        contexts[seed] = EvalContext(
            dataset=ctx.dataset, verifier_arch=plan.verifier_arch, teacher=ctx.teacher.model, budget=config.budget,
            seed=seed, device=ctx.device, options=evaluator_options,
        )
        keys[seed] = unit_key("eval", {
            "distill": distill_key, "evaluator": evaluator.name, "options": options_to_dict(evaluator_options),
            "budget": config.budget.describe(), "verifier": plan.verifier_arch.name, "observer": observer_id,
            "teacher": teacher_id, "seed": seed, "data": ctx.dataset.identity(),
        })

    def evaluate_seed(seed: int, cluster: Cluster | None = None) -> dict:
        context = contexts[seed]
        context.cluster = cluster
        context.progress = ctx.ui.progress(f"evaluate {distilled.method} seed {seed}", evaluator.total_work(distilled, context))
        with measure_stage(ctx.device) as eval_measure:
            result = evaluator.evaluate(distilled, context)
        record_ = {"unit": "eval", "method": distilled.method, "seed": seed, "accuracy": result.accuracy,
                   "eval_seconds": round(eval_measure.seconds, 3)}
        if "per_step" in result.extras:  # e.g. the continual evaluator's accuracy after each step
            record_["per_step"] = list(result.extras["per_step"])
            record_["classes_seen"] = list(result.extras.get("classes_seen", []))
        return record_

    todo = [seed for seed in config.seeds if ctx.store.finished(keys[seed]) is None]
    if ctx.cluster.active and todo:
        # per-step results travel only with DDP evaluation (every rank holds each seed's record)
        mode = "ddp" if getattr(evaluator, "per_step", False) else config.dist_eval
        done = evaluate_distributed(ctx.cluster, todo, evaluate_seed, mode, distilled.method)
        for seed, record_ in done.items():
            ctx.store.finish(keys[seed], record_)
    else:
        for seed in todo:
            ctx.store.finish(keys[seed], evaluate_seed(seed))
    records = [ctx.store.finished(keys[seed]) for seed in config.seeds]
    per_seed = [record_["accuracy"] for record_ in records]
    eval_seconds = sum(record_["eval_seconds"] for record_ in records)
    context = contexts[config.seeds[-1]]
    extra = {}
    if all("per_step" in record_ for record_ in records):
        steps = [summarize(list(step)) for step in zip(*(record_["per_step"] for record_ in records))]
        extra["per_step"] = {"classes_seen": records[0].get("classes_seen", []),
                             "mean": [step["mean"] for step in steps], "std": [step["std"] for step in steps],
                             "per_seed": [record_["per_step"] for record_ in records]}
    return {
        "accuracy": summarize(per_seed),
        "distill_seconds": record["distill_seconds"],
        **({"distill_resumed": {"units": record["resumed_units"], "seconds_before": record["resumed_seconds"]}}
           if record.get("resumed_units") else {}),
        "peak_memory_bytes": record["peak_memory_bytes"],
        "peak_memory_kind": record["peak_memory_kind"],
        "eval_seconds": round(eval_seconds, 3),
        "images_per_class": distilled.images_per_class(ctx.dataset.num_classes)[0],
        "num_images": len(distilled.images),
        "tile_grid": distilled.tile_grid,
        "soft_labels": distilled.soft_labels,
        "labels": evaluator.describe(distilled, context),
        "options": distilled.options,
        **extra,
    }


def check_labels_fit(distilled: DistilledSet, dataset: Dataset, path: Path) -> None:
    labels = distilled.labels
    if isinstance(labels, torch.Tensor) and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes):
        raise RunError(f"{path}: labels run from {int(labels.min())} to {int(labels.max())}, {dataset.name} has classes "
                       f"0..{dataset.num_classes - 1}; pass the --dataset the set was distilled from, or re-export it")


def check_saved_sets_fit(config: RunConfig, dataset: Dataset) -> None:
    """Before any work: every saved set exists, can be read, fits the dataset's classes and shape."""
    for name in config.saved_sets:
        path = Path(name)
        if not path.exists():
            raise RunError(f"{path}: no such file or folder; check the path")
        try:
            if is_ddbench_set(path):
                distilled, meta = load_distilled(path)
                check_saved_fits(meta, dataset, path)
            else:
                distilled, _ = load_foreign_set(path, dataset, config.saved_pixels)
        except (ValueError, OSError) as exc:
            raise RunError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
        check_labels_fit(distilled, dataset, path)


def saved_set_name(path: Path, taken: dict[str, Any]) -> str:
    """The table name of a saved set: its file name without the suffix, unique in the run."""
    name, count = path.stem, 1
    while name in taken:
        count += 1
        name = f"{path.stem}-{count}"
    return name


def check_saved_fits(meta: dict[str, Any], dataset: Dataset, path: Path) -> None:
    """A saved set's class map and image shape (when it records them) must be this dataset's."""
    class_names = meta.get("class_names")
    if class_names is not None and list(class_names) != list(dataset.class_names):
        raise RunError(f"{path}: its class map {class_names} differs from {dataset.name}'s {list(dataset.class_names)}; "
                       f"pass the --dataset it was distilled from")
    shape = meta.get("image_shape")
    if shape is not None and list(shape) != list(dataset.image_shape):
        raise RunError(f"{path}: its images have shape {shape}, {dataset.name} gives {list(dataset.image_shape)}; "
                       f"set --image-size to match")


def is_ddbench_set(path: Path) -> bool:
    """A ``.safetensors`` file in ddbench's distilled-set format (else another tool's layout)."""
    if path.is_dir() or path.suffix != ".safetensors":
        return False
    return read_metadata(path).get("format") == DISTILLED_FORMAT


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents) in sorted order."""
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode() + b"\0" + file_digest(child).encode())
    return digest.hexdigest()


def check_saved_sets_unseen(paths: list[str], dataset: Dataset) -> None:
    """On a validation split, before any work: every saved set must record a training split
    that left this run's validation images out."""
    for path in map(Path, paths):
        meta = read_metadata(path) if path.exists() and is_ddbench_set(path) else None
        try:
            check_unseen(meta.get("data") if meta else None, dataset,
                         f"saved set {path}" + ("" if meta else " (another tool's layout)"), SAVED_SET_FIX)
        except ValueError as exc:
            raise RunError(str(exc)) from None


SAVED_SET_FIX = ("evaluate it on the test split (drop --validation), or distill it again with the same --validation "
                 "and --validation-seed (ddbench run records the split in every set it saves)")


def evaluate_saved(ctx: RunContext, path: Path) -> dict:
    """Evaluate a distilled set from disk as it is, with the run's evaluator, budget and seeds:
    ddbench's own format, or another tool's (:mod:`ddbench.set_formats`). Its training split was
    checked against a validation split before any work (:func:`check_saved_sets_unseen`)."""
    if not path.exists():
        raise RunError(f"{path}: no such file or folder")
    if is_ddbench_set(path):
        distilled, meta = load_distilled(path)
        check_saved_fits(meta, ctx.dataset, path)
        read = {"layout": "ddbench"}
        record = {"distill_seconds": float(distilled.timings.get("distill_seconds", 0.0)),
                  "peak_memory_bytes": distilled.peak_memory_bytes,
                  "peak_memory_kind": meta.get("peak_memory_kind", "as recorded")}
    else:
        distilled, read = load_foreign_set(path, ctx.dataset, ctx.config.saved_pixels)
        record = {"distill_seconds": None, "peak_memory_bytes": 0, "peak_memory_kind": "not recorded"}
    check_labels_fit(distilled, ctx.dataset, path)
    per_class = distilled.images_per_class(ctx.dataset.num_classes)
    check_distilled(distilled, f"saved set {path}", ctx.dataset, per_class[0])
    key = unit_key("saved", {"sha256": path_digest(path), "read": read})
    ctx.ui.info(f"{path}: {distilled.method}, {len(distilled.images)} images ({per_class[0]} per class), "
                f"read as {read['layout']}, evaluated as saved")
    return {**evaluate_one(ctx, distilled, record, key), "source": str(path), "method": distilled.method, "read": read}
