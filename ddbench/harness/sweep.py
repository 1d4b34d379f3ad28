"""``ddbench run --ipc 1,10,50``: the same comparison at several IPCs, accuracy against IPC.

Each IPC is an ordinary run in ``<out>/ipc<K>/`` (its own results, tables, grids and
manifest, so a sweep resumes like a run). In ``<out>``: ``ipc-sweep.json`` (per method and
IPC: per_seed, mean, std), ``ipc-sweep.csv/.md/.tex`` (rows: method; columns: IPC),
``accuracy-vs-ipc.png`` (one line per method, std error bars) and ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ddbench.harness import HarnessManifest, accuracy_cell, cell_display, QuietTables, config_record, count, show
from ddbench.harness.tables import GridTable, best_in_groups

SCHEMA = "ddbench-ipc-sweep/1"


def default_out(base) -> Path:
    return Path("runs") / f"{base.dataset}-{base.arch}-ipc-sweep"


def sweep_configs(base, ipcs: list[int]) -> list[tuple[int, Any]]:
    root = Path(base.out) if base.out else default_out(base)
    return [(ipc, dataclasses.replace(base, ipc=ipc, out=str(root / f"ipc{ipc}"))) for ipc in ipcs]


def ipc_sweep(base, ipcs: list[int], ui) -> dict[str, Any]:
    """Run every IPC, then write the sweep's table and plot; returns ``ipc-sweep.json``'s content."""
    from ddbench.store.io import atomic_write_json
    from ddbench.reporting.plots import accuracy_vs_ipc
    from ddbench.reporting.exports import budget_text
    from ddbench.reporting.console import budget_table
    from ddbench.runner import RunError, plan_run, run

    if len(set(ipcs)) != len(ipcs):
        raise RunError(f"--ipc names a value twice: {','.join(map(str, ipcs))}")
    configs = sweep_configs(base, sorted(ipcs))
    for _, config in configs:
        plan_run(config)
    root = Path(base.out) if base.out else default_out(base)
    manifest = HarnessManifest(root, "ipc-sweep", base.command, {**config_record(base), "ipcs": sorted(ipcs)}, base.seeds)
    quiet = QuietTables(ui)
    points, timings, last = [], {}, None
    for ipc, config in configs:
        ui.info(f"IPC sweep: IPC {ipc}")
        started = time.perf_counter()
        results = run(config, quiet)
        last = results
        timings[f"ipc{ipc}"] = round(time.perf_counter() - started, 3)
        for method, entry in results["methods"].items():
            points.append(accuracy_cell(entry, method=method, ipc=ipc,
                                        results=str(Path(config.output_dir()) / config.results_name)))
    summary = {
        "schema": SCHEMA, "command": base.command, "dataset": last["dataset"], "methods": list(base.methods),
        "ipcs": sorted(ipcs), "observer": last["observer"], "verifier": last["verifier"], "evaluator": last["evaluator"],
        "budget": last["budget"], "seeds": list(base.seeds), "device": last["device"], "points": points,
        "budget_text": budget_text(last),
    }
    atomic_write_json(root / "ipc-sweep.json", summary)
    table = sweep_table(summary)
    table.write(root, "ipc-sweep")
    series = {m: [(p["ipc"], p["mean"], p["std"]) for p in points if p["method"] == m and "mean" in p] for m in base.methods}
    accuracy_vs_ipc(root / "accuracy-vs-ipc.png", series, title=plot_title(summary))
    show(ui, table.to_rich())
    show(ui, budget_table(last))
    manifest.finish(timings)
    ui.info(f"IPC sweep written to {root / 'ipc-sweep.json'} and {root / 'accuracy-vs-ipc.png'}")
    return summary


def plot_title(summary: dict[str, Any]) -> str:
    return (f"{summary['dataset']['name']}: accuracy vs IPC (observer {summary['observer']['architecture']}, "
            f"verifier {summary['verifier']}, {summary['evaluator']['name']}, {count(summary['budget']['epochs'], 'epoch')}, "
            f"{count(len(summary['seeds']), 'seed')})")


def sweep_table(summary: dict[str, Any]) -> GridTable:
    ipcs, methods = summary["ipcs"], summary["methods"]
    by_key = {(p["method"], p["ipc"]): p for p in summary["points"]}
    rows, values = [], {}
    for r, method in enumerate(methods):
        row = [method]
        for c, ipc in enumerate(ipcs):
            point = by_key.get((method, ipc))
            row.append(cell_display(point))
            if point is not None and "error" not in point:
                values[(r, 1 + c)] = point["mean"]
        rows.append(row)
    groups = [[(r, 1 + c) for r in range(len(methods))] for c in range(len(ipcs))]
    caption = (f"Accuracy (%) against images per class on {summary['dataset']['name']}: observer "
               f"{summary['observer']['architecture']}, verifier {summary['verifier']}, evaluator "
               f"{summary['evaluator']['name']}, budget {summary['budget']['preset']} ({count(summary['budget']['epochs'], 'epoch')}), "
               f"mean ± std over seeds {', '.join(map(str, summary['seeds']))}; {summary.get('budget_text', '')}")
    return GridTable(caption=caption, header=["method", *(f"IPC {ipc}" for ipc in ipcs)], rows=rows,
                     emphasis=best_in_groups(values, groups))
