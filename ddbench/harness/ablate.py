"""``ddbench ablate lic``: the paper's Table 7 rows and Figure 1 sweeps, as one table and a plot each.

- ``table7``: four runs, each adding one technique: ``original`` (random picks, plain squeeze,
  hard labels: ``lic`` with selection=false, compensation=false and the ``train`` evaluator),
  ``+selection`` (compensation=false, ``train``), ``+compensation`` (``train``) and
  ``+relabel`` (the ``relabel`` evaluator: full LIC).
- ``m``: M, the compensation iterations (``lic.iterations``), e.g. 0, 50, 100, 200.
- ``n``: N, images squeezed into one distilled image (``lic.n``), e.g. 1, 4, 9, 16; values whose
  tiles do not divide the image size, or that need more images than a class has, are skipped
  (and listed).
- ``layer``: every feature layer the observer architecture names (``arch.feature_layers``).

Sweeps use the command's evaluator (default ``relabel``). Every point is an ordinary run in
``<out>/runs/<options>/``, the folder named after the options that differ from LIC's defaults:
points with equal options share a folder, so their distillation is reused (``+compensation``
and ``+relabel`` distil once; M = 200 of the sweep is the same set again). Outputs in
``<out>``: ``ablate.json``, ``ablate.csv/.md/.tex`` and ``ablate-<sweep>.png``, plus
``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbench.harness import HarnessManifest, QuietTables, cell_text, config_record, count, show
from ddbench.harness.tables import GridTable, best_in_groups

SCHEMA = "ddbench-ablate/1"
METHOD = "lic"
SWEEPS = ("table7", "m", "n", "layer")
DEFAULT_M = (0, 50, 100, 200)
DEFAULT_N = (1, 4, 9, 16)
SWEEP_NAMES = {"table7": "Table 7", "m": "M (iterations)", "n": "N (images per distilled image)", "layer": "feature layer"}
TABLE7 = (
    ("original", {"selection": "false", "compensation": "false"}, "train"),
    ("+selection", {"selection": "true", "compensation": "false"}, "train"),
    ("+compensation", {"selection": "true", "compensation": "true"}, "train"),
    ("+relabel", {"selection": "true", "compensation": "true"}, "relabel"),
)


@dataclass
class Point:
    sweep: str
    label: str
    value: Any
    overrides: dict[str, str]
    evaluator: str
    config: Any = None
    notes: list[str] = field(default_factory=list)


def default_out(base) -> Path:
    return Path("runs") / f"{base.dataset}-{base.arch}-ablate-ipc{base.ipc}"


def options_slug(options: Any, defaults: Any) -> str:
    """A folder name from the options that differ from the defaults (``lic-default`` if none)."""
    changed = [f"{f.name}={getattr(options, f.name)}" for f in dataclasses.fields(options)
               if getattr(options, f.name) != getattr(defaults, f.name)]
    if not changed:
        return f"{METHOD}-default"
    slug = f"{METHOD}-" + "_".join(re.sub(r"[^A-Za-z0-9.=+-]", "-", part) for part in changed)
    if len(slug) > 120:
        slug = f"{METHOD}-" + hashlib.sha256(slug.encode()).hexdigest()[:16]
    return slug


def evaluator_assignments(assignments: list[str], evaluators: list[str]) -> dict[str, list[str]]:
    """``--eval-option`` split by evaluator: each assignment goes to the evaluators that have
    its key; one that no evaluator of the ablation has is an error."""
    from ddbench import registry
    from ddbench.options import OptionError, parse_assignment

    fields = {name: {f.name for f in dataclasses.fields(registry.get_evaluator(name).options_class)} for name in evaluators}
    split: dict[str, list[str]] = {name: [] for name in evaluators}
    for assignment in assignments:
        key, _ = parse_assignment(assignment)
        owners = [name for name in evaluators if key in fields[name]]
        if not owners:
            raise OptionError(f"--eval-option {key!r} is not an option of the ablation's evaluators ({', '.join(evaluators)})")
        for name in owners:
            split[name].append(assignment)
    return split


def plan_points(base, sweeps: list[str], m_values: list[int], n_values: list[int]) -> tuple[list[Point], list[dict]]:
    """Every run of the ablation, resolved and checked before any work; and the skipped values."""
    from ddbench import registry
    from ddbench.options import apply_overrides
    from ddbench.runner import RunError, load_dataset, plan_run
    from ddbench.tiles import check_tiles_fit

    unknown = [s for s in sweeps if s not in SWEEPS]
    if unknown or not sweeps:
        raise RunError(f"--sweeps takes a comma list of {', '.join(SWEEPS)}; got {','.join(sweeps) or '(none)'}")
    if base.methods != [METHOD]:
        raise RunError(f"ablate knows the components of {METHOD!r} only, got {', '.join(base.methods)}")
    extra = sorted(set(base.method_options) - {METHOD})
    if extra:
        raise RunError(f"--option given for {', '.join(extra)}; ablate {METHOD} takes {METHOD}.KEY=VALUE options only")
    arch = registry.get_architecture(base.arch)
    distiller = registry.get_distiller(METHOD)
    base_options = list(base.method_options.get(METHOD, []))
    dataset = load_dataset(base, registry.get_dataset(base.dataset))
    _, height, width = dataset.image_shape
    smallest = min(len(pool) for pool in dataset.train_indices_by_class().values())

    points, skipped = [], []
    for sweep in sweeps:
        if sweep == "table7":
            points += [Point(sweep, label, label, dict(overrides), evaluator) for label, overrides, evaluator in TABLE7]
        elif sweep == "m":
            points += [Point(sweep, f"M={m}", m, {"iterations": str(m)}, base.evaluator) for m in m_values]
        elif sweep == "n":
            for n in n_values:
                try:
                    check_tiles_fit(n, height, width)
                except ValueError as exc:
                    skipped.append({"sweep": sweep, "label": f"N={n}", "reason": str(exc)})
                    continue
                if n * base.ipc > smallest:
                    skipped.append({"sweep": sweep, "label": f"N={n}",
                                    "reason": f"N x IPC = {n * base.ipc} is more than the {smallest} training images of the smallest class"})
                    continue
                points.append(Point(sweep, f"N={n}", n, {"n": str(n)}, base.evaluator))
        elif sweep == "layer":
            if not arch.feature_layers:
                raise RunError(f"architecture {arch.name!r} names no feature layers to sweep")
            for layer in arch.feature_layers:
                # The default layer is passed as "" (LIC's default), so it shares the default run's folder.
                chosen = "" if layer == arch.default_feature_layer else layer
                points.append(Point(sweep, layer, layer, {"feature_layer": chosen}, base.evaluator))

    root = Path(base.out) if base.out else default_out(base)
    evaluators = sorted({p.evaluator for p in points})
    eval_options = evaluator_assignments(list(base.evaluator_options), evaluators)
    defaults = distiller.options_class()
    for point in points:
        assignments = base_options + [f"{k}={v}" for k, v in point.overrides.items()]
        options = apply_overrides(defaults, assignments, what=f"method {METHOD!r}")
        folder = root / "runs" / options_slug(options, defaults)
        point.config = dataclasses.replace(
            base, methods=[METHOD], method_options={METHOD: assignments}, evaluator=point.evaluator,
            evaluator_options=eval_options[point.evaluator], out=str(folder), results_name=f"results-{point.evaluator}.json")
        plan_run(point.config)
    return points, skipped


def ablate(base, sweeps: list[str], m_values: list[int], n_values: list[int], ui) -> dict[str, Any]:
    from ddbench.io import atomic_write_json
    from ddbench.exports import budget_text
    from ddbench.report import budget_table
    from ddbench.runner import run

    points, skipped = plan_points(base, sweeps, m_values, n_values)
    root = Path(base.out) if base.out else default_out(base)
    manifest = HarnessManifest(root, "ablate", base.command, {**config_record(base), "sweeps": sweeps, "m_values": m_values,
                                                              "n_values": n_values}, base.seeds)
    quiet = QuietTables(ui)
    rows, timings, last = [], {}, None
    for point in points:
        ui.info(f"ablate {METHOD}: {SWEEP_NAMES[point.sweep]} {point.label} ({point.evaluator})")
        started = time.perf_counter()
        results = run(point.config, quiet)
        last = results
        timings[f"{point.sweep}/{point.label}"] = round(time.perf_counter() - started, 3)
        entry = results["methods"][METHOD]
        row = {"sweep": point.sweep, "label": point.label, "value": point.value, "evaluator": point.evaluator,
               "options": point.overrides, "folder": point.config.out,
               "results": str(Path(point.config.out) / point.config.results_name)}
        if "error" in entry:
            row["error"] = entry["error"]
        else:
            row.update(per_seed=entry["accuracy"]["per_seed"], mean=entry["accuracy"]["mean"], std=entry["accuracy"]["std"],
                       distill_seconds=entry["distill_seconds"], feature_layer=entry["options"].get("feature_layer"))
        rows.append(row)
    summary = {
        "schema": SCHEMA, "command": base.command, "method": METHOD, "dataset": last["dataset"], "ipc": base.ipc,
        "observer": last["observer"], "verifier": last["verifier"], "budget": last["budget"], "seeds": list(base.seeds),
        "device": last["device"], "sweeps": sweeps, "rows": rows, "skipped": skipped,
        "budget_text": budget_text(last, evaluator=False),
    }
    atomic_write_json(root / "ablate.json", summary)
    table = ablation_table(summary)
    table.write(root, "ablate")
    plots = write_plots(root, summary)
    show(ui, table.to_rich())
    show(ui, budget_table(last))
    manifest.finish(timings, plots=[str(p) for p in plots])
    ui.info(f"ablation written to {root / 'ablate.json'} (tables .csv/.md/.tex, plots {', '.join(p.name for p in plots)})")
    return summary


def ablation_table(summary: dict[str, Any]) -> GridTable:
    rows, values, groups = [], {}, {}
    for row in summary["rows"]:
        r = len(rows)
        if "error" in row:
            accuracy, seconds = "failed", ""
        else:
            accuracy, seconds = cell_text(row["mean"], row["std"]), f"{row['distill_seconds']:.2f} s"
            values[(r, 3)] = row["mean"]
        groups.setdefault(row["sweep"], []).append((r, 3))
        rows.append([SWEEP_NAMES[row["sweep"]], row["label"], row["evaluator"], accuracy, seconds])
    notes = [f"skipped {s['label']}: {s['reason']}" for s in summary["skipped"]]
    caption = (f"LIC ablation on {summary['dataset']['name']}, IPC {summary['ipc']}: observer "
               f"{summary['observer']['architecture']}, verifier {summary['verifier']}, budget {summary['budget']['preset']} "
               f"({count(summary['budget']['epochs'], 'epoch')}), accuracy % mean ± std over seeds {', '.join(map(str, summary['seeds']))}; "
               f"{summary.get('budget_text', '')}")
    return GridTable(caption=caption, header=["ablation", "setting", "evaluator", "accuracy % (mean ± std)", "distill time"],
                     rows=rows, group_first=True, emphasis=best_in_groups(values, list(groups.values())), notes=notes)


def write_plots(root: Path, summary: dict[str, Any]) -> list[Path]:
    """``ablate-table7.png`` (bars), ``ablate-m.png``, ``ablate-n.png`` (lines), ``ablate-layer.png``."""
    from ddbench.plots import bar_plot, line_plot

    where = (f"{summary['dataset']['name']}, IPC {summary['ipc']}, observer {summary['observer']['architecture']}, "
             f"{count(summary['budget']['epochs'], 'epoch')}")
    paths = []
    for sweep in summary["sweeps"]:
        points = [(r["value"], r["mean"], r["std"]) for r in summary["rows"] if r["sweep"] == sweep and "mean" in r]
        if not points:
            continue
        path = root / f"ablate-{sweep}.png"
        if sweep == "table7":
            paths.append(bar_plot(path, points, title=f"LIC, accumulated techniques (Table 7): {where}"))
        else:
            evaluator = next(r["evaluator"] for r in summary["rows"] if r["sweep"] == sweep)
            xlabel = {"m": "M: compensation iterations", "n": "N: images squeezed into one distilled image",
                      "layer": "feature alignment layer"}[sweep]
            paths.append(line_plot(path, {f"lic ({evaluator})": points}, title=f"LIC, {SWEEP_NAMES[sweep]}: {where}",
                                   xlabel=xlabel, categorical=sweep == "layer"))
    return paths
