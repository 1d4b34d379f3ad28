"""Distillation: each method once per distill seed (resumable units), then evaluated; DD-Ranking's metrics."""

from __future__ import annotations

import statistics
from typing import Any

from ddbench.host import registry
from ddbench.contracts import DistilledSet, DistillTask, options_to_dict
from ddbench.interop.ddranking_metrics import ddranking_metrics
from ddbench.runtime.distributed import main_first
from ddbench.store.artifacts import RunStore, load_distilled, save_distilled, unit_key
from ddbench.reporting.exports import write_image_grid
from ddbench.store.io import ArtifactError
from ddbench.runtime.measure import measure_stage
from ddbench.observer import observer_for
from ddbench.store.partials import PartialStore
from ddbench.pipeline.context import RunContext, summarize, training_identity, versions
from ddbench.pipeline.evaluate import evaluate_one
from ddbench.pipeline.preflight import check_distilled


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
    model = observer_for(ctx.config, ctx.dataset, ctx.plan.verifier_arch, ctx.device, budget=ctx.config.budget,
                         use_checkpoint=False, progress_factory=ctx.ui.progress)
    return model.test_accuracy, str(model.checkpoint)


def add_ddranking_metrics(ctx: RunContext, methods: dict[str, Any]) -> None:
    """DD-Ranking's HLR, IOR and score (:mod:`ddbench.interop.ddranking_metrics`) for every method,
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
    if distiller.revision:  # a method that changed its results says so (0: never changed, keys as before)
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
    partials = PartialStore(ctx.store.folder / "partial" / key)  # lists what a stopped run left (``earlier``)
    ctx.cluster.barrier()  # every rank has looked at the folder before any writes this method's parts
    if partials.earlier:
        ctx.ui.info(f"{name}: resuming, {len(partials.earlier)} part(s) a stopped run saved in {partials.folder}")
    cluster = ctx.cluster
    shardable = cluster.active and distiller.shardable
    task = DistillTask(
        dataset=dataset, observer=ctx.observer.model, observer_arch=ctx.observer.arch, ipc=config.ipc,
        device=ctx.device, seed=seed, options=options, partials=partials,
        cluster=cluster if shardable else None,
    )
    task.progress = ctx.ui.progress(f"distill {name}", distiller.total_work(task))
    task.resumed_progress = getattr(task.progress, "resumed", None)  # a log's estimate leaves a stopped run's work out

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
