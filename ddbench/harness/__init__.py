"""The comparison harness: grids of runs laid out as the paper's tables and figures.

- :mod:`ddbench.harness.crossarch`: every method distilled once per observer, evaluated on
  every verifier (the paper's Table 2).
- :mod:`ddbench.harness.bench`: time to distill 100 images at batch size 100 and peak memory,
  each (method, observer) in its own process (Table 3).
- :mod:`ddbench.harness.ablate`: the ablations a method declares (LIC: Table 7, M, N, layer).
- :mod:`ddbench.harness.sweep`: accuracy against IPC (``ddbench run --ipc 1,10,50``).

Every grid is a set of :func:`ddbench.runner.run` calls with :class:`ddbench.runner.RunConfig`
values, so each cell goes through the same data flow as ``ddbench run`` and finished units are
reused from the run folders' manifests. This module stays light (no torch) so that
``python -m ddbench.harness.bench`` workers and ``ddbench --help`` start fast.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any


def split_names(text: str | list[str] | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (a list is flattened the same way)."""
    if text is None:
        return []
    parts = text if isinstance(text, list) else [text]
    return [name.strip() for part in parts for name in str(part).split(",") if name.strip()]


def count(n: Any, noun: str) -> str:
    """``1 epoch``, ``20 epochs``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cell_text(mean: float, std: float) -> str:
    """The ``mean ± std`` text of one table cell (percent, two decimals)."""
    return f"{mean:.2f} ± {std:.2f}"


def show(ui: Any, renderable: Any) -> None:
    """Print a rich renderable on the UI's console (results go to stdout)."""
    console = getattr(ui, "console", None)
    if console is not None:
        console.print(renderable)


class QuietTables:
    """A UI proxy for the runs inside a grid: progress and messages pass through, the per-run
    result tables do not (the grid prints its own table, and the budget once)."""

    def __init__(self, ui: Any):
        self.ui = ui
        self.last_results: dict[str, Any] | None = None

    def info(self, message: str) -> None:
        self.ui.info(message)

    def progress(self, description: str, total: int):
        return self.ui.progress(description, total)

    def results_table(self, results: dict[str, Any]) -> None:
        self.last_results = results


class HarnessManifest:
    """The grid's own record in ``<out>/manifest.json`` (the run-folder manifest format, so the
    folder stays readable by :class:`ddbench.store.artifacts.RunStore`): command, config, versions,
    git revision, seeds, and the timings once the grid finishes."""

    def __init__(self, folder: Path, kind: str, command: str, config: dict[str, Any], seeds: list[int] | None = None):
        from ddbench.store.artifacts import RunStore, git_revision
        from ddbench.runner import versions

        self.store = RunStore(Path(folder))
        self.started = time.perf_counter()
        self.record: dict[str, Any] = {
            "harness": kind, "command": command, "config": config,
            "git_revision": git_revision(Path(__file__).parent), "versions": versions(),
            "host": platform.node(), "seeds": list(seeds or []), "status": "started",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.run_id = self.store.start(self.record)

    def finish(self, timings: dict[str, Any], **extra: Any) -> None:
        self.record.update(status="finished", timings={"total_seconds": round(time.perf_counter() - self.started, 3), **timings},
                           **extra)
        self.store.update_run(self.run_id, self.record)


def config_record(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values (the budget as its description)."""
    import dataclasses

    record = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if hasattr(value, "describe"):
            value = value.describe()
        elif dataclasses.is_dataclass(value):  # a config inside a config (a bench's run settings)
            value = config_record(value)
        record[item.name] = value
    return record


def accuracy_cell(entry: dict[str, Any], **where: Any) -> dict[str, Any]:
    """A method's entry of a results.json as one grid cell: where it sits, and its accuracy or error."""
    cell = dict(where)
    if "error" in entry:
        cell["error"] = entry["error"]
    else:
        cell.update(per_seed=entry["accuracy"]["per_seed"], mean=entry["accuracy"]["mean"],
                    std=entry["accuracy"]["std"], distill_seconds=entry["distill_seconds"])
    return cell


def cell_display(cell: dict[str, Any] | None) -> str:
    """How a grid cell reads in a table: empty when missing, ``failed``, or mean ± std."""
    if cell is None:
        return ""
    if "error" in cell:
        return "failed"
    return cell_text(cell["mean"], cell["std"])
