"""Runs written down: ``--config run.toml`` and the resolved ``config.toml`` of every run folder.

A config file holds any flag of ``ddbench run`` (or ``ddbench eval``) by its long name, with
underscores or dashes (``image_size = 32``, ``seeds = [0, 1, 2]``, ``baselines = ["sre2l"]``),
plus three tables::

    [budget]            # the preset and any field: preset = "quick", epochs = 300
    [eval]              # evaluator options: temperature = 4
    [options.lic]       # one table per method: lr = 0.01

Flags given on the command line win over the file. Every run folder gets ``config.toml``: the
run as resolved (every budget field, every evaluator and method option), so
``ddbench run --config <run folder>/config.toml`` repeats it, from the cache when the run
folder and cache are still there.

The one dotted override syntax, ``--option KEY=VALUE``, reaches all three: ``lic.lr=0.01``,
``budget.epochs=300``, ``eval.temperature=4`` (``--budget-set`` and ``--eval-option`` stay as
aliases).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLES = ("budget", "eval", "options")
ALIASES = {"baselines": "baseline", "observer": "observer_checkpoint", "teacher": "teacher_checkpoint",
           "eval_options": "eval_option"}


class ConfigError(ValueError):
    """A config file that cannot be read or names an unknown flag."""


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc}); fix the file") from None


def option_text(value: Any) -> str:
    """A value as the command line writes it (``KEY=VALUE``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(option_text(v) for v in value)
    return str(value)


def config_defaults(data: dict[str, Any], known: dict[str, Any], path: str) -> dict[str, Any]:
    """Parser defaults (argparse dests) from a config file's content. ``known``: the dests of the
    command with their current defaults, so an unknown key is refused by name."""
    defaults: dict[str, Any] = {}
    for raw_key, value in data.items():
        if raw_key in TABLES:
            continue
        key = ALIASES.get(raw_key.replace("-", "_"), raw_key.replace("-", "_"))
        if key not in known:
            raise ConfigError(f"--config {path}: unknown key {raw_key!r}; use the long name of a flag of this command "
                              f"(e.g. image_size, seeds) or the tables [budget], [eval], [options.METHOD]")
        if key in ("seeds", "ipc") and isinstance(value, int):
            value = list(range(value)) if key == "seeds" else [value]
        if key == "baseline" and isinstance(value, str):
            value = [value]
        defaults[key] = value
    budget = dict(data.get("budget", {}))
    if "preset" in budget:
        defaults["budget"] = budget.pop("preset")
    defaults["budget_set"] = [f"{k}={option_text(v)}" for k, v in budget.items()]
    defaults["eval_option"] = [f"{k}={option_text(v)}" for k, v in data.get("eval", {}).items()]
    methods = data.get("options", {})
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise ConfigError(f"--config {path}: [options] holds one table per method, e.g. [options.lic] lr = 0.01")
    defaults["option"] = [f"{m}.{k}={option_text(v)}" for m, table in methods.items() for k, v in table.items()]
    return defaults


def route_dotted(assignments: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``--option`` assignments split into (method options, budget fields, evaluator options)."""
    methods, budget, evaluator = [], [], []
    for assignment in assignments:
        head = assignment.split("=", 1)[0]
        prefix, dot, rest = head.partition(".")
        value = assignment[len(head):]
        if dot and prefix == "budget":
            budget.append(rest + value)
        elif dot and prefix == "eval":
            evaluator.append(rest + value)
        else:
            methods.append(assignment)
    return methods, budget, evaluator


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    """TOML for flat ``top`` keys and ``tables`` (dotted names allowed); ``None`` values are left out."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items() if v is not None]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def resolved_config(config: Any, budget: Any, plan: Any) -> str:
    """The run as resolved, as TOML: what ``--config`` needs to repeat it."""
    import dataclasses

    from ddbench.contracts import options_to_dict
    from ddbench.settings.observer_fields import recipe_settings

    methods = list(config.methods)
    top = {
        "method": methods[0] if methods else None, "baselines": methods[1:] if methods else None,
        "dataset": config.dataset, "data_root": config.data_root, "download": config.download,
        "image_size": config.image_size, "data_memory_gib": config.data_memory_gib, "data_workers": config.data_workers,
        "ipc": config.ipc, "arch": config.arch, "verifier": config.verifier, "evaluator": config.evaluator,
        "seeds": list(config.seeds), "distill_seed": config.distill_seed, "distill_seeds": config.distill_seeds,
        "compare_random": config.compare_random, "observer_seed": config.observer_seed,
        **recipe_settings(config),
        "observer": config.observer_checkpoint,
        "teacher": config.teacher_checkpoint, "validation": config.validation_per_class,
        "validation_seed": config.validation_seed, "cache_dir": config.cache_dir, "device": config.device,
        "out": str(config.output_dir()), "dist_eval": config.dist_eval,
    }
    if config.compare_random and methods and methods[-1] == "random" and "random" not in methods[:-1]:
        top["baselines"] = methods[1:-1]  # compare_random adds it again
    preset = budget.preset.rstrip("*")
    fields = {f.name: getattr(budget, f.name) for f in dataclasses.fields(budget) if f.name not in ("preset", "version", "notes")}
    tables = {"budget": {"preset": preset, **fields},
              "eval": options_to_dict(plan.evaluator_options)}
    for name in methods:
        if name in plan.method_options and not (config.compare_random and name == "random" and name == methods[-1]):
            tables[f"options.{name}"] = options_to_dict(plan.method_options[name])
    return ("# ddbench run --config THIS_FILE repeats this run (values as resolved; flags given on the\n"
            "# command line win over the file)\n" + to_toml(top, tables))
