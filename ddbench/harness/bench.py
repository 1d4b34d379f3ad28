"""``ddbench bench``: time to distill 100 images at batch size 100 and peak memory (the LIC paper's
Table 3 setting), beside the figures each method declares from its paper (``bench_reference``).

Each (method, observer architecture) is measured in its own process
(``python -m ddbench.harness.bench_worker SPEC RESULT``), so the peak memory is that method's alone:
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak resident set on the CPU
(reset at the start of each timed run, see :mod:`ddbench.runtime.measure`). The observers are trained
(or loaded from the cache) by the parent first; a worker only loads its observer.

A worker distills exactly ``100 // classes`` images per class (100 images for 10 classes; at
least one per class, the time then scaled to 100 images) with the method's ``batch_size``
set to 100. Methods with an ``iterations`` option run one warm-up distillation of one
iteration, then two timed distillations of K and 2K iterations (``--bench-iterations K``):
their difference gives the seconds per iteration, the rest the fixed cost (selection,
initialisation), and the full run at the method's own iteration count (its options' default,
or the iterations its config resolves for the dataset, e.g. SRe2L's per-dataset table) is
*projected* as ``fixed + per-iteration x full``, labelled so. Where the full count is at most
2K the full run is simply measured. Methods without iterations are measured whole after a
warm-up. Outputs in ``<out>``: ``bench.json``, ``bench.csv/.md/.tex``, ``manifest.json`` and
the workers' specs and results under ``workers/``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddbench.harness import HarnessManifest, config_record, show

if TYPE_CHECKING:  # pragma: no cover
    from ddbench.pipeline.config import RunConfig

SCHEMA = "ddbench-bench/1"
BENCH_IMAGES = 100
@dataclass
class BenchConfig:
    """``ddbench bench``: the run settings it shares with every command (``run``: methods, data,
    observer seed/epochs/checkpoint, method options, distillation seed, cache, device, output,
    command) and its own (observer architectures, K, batch size)."""

    run: RunConfig
    archs: list[str] = field(default_factory=lambda: ["convnet3-bn"])
    bench_iterations: int = 5
    batch_size: int = BENCH_IMAGES

    def output_dir(self) -> Path:
        return Path(self.run.out) if self.run.out else Path("runs") / f"{self.run.dataset}-bench"


def images_per_class(num_classes: int) -> int:
    """IPC for a 100-image distillation: ``100 // classes``, at least 1."""
    return max(1, BENCH_IMAGES // num_classes)


def paper_reference(method: str, arch: str) -> dict[str, Any] | None:
    """The figure the method declares from its paper for this observer (``bench_reference``), or None."""

    from ddbench.host import registry

    figure = registry.get_distiller(method).bench_reference(arch)
    if figure is None:
        return None
    return {"label": figure.source, "seconds": figure.seconds, "peak_memory_gb": figure.peak_memory_gb,
            "note": (figure.note + "; " if figure.note else "") + "for reference only, not comparable hardware or data",
            **figure.extra}


def _option_fields(options_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(options_class)}


def method_assignments(config: BenchConfig, method: str, options_class: type) -> list[str]:
    """``batch_size`` = the bench's batch size (where the method has one), then the user's options."""
    given = list(config.run.method_options.get(method, []))
    preset = [f"batch_size={config.batch_size}"] if "batch_size" in _option_fields(options_class) else []
    return preset + given


def plan_bench(config: BenchConfig) -> dict[str, list[str]]:
    """Check every name and option before any work; returns each method's option assignments."""
    from ddbench.host import registry
    from ddbench.settings.options import apply_overrides
    from ddbench.runner import RunError, check_method_observer

    if not config.run.methods:
        raise RunError("--methods must name at least one method")
    if not config.archs:
        raise RunError("--arch must name at least one architecture")
    if len(set(config.run.methods)) != len(config.run.methods) or len(set(config.archs)) != len(config.archs):
        raise RunError("a method or architecture is named twice")
    if config.bench_iterations < 1:
        raise RunError(f"--bench-iterations must be at least 1, got {config.bench_iterations}")
    if config.batch_size < 1:
        raise RunError(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.run.observer_checkpoint and len(config.archs) > 1:
        raise RunError("--observer gives one checkpoint; name one --arch with it")
    unknown = sorted(set(config.run.method_options) - set(config.run.methods))
    if unknown:
        raise RunError(f"--option given for {', '.join(unknown)}, which this bench does not use")
    registry.get_dataset(config.run.dataset)
    assignments = {}
    for method in config.run.methods:
        distiller = registry.get_distiller(method)
        assignments[method] = method_assignments(config, method, distiller.options_class)
        apply_overrides(distiller.options_class(), assignments[method], what=f"method {method!r}")
        for arch_name in config.archs:
            check_method_observer(method, distiller, registry.get_architecture(arch_name))
    return assignments


def bench(config: BenchConfig, ui) -> dict[str, Any]:
    """Measure every (method, architecture) in its own process; write the table."""
    import torch

    from ddbench.host import registry
    from ddbench.store.io import atomic_write_json
    from ddbench.runner import data_options
    from ddbench.runtime.measure import resolve_device
    from ddbench.observer import observer_for
    from ddbench.settings.observer_fields import observer_settings

    assignments = plan_bench(config)
    dataset = registry.get_dataset(config.run.dataset).load(data_options(config.run))
    device = resolve_device(config.run.device)
    root = config.output_dir()
    manifest = HarnessManifest(root, "bench", config.run.command, config_record(config), [config.run.distill_seed])
    ui.info(f"bench on {dataset.name} at {dataset.image_size} px ({dataset.num_classes} classes, "
            f"{images_per_class(dataset.num_classes)} image(s) per class), device {device}")
    for arch_name in config.archs:  # train or load once here, so a worker only loads
        observer = observer_for(config.run, dataset, registry.get_architecture(arch_name), device,
                                progress_factory=ui.progress)
        ui.info(f"observer {arch_name}: {observer.test_accuracy:.2f}% test ({observer.checkpoint})")
        del observer
    if device.type == "cuda":
        torch.cuda.empty_cache()

    rows, timings = [], {}
    for arch_name in config.archs:
        for method in config.run.methods:
            spec = {
                "method": method, "arch": arch_name, "dataset": config.run.dataset, "data_root": config.run.data_root,
                "download": False, "image_size": config.run.image_size,
                "data_memory_gib": config.run.data_memory_gib, "data_workers": config.run.data_workers, "options": assignments[method],
                "iterations_given": any(a.split("=", 1)[0].strip() == "iterations" for a in config.run.method_options.get(method, [])),
                "bench_iterations": config.bench_iterations, "seed": config.run.distill_seed,
                **observer_settings(config.run), "device": str(device),
            }
            started = time.perf_counter()
            row = run_worker(root / "workers", spec, ui)
            timings[f"{method}/{arch_name}"] = round(time.perf_counter() - started, 3)
            row["paper"] = paper_reference(method, arch_name)
            rows.append(row)
    summary = {
        "schema": SCHEMA, "command": config.run.command, "dataset": dataset.describe(), "device": str(device),
        "images": BENCH_IMAGES, "batch_size": config.batch_size, "bench_iterations": config.bench_iterations,
        "method": ("each (method, observer) in its own process; one warm-up distillation of 1 iteration, then timed "
                   "distillations of K and 2K iterations: seconds per iteration = their difference / K, fixed cost = the "
                   "rest; projected full time = fixed + per iteration x full iterations"),
        "rows": rows,
    }
    atomic_write_json(root / "bench.json", summary)
    write_outputs(root, summary)
    show(ui, bench_table(summary).to_rich())
    manifest.finish(timings)
    ui.info(f"bench written to {root / 'bench.json'} (and .csv, .md, .tex)")
    return summary


def run_worker(folder: Path, spec: dict[str, Any], ui) -> dict[str, Any]:
    """One measurement in a fresh ``python -m ddbench.harness.bench_worker`` process; its log lines are
    relayed to the UI. A failed worker gives a row with the error."""
    from ddbench.store.io import atomic_write_json

    name = f"{spec['method']}-{spec['arch']}"
    spec_path, result_path = folder / f"{name}.spec.json", folder / f"{name}.result.json"
    atomic_write_json(spec_path, spec)
    result_path.unlink(missing_ok=True)
    ui.info(f"bench {spec['method']} on {spec['arch']}: own process")
    tail: list[str] = []
    process = subprocess.Popen([sys.executable, "-m", "ddbench.harness.bench_worker", str(spec_path), str(result_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        ui.info(f"  [{name}] {line}")
    code = process.wait()
    if code != 0 or not result_path.exists():
        return {"method": spec["method"], "arch": spec["arch"],
                "error": f"worker exited with {code}: " + " | ".join(t for t in tail[-5:] if t)}
    return json.loads(result_path.read_text())


# ---------------------------------------------------------------------------------------------
# The worker: runs in its own process.


# ---------------------------------------------------------------------------------------------
# The table.


def _gib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


COLUMNS = ("method", "arch", "device", "images", "batch_size", "measured_iterations", "seconds_per_iteration",
           "fixed_seconds", "full_iterations", "full_iterations_source", "seconds_per_100_images", "time_label",
           "peak_memory_bytes", "peak_memory_kind", "start_memory_bytes", "added_memory_bytes", "reference_source",
           "reference_seconds", "reference_peak_memory_gb", "error")


def bench_table(summary: dict[str, Any]):
    from ddbench.harness.tables import GridTable

    rows = []
    for row in summary["rows"]:
        paper = row.get("paper") or {}
        paper_cells = [f"{paper['seconds']:.2f} s" if paper else "", f"{paper['peak_memory_gb']:.2f} GB" if paper else ""]
        if "error" in row:
            rows.append([row["method"], row["arch"], "", "", "", "", "failed: " + row["error"][:80], "", "", *paper_cells])
            continue
        per_iteration = "" if row["seconds_per_iteration"] is None else f"{row['seconds_per_iteration']:.4f} s"
        rows.append([
            row["method"], row["arch"], str(row["images"]),
            ", ".join(map(str, row["measured_iterations"])) or "-",
            "-" if row["full_iterations"] is None else str(row["full_iterations"]),
            per_iteration,
            f"{row['seconds_per_100_images']:.2f} s ({row['time_label']})",
            f"{_gib(row['peak_memory_bytes'])} ({row['peak_memory_kind']})",
            _gib(row["added_memory_bytes"]) if row.get("added_memory_bytes") is not None else "",
            *paper_cells,
        ])
    devices = sorted({row.get("device_name") or row.get("device", "") for row in summary["rows"] if "error" not in row})
    caption = (f"Distillation cost on {summary['dataset']['name']} at {summary['dataset']['image_shape'][-1]} px: time per "
               f"{summary['images']} images at batch size {summary['batch_size']} and peak memory, on {', '.join(devices) or '?'}")
    notes = [
        "projected = fixed cost + seconds per iteration x full iterations, from timed runs of K and 2K iterations after a "
        "1-iteration warm-up; measured = the full distillation timed; each (method, observer) in its own process",
        "full iterations: " + "; ".join(f"{r['method']}: {r['full_iterations_source']}" for r in summary["rows"]
                                        if "error" not in r and r.get("full_iterations") is not None),
        *sorted({f"{r['paper']['label']}: {r['paper']['note']}" for r in summary["rows"] if r.get("paper")}),
    ]
    return GridTable(caption=caption, header=["method", "observer", "images", "measured iterations", "full iterations",
                                              "s / iteration", f"time per {summary['images']} images", "peak memory",
                                              "added by the stage", "paper time", "paper memory"],
                     rows=rows, notes=notes)


def write_outputs(root: Path, summary: dict[str, Any]) -> None:
    """``bench.md`` and ``bench.tex`` as displayed; ``bench.csv`` with the raw numbers."""
    from ddbench.reporting.exports import to_csv
    from ddbench.store.io import atomic_write_text

    table = bench_table(summary)
    atomic_write_text(root / "bench.md", table.to_markdown())
    atomic_write_text(root / "bench.tex", table.to_latex())
    flat = []
    for row in summary["rows"]:
        paper = row.get("paper") or {}
        flat.append({**row, "measured_iterations": " ".join(map(str, row.get("measured_iterations", []))),
                     "reference_source": paper.get("label", ""), "reference_seconds": paper.get("seconds", ""),
                     "reference_peak_memory_gb": paper.get("peak_memory_gb", "")})
    atomic_write_text(root / "bench.csv", to_csv(flat, COLUMNS))

