"""``ddbench run`` and ``ddbench eval`` end to end: config -> preflight -> observer -> distil -> evaluate -> results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ddbench.contracts import options_to_dict
from ddbench.runtime.distributed import check_same_file, check_shared_folder, init_from_environment, main_first
from ddbench.store.artifacts import RunStore, git_revision
from ddbench.reporting.exports import write_step_outputs, write_tables
from ddbench.store.io import atomic_write_json, atomic_write_text
from ddbench.runtime.measure import resolve_device
from ddbench.observer import load_teacher, observer_for
from ddbench.reporting.console import SilentUI, split_label
from ddbench.pipeline.config import RESULTS_SCHEMA, RunConfig, check_devices, plan_run, resolve_for_data
from ddbench.pipeline.context import RunContext, versions
from ddbench.pipeline.distil import add_ddranking_metrics, distill_and_evaluate
from ddbench.pipeline.evaluate import evaluate_saved, saved_set_name
from ddbench.pipeline.preflight import (check_saved_sets_fit, check_saved_sets_unseen, check_writable, decode_ahead,
                                        fingerprint_ahead, load_dataset)


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
    resolve_for_data(plan, dataset, config.ipc)
    fingerprint_ahead(dataset, ui)
    check_saved_sets_unseen(config.saved_sets, dataset)
    check_saved_sets_fit(config, dataset)
    decode_ahead(dataset, ui)
    if cluster.active:
        check_shared_folder(cluster, out)
    store = RunStore(out, writer=cluster.is_main)
    split = split_label(dataset.evaluation_split)  # what the accuracies below are on
    ui.info(f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.test)} {split} images, "
            f"shape {dataset.image_shape}, {dataset.num_classes} classes; device {device}"
            + (f"; {cluster.world_size} ranks ({cluster.backend})" if cluster.active else ""))
    teacher = None
    if config.teacher_checkpoint:  # before the observer trains: a bad teacher file must not cost that time
        teacher = load_teacher(Path(config.teacher_checkpoint), dataset, device)
        ui.info(f"teacher for soft labels: {teacher.arch.name}, {split} accuracy {teacher.test_accuracy:.2f}% ({teacher.checkpoint})")
    # rank 0 trains the observer if it must; the others then load it from the cache
    observer = main_first(cluster, lambda: observer_for(config, dataset, plan.observer_arch, device, budget=budget,
                                                        progress_factory=ui.progress), "observer")
    if cluster.active:
        check_same_file(cluster, observer.checkpoint, "the observer checkpoint", "--cache-dir")
    ui.info(f"observer {observer.arch.name}: {split} accuracy {observer.test_accuracy:.2f}% "
            f"({'trained now' if observer.trained_now else 'loaded'} from {observer.checkpoint})")
    teacher = teacher or observer
    if cluster.is_main:  # the run is under way: its folder gets the resolved config
        from ddbench.settings.config_file import resolved_config

        atomic_write_text(out / "config.toml", resolved_config(config, as_given, plan))
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
        from ddbench.reporting.html import write_report

        advance = ui.progress("write results, tables, image grids and report", 4)  # a line in logs, not silence
        atomic_write_json(results_path, results)
        advance(1)
        write_tables(out, results, stem=results_path.stem)
        advance(1)
        write_step_outputs(out, results, stem=results_path.stem)
        advance(1)
        write_report(out, results, name="report.html" if results_path.stem == "results" else f"{results_path.stem}.html")
        advance(1)
    ui.results_table(results)
    ui.info(f"results written to {results_path}")
    return results
