"""Pages to look at: ``report.html`` of one run, and ``ddbench compare`` across runs.

Both are one self-contained HTML file each (no network, no external files: images are
embedded as base64 PNG): ``report.html`` holds the results table with the full budget, each
method's image grid, the run's plots, the observer, the command and the resolved config;
``compare.html`` holds one sortable table of many runs' ``results.json``, grouped by dataset
and IPC (click a column header to sort).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ddbench.reporting.exports import budget_text, result_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; }
td:first-child, th:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; margin-bottom: .4em; }
.budget { font-size: 90%; color: #444; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 600px; max-height: 480px; image-rendering: pixelated; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows);
    var ascending = th.dataset.order !== 'asc';
    th.dataset.order = ascending ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value || a.cells[column].textContent;
      var y = b.cells[column].dataset.value || b.cells[column].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{_e(title)}</h1>\n{body}\n"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def _accuracy(entry: dict[str, Any]) -> tuple[str, str]:
    accuracy = entry.get("accuracy")
    if not accuracy:
        return "failed", ""
    return f"{accuracy['mean']:.2f} ± {accuracy['std']:.2f}", f"{accuracy['mean']}"


def results_section(results: dict[str, Any]) -> str:
    rows = []
    for name, entry in results["methods"].items():
        text, value = _accuracy(entry)
        error = entry.get("error")
        per_seed = ", ".join(f"{a:.2f}" for a in entry.get("accuracy", {}).get("per_seed", []))
        seconds = entry.get("distill_seconds")
        memory = entry.get("peak_memory_bytes") or 0
        rows.append(
            f"<tr class=\"method\"><td>{_e(name)}</td><td data-value=\"{_e(value)}\">{_e(text)}</td>"
            f"<td>{_e(per_seed or error)}</td>"
            f"<td data-value=\"{_e(seconds)}\">{'' if seconds is None else f'{seconds:.2f} s'}</td>"
            f"<td data-value=\"{memory}\">{memory / 2**20:.0f} MiB</td>"
            f"<td>{_e((entry.get('labels') or {}).get('labels', ''))}</td></tr>")
    split = results["dataset"].get("evaluated_on", "test")
    header = "".join(f"<th>{h}</th>" for h in ("method", f"{_e(split)} accuracy % (mean ± std)", "per seed",
                                                "distill time", "peak memory", "labels"))
    caption = (f"{_e(results['dataset']['name'])} · IPC {_e(results['ipc'])} · observer "
               f"{_e(results['observer']['architecture'])} ({results['observer']['test_accuracy']:.2f}%) · verifier "
               f"{_e(results['verifier'])} · evaluator {_e(results['evaluator']['name'])}")
    return (f"<table class=\"sortable results\"><caption>{caption}</caption><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>\n<p class=\"budget\">{_e(budget_text(results))}</p>")


def write_report(folder: Path, results: dict[str, Any], name: str = "report.html") -> Path:
    """``<folder>/report.html`` for the run whose results (and grids, plots, config) are there."""
    from ddbench.store.io import atomic_write_text

    folder = Path(folder)
    parts = [results_section(results)]
    grids = [(method, folder / "grids" / f"{method}.png") for method in results["methods"]]
    figures = "".join(f"<figure><img alt=\"{_e(method)} distilled images\" src=\"{_png(path)}\">"
                      f"<figcaption>{_e(method)}: distilled images, one row per class</figcaption></figure>"
                      for method, path in grids if path.is_file())
    if figures:
        parts.append(f"<h2>Distilled images</h2>\n{figures}")
    plots = sorted(p for p in folder.glob("*.png"))
    if plots:
        parts.append("<h2>Plots</h2>\n" + "".join(f"<figure><img alt=\"{_e(p.stem)}\" src=\"{_png(p)}\">"
                                                   f"<figcaption>{_e(p.name)}</figcaption></figure>" for p in plots))
    observer = results["observer"]
    parts.append(f"<h2>Observer</h2>\n<pre>{_e(json.dumps(observer, indent=2))}</pre>")
    parts.append(f"<h2>Command</h2>\n<pre>{_e(results.get('command', ''))}</pre>")
    config = folder / "config.toml"
    if config.is_file():
        parts.append(f"<h2>Config (repeat with <code>ddbench run --config config.toml</code>)</h2>\n"
                     f"<pre>{_e(config.read_text())}</pre>")
    parts.append(f"<h2>Versions</h2>\n<pre>{_e(json.dumps(results.get('versions', {}), indent=2))}</pre>")
    title = f"ddbench: {', '.join(results['methods'])} on {results['dataset']['name']}, IPC {results['ipc']}"
    path = folder / name
    atomic_write_text(path, _page(title, "\n".join(parts)))
    return path


def compare_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """One row per (run, method) from each run folder's (or file's) results.json."""
    rows = []
    for given in paths:
        path = Path(given) / "results.json" if Path(given).is_dir() else Path(given)
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read results ({exc}); pass run folders holding results.json") from None
        for row in result_rows(results):
            rows.append({"run": str(Path(given)), "dataset": results["dataset"]["name"], "ipc": results["ipc"],
                         "evaluator": results["evaluator"]["name"], "verifier": results["verifier"],
                         **row, "budget_preset": f"{results['budget'].get('preset', '')} ({results['budget'].get('epochs')} epochs)"})
    return rows


def write_compare(paths: list[Path], out: Path) -> Path:
    from ddbench.store.io import atomic_write_text

    rows = compare_rows(paths)
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["ipc"]), []).append(row)
    sections = []
    columns = ("method", "accuracy", "distill_seconds", "peak_memory_bytes", "evaluator", "verifier", "budget", "run")  # headers
    for (dataset, ipc), group in sorted(groups.items(), key=lambda item: (item[0][0], int(item[0][1]))):
        body = []
        for row in sorted(group, key=lambda r: -(r.get("accuracy_mean") or 0)):
            mean, std = row.get("accuracy_mean"), row.get("accuracy_std")
            accuracy = "failed" if mean in (None, "") else f"{float(mean):.2f} ± {float(std):.2f}"
            seconds = row.get("distill_seconds")
            memory = row.get("peak_memory_bytes") or 0
            body.append(f"<tr><td>{_e(row['method'])}</td><td data-value=\"{_e(mean)}\">{_e(accuracy)}</td>"
                        f"<td data-value=\"{_e(seconds)}\">{'' if seconds in (None, '') else f'{float(seconds):.2f} s'}</td>"
                        f"<td data-value=\"{memory}\">{int(memory or 0) / 2**20:.0f} MiB</td><td>{_e(row['evaluator'])}</td>"
                        f"<td>{_e(row['verifier'])}</td><td>{_e(row['budget_preset'])}</td><td>{_e(row['run'])}</td></tr>")
        header = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
        sections.append(f"<table class=\"sortable\"><caption>{_e(dataset)}, IPC {_e(ipc)}</caption><thead><tr>{header}"
                        f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    out = Path(out)
    atomic_write_text(out, _page(f"ddbench: {len(paths)} run(s) compared", "\n".join(sections)))
    return out
