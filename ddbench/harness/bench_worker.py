"""The ``ddbench bench`` worker: one (method, observer) measured in its own process
(``python -m ddbench.harness.bench_worker SPEC RESULT``), so its peak memory is its own."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ddbench.harness.bench import BENCH_IMAGES, _option_fields, images_per_class

def full_iterations(distiller: Any, options: Any, task: Any, given: bool) -> tuple[int, str]:
    """The method's own iteration count for a full run, and where it comes from: the options
    (given, or the options class's default), else what the method declares for this task
    (``default_iterations``: SRe2L's per-dataset table), else inferred from its progress units."""
    value = getattr(options, "iterations", None)
    if value is not None:
        return int(value), (f"--option {distiller.name}.iterations" if given else f"{type(options).__name__}.iterations default")
    declared = distiller.default_iterations(task)
    if declared is not None:
        return declared
    work = {it: distiller.total_work(dataclasses.replace(task, options=dataclasses.replace(options, iterations=it)))
            for it in (1, 2)}
    per = work[2] - work[1]
    if per <= 0:
        raise ValueError(f"cannot tell {distiller.name}'s full iteration count; give --option {distiller.name}.iterations=N")
    return 1 + (distiller.total_work(task) - work[1]) // per, f"{distiller.name} progress units"


def measure_method(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    import platform

    import torch

    from ddbench.host import registry
    from types import SimpleNamespace

    from ddbench.contracts import DistillTask
    from ddbench.runtime.measure import measure_stage, release_freed_memory, resolve_device
    from ddbench.runner import data_options
    from ddbench.observer import observer_for
    from ddbench.settings.options import apply_overrides

    settings = SimpleNamespace(**spec)
    dataset = registry.get_dataset(spec["dataset"]).load(data_options(settings))
    ipc = images_per_class(dataset.num_classes)
    smallest = min(len(pool) for pool in dataset.train_indices_by_class().values())
    if ipc > smallest:
        raise ValueError(f"{ipc} images per class needed, the smallest class of {dataset.name} has {smallest}")
    device = resolve_device(spec["device"])
    arch = registry.get_architecture(spec["arch"])
    observer = observer_for(settings, dataset, arch, device)
    distiller = registry.get_distiller(spec["method"])
    options = apply_overrides(distiller.options_class(), spec["options"], what=f"method {spec['method']!r}")
    has_iterations = "iterations" in _option_fields(type(options))

    def task_for(opts: Any) -> DistillTask:
        return DistillTask(dataset=dataset, observer=observer.model, observer_arch=arch, ipc=ipc, device=device,
                           seed=spec["seed"], options=opts)

    def with_iterations(count: int | None) -> Any:
        return dataclasses.replace(options, iterations=count) if has_iterations and count is not None else options

    def timed(count: int | None) -> dict[str, Any]:
        release_freed_memory(device)  # the warm-up's freed heap does not count against the next run
        with measure_stage(device) as measure:
            distilled = distiller.distill(task_for(with_iterations(count)))
        record = {"iterations": count, "seconds": round(measure.seconds, 4), "peak_memory_bytes": measure.peak_memory_bytes,
                  "peak_memory_kind": measure.memory_kind, "start_memory_bytes": measure.start_memory_bytes,
                  "added_memory_bytes": measure.added_memory_bytes, "images": len(distilled.images)}
        log(f"{count if count is not None else 'full'} iteration(s): {measure.seconds:.2f} s, "
            f"peak {measure.peak_memory_bytes / 2**20:.1f} MiB ({measure.memory_kind}), "
            f"{measure.added_memory_bytes / 2**20:.1f} MiB above the {measure.start_memory_bytes / 2**20:.1f} MiB held at the start")
        return record

    full, source = (full_iterations(distiller, options, task_for(options), spec["iterations_given"])
                    if has_iterations else (None, "no iterations option: the whole distillation is measured"))
    k = spec["bench_iterations"]
    warmup = timed(1 if has_iterations else None)
    projected = bool(has_iterations and full > 2 * k)
    if projected:
        runs = [timed(k), timed(2 * k)]
        per_iteration = (runs[1]["seconds"] - runs[0]["seconds"]) / k
        if per_iteration > 0:
            fixed, fit = max(0.0, runs[0]["seconds"] - per_iteration * k), "difference of the K and 2K runs"
        else:  # timing noise larger than K iterations: fall back to the plain mean, no fixed part
            per_iteration, fixed = runs[1]["seconds"] / (2 * k), 0.0
            fit = "mean of the 2K run (the K/2K difference was not positive: timing noise)"
        full_seconds = fixed + per_iteration * full
    else:
        runs = [timed(full if has_iterations else None)]
        full_seconds = runs[0]["seconds"]
        per_iteration = full_seconds / full if has_iterations and full else None
        fixed, fit = None, "measured full run" + (" (per iteration includes the fixed cost)" if has_iterations else "")
    images = runs[0]["images"]
    peak = max(runs, key=lambda r: r["peak_memory_bytes"])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "method": spec["method"], "arch": spec["arch"], "dataset": dataset.name, "image_size": dataset.image_size,
        "num_classes": dataset.num_classes, "images": images, "ipc": ipc, "batch_size": getattr(options, "batch_size", None),
        "options": dataclasses.asdict(options), "device": str(device), "device_name": device_name,
        "torch_threads": torch.get_num_threads(), "warmup": warmup, "runs": runs,
        "measured_iterations": [r["iterations"] for r in runs] if has_iterations else [],
        "seconds_per_iteration": None if per_iteration is None else round(per_iteration, 5),
        "fixed_seconds": None if fixed is None else round(fixed, 4), "fit": fit,
        "full_iterations": full, "full_iterations_source": source,
        "full_seconds": round(full_seconds, 3), "seconds_per_100_images": round(full_seconds * BENCH_IMAGES / images, 3),
        "projected": projected, "time_label": "projected" if projected else "measured",
        "peak_memory_bytes": peak["peak_memory_bytes"], "peak_memory_kind": peak["peak_memory_kind"],
        "start_memory_bytes": peak["start_memory_bytes"], "added_memory_bytes": max(r["added_memory_bytes"] for r in runs),
        "observer": observer.describe(),
    }


def worker_main(argv: list[str] | None = None) -> int:
    from ddbench.runtime.host_allocator import keep_freed_host_memory
    from ddbench.store.io import atomic_write_json

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m ddbench.harness.bench SPEC.json RESULT.json (started by 'ddbench bench')", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    keep_freed_host_memory()  # as the command line does, so the times are ddbench's
    started = time.perf_counter()
    result = measure_method(spec, log)
    result["worker_seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_json(Path(argv[1]), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
