"""``ddbench cross-arch``: the paper's Table 2 (cross-architecture generalisation).

Every method distills once per observer and is evaluated on every verifier. Each observer has
its own run folder ``<out>/<observer>/``; the verifiers' runs share it, so the run-folder
manifest reuses each method's distillation across verifiers (the distillation key does not
include the verifier). Each run writes ``results-<verifier>.json`` (and its tables) there.

Outputs in ``<out>``: ``cross-arch.json`` (every cell: method, observer, verifier, per_seed,
mean, std), ``cross-arch.csv/.md/.tex`` laid out as Table 2 (rows: verifier x method; columns:
observers; cells ``mean ± std``), and ``manifest.json`` (command, config, versions, git
revision, seeds, timings).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ddbench.harness import HarnessManifest, accuracy_cell, cell_display, QuietTables, config_record, count, show
from ddbench.harness.tables import GridTable, best_in_groups

SCHEMA = "ddbench-cross-arch/1"


def default_out(base) -> Path:
    return Path("runs") / f"{base.dataset}-cross-arch-ipc{base.ipc}"


def cell_configs(base, observers: list[str], verifiers: list[str]) -> list[tuple[str, str, Any]]:
    """``(observer, verifier, RunConfig)`` for every cell, observer-major."""
    root = Path(base.out) if base.out else default_out(base)
    return [
        (observer, verifier, dataclasses.replace(base, arch=observer, verifier=verifier, out=str(root / observer),
                                                 results_name=f"results-{verifier}.json"))
        for observer in observers for verifier in verifiers
    ]


def check_grid(base, observers: list[str], verifiers: list[str]) -> None:
    """Every run of the grid resolves (methods, options, architectures, SRe2L's BatchNorm
    need...) before any work starts."""
    from ddbench.runner import RunError, plan_run

    if not observers:
        raise RunError("--observers must name at least one architecture")
    if not verifiers:
        raise RunError("--verifiers must name at least one architecture")
    for name, names in (("--observers", observers), ("--verifiers", verifiers)):
        if len(set(names)) != len(names):
            raise RunError(f"{name} names an architecture twice: {','.join(names)}")
    for _, _, config in cell_configs(base, observers, verifiers):
        plan_run(config)


def cross_arch(base, observers: list[str], verifiers: list[str], ui) -> dict[str, Any]:
    """Run the grid and write its table; returns what ``cross-arch.json`` holds."""
    from ddbench.store.io import atomic_write_json
    from ddbench.reporting.exports import budget_text
    from ddbench.reporting.console import budget_table
    from ddbench.runner import run

    check_grid(base, observers, verifiers)
    root = Path(base.out) if base.out else default_out(base)
    manifest = HarnessManifest(root, "cross-arch", base.command,
                               {**config_record(base), "observers": observers, "verifiers": verifiers}, base.seeds)
    quiet = QuietTables(ui)
    cells, runs, timings = [], [], {}
    for observer, verifier, config in cell_configs(base, observers, verifiers):
        ui.info(f"cross-arch: observer {observer}, verifier {verifier}")
        started = time.perf_counter()
        results = run(config, quiet)
        timings[f"{observer}/{verifier}"] = round(time.perf_counter() - started, 3)
        runs.append({"observer": observer, "verifier": verifier,
                     "results": str(Path(config.output_dir()) / config.results_name)})
        for method, entry in results["methods"].items():
            cells.append(accuracy_cell(entry, method=method, observer=observer, verifier=verifier))
    last = quiet.last_results or {}
    summary = {
        "schema": SCHEMA,
        "command": base.command,
        "dataset": last.get("dataset"),
        "ipc": base.ipc,
        "methods": list(base.methods),
        "observers": observers,
        "verifiers": verifiers,
        "evaluator": last.get("evaluator"),
        "budget": last.get("budget"),
        "seeds": list(base.seeds),
        "device": last.get("device"),
        "cells": cells,
        "runs": runs,
        "budget_text": budget_text(last, observer=False) if last else "",
    }
    atomic_write_json(root / "cross-arch.json", summary)
    table = grid_table(summary)
    table.write(root, "cross-arch")
    show(ui, table.to_rich())
    if last:
        show(ui, budget_table(last))
    manifest.finish(timings)
    ui.info(f"cross-arch table written to {root / 'cross-arch.md'} (and .csv, .tex, .json)")
    return summary


def grid_table(summary: dict[str, Any]) -> GridTable:
    """Table 2's layout: one row per (verifier, method), one column per observer; the best
    method of each (verifier, observer) pair in bold."""
    observers, verifiers, methods = summary["observers"], summary["verifiers"], summary["methods"]
    by_key = {(c["verifier"], c["method"], c["observer"]): c for c in summary["cells"]}
    rows, values = [], {}
    for verifier in verifiers:
        for method in methods:
            row = [verifier, method]
            for observer in observers:
                cell = by_key.get((verifier, method, observer))
                row.append(cell_display(cell))
                if cell is not None and "error" not in cell:
                    values[(len(rows), 2 + observers.index(observer))] = cell["mean"]
            rows.append(row)
    groups = [[(v * len(methods) + m, 2 + o) for m in range(len(methods))]
              for v in range(len(verifiers)) for o in range(len(observers))]
    dataset = (summary.get("dataset") or {}).get("name", "?")
    evaluator = (summary.get("evaluator") or {}).get("name", "?")
    budget = summary.get("budget") or {}
    caption = (f"Cross-architecture accuracy (%) on {dataset}, IPC {summary['ipc']}: rows verifier x method, "
               f"columns observer (the architecture that distilled); evaluator {evaluator}, budget "
               f"{budget.get('preset', '?')} ({count(budget.get('epochs', '?'), 'epoch')}), mean ± std over seeds "
               f"{', '.join(map(str, summary['seeds']))}; {summary.get('budget_text', '')}")
    return GridTable(caption=caption, header=["verifier", "method", *observers], rows=rows, group_first=True,
                     emphasis=best_in_groups(values, groups))
