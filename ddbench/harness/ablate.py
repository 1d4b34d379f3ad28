"""``ddbench ablate METHOD``: the ablations a method declares (``Distiller.ablations()``), as one
table and a plot each. The host knows no method's components: LIC declares the paper's Table 7
rows and Figure 1 sweeps (``lic_plugin/ablations.py``).

Each ablation returns its points (a label, a value, the method's option overrides and, where it
sets one, the evaluator; the others use the command's, default ``relabel``) and the values it
skipped with the reason. ``--values NAME=1,2,3`` gives an ablation its values. Every point is an
ordinary run in ``<out>/runs/<options>/``, the folder named after the options that differ from
the method's defaults: points with equal options share a folder, so their distillation is
reused. Outputs in ``<out>``: ``ablate.json``, ``ablate.csv/.md/.tex`` and ``ablate-<name>.png``,
plus ``manifest.json``.
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

SCHEMA = "ddbench-ablate/2"


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


def options_slug(method: str, options: Any, defaults: Any) -> str:
    """A folder name from the options that differ from the defaults (``<method>-default`` if none)."""
    changed = [f"{f.name}={getattr(options, f.name)}" for f in dataclasses.fields(options)
               if getattr(options, f.name) != getattr(defaults, f.name)]
    if not changed:
        return f"{method}-default"
    slug = f"{method}-" + "_".join(re.sub(r"[^A-Za-z0-9.=+-]", "-", part) for part in changed)
    if len(slug) > 120:
        slug = f"{method}-" + hashlib.sha256(slug.encode()).hexdigest()[:16]
    return slug


def declared_ablations(distiller: Any) -> dict[str, Any]:
    return dict(distiller.ablations())


def evaluator_assignments(assignments: list[str], evaluators: list[str]) -> dict[str, list[str]]:
    """``--eval-option`` split by evaluator: each assignment goes to the evaluators that have
    its key; one that no evaluator of the ablation has is an error."""
    from ddbench.host import registry
    from ddbench.settings.options import OptionError, parse_assignment

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


def plan_points(base, sweeps: list[str] | None, values: dict[str, list[int]]) -> tuple[list[Point], list[dict], dict]:
    """Every run of the ablation, resolved and checked before any work; the skipped values; and
    the method's declared ablations."""
    from ddbench.host import registry
    from ddbench.api import AblationSetting
    from ddbench.settings.options import apply_overrides
    from ddbench.runner import RunError, load_dataset, plan_run

    if len(base.methods) != 1:
        raise RunError(f"ablate takes one method, got {', '.join(base.methods)}")
    method = base.methods[0]
    distiller = registry.get_distiller(method)
    ablations = declared_ablations(distiller)
    if not ablations:
        raise RunError(f"method {method!r} declares no ablations (Distiller.ablations()); nothing to run")
    sweeps = list(sweeps or ablations)
    unknown = [s for s in sweeps if s not in ablations] + [v for v in values if v not in ablations]
    if unknown:
        raise RunError(f"{method} has no ablation {', '.join(map(repr, unknown))}; it declares {', '.join(ablations)}")
    extra = sorted(set(base.method_options) - {method})
    if extra:
        raise RunError(f"--option given for {', '.join(extra)}; ablate {method} takes {method}.KEY=VALUE options only")
    arch = registry.get_architecture(base.arch)
    base_options = list(base.method_options.get(method, []))
    dataset = load_dataset(base, registry.get_dataset(base.dataset))
    smallest = min(len(pool) for pool in dataset.train_indices_by_class().values())

    points, skipped = [], []
    for sweep in sweeps:
        setting = AblationSetting(arch=arch, image_shape=dataset.image_shape, ipc=base.ipc, smallest_class=smallest,
                                  values=values.get(sweep))
        try:
            declared, passed = ablations[sweep].points(setting)
        except ValueError as exc:
            raise RunError(f"{method} ablation {sweep!r}: {exc}") from None
        points += [Point(sweep, p.label, p.value, dict(p.options), p.evaluator or base.evaluator) for p in declared]
        skipped += [{"sweep": sweep, **s} for s in passed]

    root = Path(base.out) if base.out else default_out(base)
    evaluators = sorted({p.evaluator for p in points})
    eval_options = evaluator_assignments(list(base.evaluator_options), evaluators)
    defaults = distiller.resolve_options(distiller.options_class(), base.dataset)
    for point in points:
        assignments = base_options + [f"{k}={v}" for k, v in point.overrides.items()]
        # overrides go on the options as declared, then resolve: a default that follows another
        # option (LIC's diversity follows selection) must see the point's value of it
        options = distiller.resolve_options(apply_overrides(distiller.options_class(), assignments, what=f"method {method!r}"),
                                            base.dataset)
        folder = root / "runs" / options_slug(method, options, defaults)
        point.config = dataclasses.replace(
            base, methods=[method], method_options={method: assignments}, evaluator=point.evaluator,
            evaluator_options=eval_options[point.evaluator], out=str(folder), results_name=f"results-{point.evaluator}.json")
        plan_run(point.config)
    return points, skipped, ablations


def ablate(base, sweeps: list[str] | None, values: dict[str, list[int]], ui) -> dict[str, Any]:
    from ddbench.store.io import atomic_write_json
    from ddbench.reporting.exports import budget_text
    from ddbench.reporting.console import budget_table
    from ddbench.runner import run

    points, skipped, ablations = plan_points(base, sweeps, values)
    sweeps = list(dict.fromkeys(p.sweep for p in points)) or list(sweeps or ablations)
    method = base.methods[0]
    root = Path(base.out) if base.out else default_out(base)
    manifest = HarnessManifest(root, "ablate", base.command, {**config_record(base), "sweeps": sweeps, "values": values},
                               base.seeds)
    quiet = QuietTables(ui)
    rows, timings, last = [], {}, None
    for point in points:
        ui.info(f"ablate {method}: {ablations[point.sweep].title} {point.label} ({point.evaluator})")
        started = time.perf_counter()
        results = run(point.config, quiet)
        last = results
        timings[f"{point.sweep}/{point.label}"] = round(time.perf_counter() - started, 3)
        entry = results["methods"][method]
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
        "schema": SCHEMA, "command": base.command, "method": method, "dataset": last["dataset"], "ipc": base.ipc,
        "observer": last["observer"], "verifier": last["verifier"], "budget": last["budget"], "seeds": list(base.seeds),
        "device": last["device"], "sweeps": sweeps, "rows": rows, "skipped": skipped,
        "ablations": {name: {"title": a.title, "plot": a.plot, "xlabel": a.xlabel} for name, a in ablations.items()},
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
        rows.append([summary["ablations"][row["sweep"]]["title"], row["label"], row["evaluator"], accuracy, seconds])
    notes = [f"skipped {s['label']}: {s['reason']}" for s in summary["skipped"]]
    caption = (f"{summary['method']} ablation on {summary['dataset']['name']}, IPC {summary['ipc']}: observer "
               f"{summary['observer']['architecture']}, verifier {summary['verifier']}, budget {summary['budget']['preset']} "
               f"({count(summary['budget']['epochs'], 'epoch')}), accuracy % mean ± std over seeds {', '.join(map(str, summary['seeds']))}; "
               f"{summary.get('budget_text', '')}")
    return GridTable(caption=caption, header=["ablation", "setting", "evaluator", "accuracy % (mean ± std)", "distill time"],
                     rows=rows, group_first=True, emphasis=best_in_groups(values, list(groups.values())), notes=notes)


def write_plots(root: Path, summary: dict[str, Any]) -> list[Path]:
    """``ablate-table7.png`` (bars), ``ablate-m.png``, ``ablate-n.png`` (lines), ``ablate-layer.png``."""
    from ddbench.reporting.plots import bar_plot, line_plot

    where = (f"{summary['dataset']['name']}, IPC {summary['ipc']}, observer {summary['observer']['architecture']}, "
             f"{count(summary['budget']['epochs'], 'epoch')}")
    paths = []
    for sweep in summary["sweeps"]:
        points = [(r["value"], r["mean"], r["std"]) for r in summary["rows"] if r["sweep"] == sweep and "mean" in r]
        if not points:
            continue
        path = root / f"ablate-{sweep}.png"
        declared = summary["ablations"][sweep]
        method = summary["method"]
        if declared["plot"] == "bars":
            paths.append(bar_plot(path, points, title=f"{method}, {declared['title']}: {where}"))
        else:
            evaluator = next(r["evaluator"] for r in summary["rows"] if r["sweep"] == sweep)
            paths.append(line_plot(path, {f"{method} ({evaluator})": points}, title=f"{method}, {declared['title']}: {where}",
                                   xlabel=declared["xlabel"] or sweep, categorical=declared["plot"] == "categorical"))
    return paths
