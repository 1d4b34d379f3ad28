"""Evaluation of distilled sets: one unit per (set, evaluator, seed), cached by its key; saved sets as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddbench.contracts import DistilledSet, EvalContext, options_to_dict
from ddbench.runtime.distributed import Cluster, evaluate_distributed
from ddbench.store.artifacts import load_distilled, unit_key
from ddbench.runtime.measure import measure_stage
from ddbench.interop.set_formats import load_foreign_set
from ddbench.pipeline.config import RunError
from ddbench.pipeline.context import RunContext, summarize
from ddbench.pipeline.preflight import check_distilled, check_saved_contents, check_saved_fits, is_ddbench_set, path_digest


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
        mode = "ddp" if evaluator.per_step else config.dist_eval
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


def saved_set_name(path: Path, taken: dict[str, Any]) -> str:
    """The table name of a saved set: its file name without the suffix, unique in the run."""
    name, count = path.stem, 1
    while name in taken:
        count += 1
        name = f"{path.stem}-{count}"
    return name


def evaluate_saved(ctx: RunContext, path: Path) -> dict:
    """Evaluate a distilled set from disk as it is, with the run's evaluator, budget and seeds:
    ddbench's own format, or another tool's (:mod:`ddbench.interop.set_formats`). Its training split was
    checked against a validation split before any work (:func:`check_saved_sets_unseen`)."""
    if not path.exists():
        raise RunError(f"{path}: no such file or folder")
    if is_ddbench_set(path):
        distilled, meta = load_distilled(path)
        check_saved_fits(meta, ctx.dataset, path)
        read = {"layout": "ddbench"}
        # to the millisecond, as the run that made it recorded it (the set keeps the full float)
        record = {"distill_seconds": round(float(distilled.timings.get("distill_seconds", 0.0)), 3),
                  "peak_memory_bytes": distilled.peak_memory_bytes,
                  "peak_memory_kind": meta.get("peak_memory_kind", "as recorded")}
    else:
        distilled, read = load_foreign_set(path, ctx.dataset, ctx.config.saved_pixels)
        record = {"distill_seconds": None, "peak_memory_bytes": 0, "peak_memory_kind": "not recorded"}
    check_saved_contents(distilled, ctx.dataset, path)
    per_class = distilled.images_per_class(ctx.dataset.num_classes)
    check_distilled(distilled, f"saved set {path}", ctx.dataset, per_class[0])
    key = unit_key("saved", {"sha256": path_digest(path), "read": read})
    ctx.ui.info(f"{path}: {distilled.method}, {len(distilled.images)} images ({per_class[0]} per class), "
                f"read as {read['layout']}, evaluated as saved")
    return {**evaluate_one(ctx, distilled, record, key), "source": str(path), "method": distilled.method, "read": read}
