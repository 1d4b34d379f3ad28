"""What a person sees: rich progress bars for long loops and the results table with the
whole budget beside the numbers."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


def format_accuracy(accuracy: dict[str, Any]) -> str:
    return f"{accuracy['mean']:.2f} ± {accuracy['std']:.2f}"


LOG_WIDTH = 250  # columns of tables printed to a file or pipe


class LogProgress:
    """Progress for a log file (SLURM, nohup, ``> log 2>&1``): plain lines, no redrawing. A line
    when a stage starts and when it ends, and every ``every`` seconds one line per unfinished
    stage (step/total, elapsed, ETA), printed by a heartbeat thread so a long step still talks."""

    def __init__(self, stream: TextIO, every: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.every = every
        self.clock = clock
        self.tasks: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = clock()

    def __enter__(self) -> "LogProgress":
        if self.every > 0:
            self._thread = threading.Thread(target=self._heartbeat, name="ddbench-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every):
            self.report()

    def print(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self.stream.write(f"[{stamp}] {message}\n")
            self.stream.flush()

    def line(self, task: dict[str, Any]) -> str:
        elapsed = self.clock() - task["start"]
        done, total = task["done"], task["total"]
        worked = done - task["resumed"]  # the rate counts the work done in this run, not what a stopped run left
        eta = f", ETA {_duration(elapsed / worked * (total - done))}" if 0 < worked and done < total else ""
        return f"{task['description']}: {done}/{total} ({100.0 * done / total:.0f}%), elapsed {_duration(elapsed)}{eta}"

    def report(self) -> None:
        with self._lock:
            running = [dict(task) for task in self.tasks.values() if task["done"] < task["total"]]
        for task in running:
            self.print(self.line(task))

    def add_task(self, description: str, total: int) -> Callable[[int], None]:
        with self._lock:
            key = len(self.tasks)
            task = self.tasks[key] = {"description": description, "total": max(1, total), "done": 0, "resumed": 0,
                                      "start": self.clock()}
        self.print(f"{description}: started ({task['total']} steps)")

        def advance(n: int, resumed: bool = False) -> None:
            with self._lock:
                before = task["done"]
                task["done"] = min(task["total"], before + n)
                if resumed:
                    task["resumed"] += task["done"] - before
                finished = before < task["total"] <= task["done"]
            if finished:
                self.print(f"{description}: done in {_duration(self.clock() - task['start'])}")

        advance.resumed = lambda n: advance(n, resumed=True)  # type: ignore[attr-defined]
        return advance


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ConsoleUI:
    """Progress bars and tables on a rich console (stderr for progress, stdout for results).

    When stderr is not a terminal (a log file), progress is :class:`LogProgress` lines instead of
    bars, which a file would only receive at exit."""

    def __init__(self, console: Console | None = None, quiet: bool = False, every: float = 30.0,
                 log_stream: TextIO | None = None):
        # not a terminal (a log, a pipe): tables wide enough never to wrap a header or cut a path
        self.console = console or (Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH))
        self.quiet = quiet
        self.every = every
        self._progress: Progress | None = None
        self._log: LogProgress | None = None
        stream = log_stream if log_stream is not None else sys.stderr
        self._log_stream = stream if log_stream is not None or not stream.isatty() else None

    def __enter__(self) -> "ConsoleUI":
        if self.quiet:
            return self
        if self._log_stream is not None:
            self._log = LogProgress(self._log_stream, self.every).__enter__()
            return self
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False, disable=self.quiet,
        )
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._log is not None:
            self._log.__exit__(*exc)
            self._log = None
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def info(self, message: str) -> None:
        if self._log is not None:
            self._log.print(message)
        elif self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            self.console.print(message, markup=False, highlight=False)

    def progress(self, description: str, total: int) -> Callable[[int], None]:
        if self._log is not None:
            return self._log.add_task(description, total)
        if self._progress is None:
            return lambda n: None
        task = self._progress.add_task(description, total=max(1, total))
        progress = self._progress

        def advance(n: int) -> None:
            progress.advance(task, n)

        return advance

    def results_table(self, results: dict[str, Any]) -> None:
        self.console.print(results_table(results))
        steps = step_table(results)
        if steps is not None:
            self.console.print(steps)
        self.console.print(budget_table(results))


def split_label(evaluated_on: str) -> str:
    """What accuracies are on, in one word: ``test``, or ``validation`` for a split carved from
    train (``evaluated_on`` / ``Dataset.evaluation_split`` spell out how it was carved)."""
    return "test" if evaluated_on == "test" else "validation"


def results_table(results: dict[str, Any]) -> Table:
    dataset = results["dataset"]
    observer = results["observer"]
    evaluated_on = dataset.get("evaluated_on", "test")
    split = split_label(evaluated_on)
    title = (
        f"{dataset['name']} · IPC {results['ipc']} · observer {observer['architecture']} "
        f"({observer['test_accuracy']:.2f}% {split}) · verifier {results['verifier']} · evaluator {results['evaluator']['name']}"
    )
    if evaluated_on != "test":
        title += f" · accuracy on the {evaluated_on}"
    distill_seeds = results.get("distill_seeds", [results.get("distill_seed", 0)])
    pairs = len(distill_seeds) > 1
    ranking = any("ddranking" in entry for entry in results["methods"].values())
    table = Table(title=title)
    table.add_column("method")
    table.add_column(f"{split} accuracy % (mean ± std{' over distill x eval seeds' if pairs else ''})", justify="right")
    table.add_column("per seed" if not pairs else "per distill seed (mean)", justify="right")
    if pairs:
        table.add_column("std between / within distillations", justify="right")
    table.add_column("distill time" + (" (mean)" if pairs else ""), justify="right")
    table.add_column("peak memory", justify="right")
    table.add_column("labels")
    table.add_column("label storage", justify="right")
    if ranking:
        for column in ("HLR", "IOR", "DD-Ranking score"):
            table.add_column(column, justify="right")
    width = 7 + pairs + 3 * ranking
    for name, entry in results["methods"].items():
        if "error" in entry:
            table.add_row(name, "[red]failed[/red]", entry["error"], *[""] * (width - 3))
            continue
        labels = entry.get("labels", {})
        if pairs and "by_distill_seed" in entry:
            per_seed = [", ".join(f"{d['mean']:.2f}" for d in entry["by_distill_seed"]),
                        f"{entry['spread']['between_distillations_std']:.2f} / {entry['spread']['within_distillation_std']:.2f}"]
        else:
            per_seed = [", ".join(f"{a:.2f}" for a in entry["accuracy"]["per_seed"])] + ([""] if pairs else [])
        scores = []
        if ranking:
            figures = entry.get("ddranking")
            scores = [f"{figures['hlr']:+.2f}", f"{figures['ior']:+.2f}", f"{figures['score']:.3f}"] if figures else ["", "", ""]
        table.add_row(
            name,
            format_accuracy(entry["accuracy"]),
            *per_seed,
            (f"{entry['distill_seconds']:.2f} s" + (f" (resumed: {entry['distill_resumed']['units']} unit(s) from an earlier run)"
                                                  if entry.get("distill_resumed") else ""))
            if entry.get("distill_seconds") is not None else "not recorded",
            f"{format_bytes(entry['peak_memory_bytes'])} ({entry['peak_memory_kind']})" if entry.get("peak_memory_bytes") else "not recorded",
            str(labels.get("labels", entry["soft_labels"])),
            format_bytes(labels.get("label_storage_bytes", 0)),
            *scores,
        )
    return table


def step_table(results: dict[str, Any]) -> Table | None:
    """Accuracy after each class-incremental step, when the evaluator reports steps."""
    from ddbench.reporting.exports import step_rows

    columns, rows = step_rows(results)
    if not rows:
        return None
    table = Table(title="accuracy % on the classes seen so far, after each step (mean ± std over seeds)")
    table.add_column("method")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["method"], *(row.get(c, "") for c in columns))
    return table


def budget_table(results: dict[str, Any]) -> Table:
    budget = results["budget"]
    table = Table(title=f"budget: preset {budget['preset']} (v{budget['version']})", show_header=True)
    table.add_column("setting")
    table.add_column("value")
    for key, value in budget.items():
        if key in ("preset", "version"):
            continue
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    for key, value in results["evaluator"]["options"].items():
        table.add_row(f"{results['evaluator']['name']}.{key}", str(value))
    table.add_row("seeds", ", ".join(map(str, results["seeds"])))
    distill_seeds = results.get("distill_seeds", [results.get("distill_seed", 0)])
    table.add_row("distill seeds", ", ".join(map(str, distill_seeds))
                  + (" (accuracy: mean ± std over every distill seed x eval seed pair)" if len(distill_seeds) > 1 else ""))
    table.add_row("accuracy on", results["dataset"].get("evaluated_on", "test"))
    ranking = next((e["ddranking"] for e in results["methods"].values() if "ddranking" in e), None)
    if ranking:
        table.add_row("DD-Ranking", f"{ranking['formula']}; full-data hard-label accuracy {ranking['full_hard_accuracy']:.2f}%; "
                                    f"random real images {ranking['random_accuracy']:.2f}%")
    observer = results["observer"]
    split = split_label(results["dataset"].get("evaluated_on", "test"))
    table.add_row("observer", f"{observer['architecture']} seed {observer['seed']}, {observer['test_accuracy']:.2f}% {split}, {observer['checkpoint']}")
    table.add_row("device", results["device"])
    if results.get("budget_notes"):
        table.add_row("notes", results["budget_notes"])
    return table


class SilentUI:
    """The UI of ranks other than 0 under torchrun: rank 0 reports for everyone."""

    def info(self, message: str) -> None:
        pass

    def progress(self, description: str, total: int):
        return lambda n: None

    def results_table(self, results: dict) -> None:
        pass
