"""``ddbench plugins`` and ``ddbench compare``."""

from __future__ import annotations

import argparse
import sys



def plugin_records() -> list[dict]:
    """Every registered plugin item: kind, name, plugin, version, description, and its options
    (name, type, default, doc) for methods and evaluators."""
    import dataclasses

    from ddbench.host import registry
    from ddbench.settings.options import option_docs

    records = []
    for kind, (_, noun) in registry.KINDS.items():
        for name, entry in registry.registered(kind).items():
            item = entry.item
            record = {"kind": noun, "name": name, "plugin": entry.plugin.name, "version": entry.plugin.version,
                      "description": getattr(item, "description", None) or (type(item).__doc__ or "").strip().split("\n")[0]}
            options_class = getattr(item, "options_class", None)
            if options_class is not None and dataclasses.is_dataclass(options_class):
                docs = option_docs(options_class)
                defaults = options_class()
                record["options"] = [{"name": f.name, "type": str(f.type), "default": _jsonable(getattr(defaults, f.name)),
                                      "doc": docs.get(f.name, "")} for f in dataclasses.fields(options_class)
                                     if not f.name.startswith("_")]
            records.append(record)
    return records


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from ddbench.reporting.html import compare_rows, write_compare
    from ddbench.runner import RunError

    try:
        rows = compare_rows([Path(r) for r in args.runs])
    except ValueError as exc:
        raise RunError(str(exc)) from None
    console = Console() if sys.stdout.isatty() else Console(width=200)
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["ipc"]), []).append(row)
    for (dataset, ipc), group in sorted(groups.items(), key=lambda item: (item[0][0], int(item[0][1]))):
        table = Table(title=f"{dataset}, IPC {ipc}")
        for column in ("method", "accuracy %", "distill time", "evaluator", "verifier", "budget", "run"):
            table.add_column(column, overflow="fold")
        for row in sorted(group, key=lambda r: -(r.get("accuracy_mean") or 0)):
            mean = row.get("accuracy_mean")
            table.add_row(row["method"], "failed" if mean in (None, "") else f"{mean:.2f} ± {row['accuracy_std']:.2f}",
                          "" if row.get("distill_seconds") in (None, "") else f"{row['distill_seconds']:.2f} s",
                          row["evaluator"], row["verifier"], row["budget_preset"], row["run"])
        console.print(table)
    if args.html:
        print(f"written {write_compare([Path(r) for r in args.runs], Path(args.html))}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from ddbench.host.plugins import load_errors

    records = plugin_records()
    if args.json:
        errors = [{"plugin": e.name, "error": str(e.error)} for e in load_errors()]
        print(json.dumps({"plugins": records, "load_errors": errors}, indent=2, default=str))
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(title="ddbench plugins")
    for column in ("kind", "name", "plugin", "version", "description"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(record["kind"], record["name"], record["plugin"], record["version"], record["description"])
    console.print(table)
    if args.options:
        for record in records:
            if record.get("options"):
                options = Table(title=f"{record['kind']} {record['name']}: options (set with --option {record['name']}.KEY=VALUE)"
                                      if record["kind"] == "method" else f"{record['kind']} {record['name']}: options")
                for column in ("option", "default", "doc"):
                    options.add_column(column, overflow="fold")
                for option in record["options"]:
                    options.add_row(option["name"], repr(option["default"]), option["doc"])
                console.print(options)
    for error in load_errors():
        console.print(f"[red]plugin {error.name!r} failed to load:[/red] {error.error}", highlight=False)
    return 0
