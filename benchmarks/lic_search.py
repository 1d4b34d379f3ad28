"""LIC's validation search (issue 16): one ``ddbench run --validation`` per configuration, every
result appended to a results file in the repository, so the search can be re-read and extended.

    OMP_NUM_THREADS=1 python benchmarks/lic_search.py NAME [NAME ...] [--ipc 10] [--jobs 2]
        [--image-size 64 --arch convnet4-bn] [--seeds 2]
    python benchmarks/lic_search.py --record-eval NAME DIR   # an evaluator-only row: see below

Each NAME is a row of ``CONFIGURATIONS`` (method options and evaluator options). Every
configuration is scored on the validation split only (``--validation 50``: 50 training images
per class held out, the observer trained without them), never on the test split. Runs share
one observer through ``--cache-dir`` (``ddbench run``'s observer flags, ``--observer-seed``,
``--observer-epochs``, ``--observer-shift``, ``--observer-low-res``, pick it and are passed on;
each row names the recipe it ran under). A finished run is not redone: its ``results.json`` is read
again. Rows go to ``benchmarks/results/lic_search.csv`` (one per configuration, IPC, observer and
resolved options: a row measured again under the same observer is replaced, one under another
observer, such as a retrained one, or after a default changed, ``settings_digest``, is added) with the command that produced them. The file is read and rewritten
under a lock, so several searches side by side (one process each) lose no row.

An evaluator setting tried on sets distilled earlier (``ddbench eval SETS --validation 50
--eval-option mixing=none --out DIR``) is recorded with ``--record-eval NAME DIR``: the rows
NAME (the LIC set) and METHOD-NAME (the others; METHOD beside ``defaults``), with the
evaluation's command and the settings it resolved that are not the defaults, however the
command spelt them. A test-split evaluation is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ddbench.cli.arguments import _add_observer_args
from ddbench.cli.common import _method_options
from ddbench.settings.config_file import option_text  # a value as --option takes it (false, not False)
from ddbench.settings.observer_fields import RECIPE_SETTINGS
from ddbench.store.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lic_search.csv"
COLUMNS = ("dataset", "image_size", "ipc", "name", "method", "options", "eval_options", "validation_accuracy_mean",
           "validation_accuracy_std", "per_seed", "distill_seconds", "observer_validation_accuracy", "observer_recipe", "command",
           "settings_digest")


def settings_digest(entry: dict) -> str:
    """Twelve hex digits of the method's options as the run resolved them (``results.json``): two
    rows of one name under one observer are one configuration only if these agree, so a row
    measured before a default changed is not replaced by one measured after it."""
    text = json.dumps(entry.get("options", {}), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# name -> (method, method options, evaluator options)
CONFIGURATIONS: dict[str, tuple[str, list[str], list[str]]] = {
    "random": ("random", [], []),
    "defaults": ("lic", [], []),
    # the successor code's (LINs-lab/CIM) choices, one at a time and together
    "l1": ("lic", ["loss=l1"], []),
    "cosine": ("lic", ["loss=cosine"], []),
    "adamw-0.01": ("lic", ["optimizer=adamw", "lr=0.01"], []),
    "adam-0.01": ("lic", ["lr=0.01"], []),
    "adam-0.03": ("lic", ["lr=0.03"], []),
    # Delta-x's lr decayed to 0 over the M steps (SRe2L's recover schedule), at our lr and at 3x it
    "lr-cosine": ("lic", ["lr_schedule=cosine"], []),
    "lr-cosine-0.3": ("lic", ["lr_schedule=cosine", "lr=0.3"], []),
    "no-clamp": ("lic", ["clamp=none"], []),
    "after-pool": ("lic", ["feature_layer=features.block3.pool"], []),  # the default since it led under four observers
    "before-pool": ("lic", ["feature_layer=features.block3.relu"], []),  # the default before
    "block2": ("lic", ["feature_layer=features.block2.relu"], []),
    # several layers aligned together (texture from the shallower, semantics from the deepest:
    # the balance of the paper's Section 2.2), each weighing the same per feature
    "layers-2-3": ("lic", ["feature_layer=features.block2.relu+features.block3.relu"], []),
    "layers-1-2-3": ("lic", ["feature_layer=features.block1.relu+features.block2.relu+features.block3.relu"], []),
    "dsa-cim": ("lic", ["dsa_strategy=crop_cutout_flip"], []),  # the successor code's DSA families
    "dsa-pair": ("lic", ["dsa_draw=pair"], []),  # each original/tile pair its own DSA draw per iteration
    "squeeze-nearest": ("lic", ["squeeze_mode=nearest"], []),  # the successor code's squeeze F: one pixel per block
    "cim": ("lic", ["loss=l1", "optimizer=adamw", "lr=0.01", "clamp=none", "feature_layer=features.block3.pool"], []),
    "iterations-50": ("lic", ["iterations=50"], []),
    "iterations-400": ("lic", ["iterations=400"], []),
    "n1": ("lic", ["n=1", "iterations=0"], []),
    "n4": ("lic", ["n=4"], []),  # the paper's N at any size and IPC (unset: N = 1 at 64-127 px and where 4 x IPC > a third of a class)
    "n9": ("lic", ["n=9"], []),
    "no-selection": ("lic", ["selection=false"], []),
    "skip-0.1": ("lic", ["selection_skip=0.1"], []),
    "skip-0.3": ("lic", ["selection_skip=0.3"], []),
    "consecutive": ("lic", ["grouping=consecutive"], []),
    "clusters": ("lic", ["diversity=clusters"], []),
    # score the whole class, not a 300-image subset: with clusters keeping the picks diverse, the
    # subset's other purpose (cost) is small at a few hundred images per class
    "subset-500": ("lic", ["subset_size=500"], []),
    # score (and cluster) each candidate as the distilled set shows it: one tile, expanded back
    "tile-score": ("lic", ["score_view=tile"], []),
    # RDED's realistic patches: the best of 5 random square crops of each scored image
    "crops-5": ("lic", ["crops=5"], []),
    "crops-5-scale-0.5": ("lic", ["crops=5", "crop_scale=0.5"], []),
    "crops-5-tile-score": ("lic", ["crops=5", "score_view=tile"], []),
    # the options that each came out a little (within a spread) ahead of the defaults, together
    "stack": ("lic", ["crops=5", "crop_scale=0.5", "subset_size=500", "feature_layer=features.block3.pool"], []),
    # each cluster's member nearest its mean (the k-means coreset) instead of its best-scored
    "medoids": ("lic", ["diversity=medoids"], []),
    "clusters-skip-0.1": ("lic", ["diversity=clusters", "selection_skip=0.1"], []),
    "clusters-factor-crop": ("lic", ["diversity=clusters"], ["region_sampling=factor-crop"]),
    "factor-crop": ("lic", [], ["region_sampling=factor-crop"]),
    "mse-logits": ("lic", [], ["loss=mse-logits"]),
    # which of LIC's parts leaves cutmix nothing to add (docs/lic-results.md):
    # the random squeeze (same tiles, neither part) and selection alone, each evaluated again
    # with --eval-option mixing=none (--record-eval); "no-selection" is compensation alone
    "squeeze": ("squeeze", [], []),
    "selection-only": ("lic", ["compensation=false"], []),
    # G of Eq. 8 with the evaluator's cutmix added (between one image's tiles), since the
    # compensation is what leaves LIC nothing to gain from the evaluator's cutmix
    "tile-cutmix": ("lic", ["tile_mixing=cutmix"], []),
}


# the observer settings passed on to ``ddbench run``: its own flags (``ddbench.cli.arguments``'
# observer pieces parse them here, with their range checks), the recipe's included, so a recipe
# setting added there reaches every search run without an edit here
FORWARDED = ("observer_seed", *RECIPE_SETTINGS.values(), "device")


def flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


class ConfigurationFailed(RuntimeError):
    """A configuration whose ``ddbench run`` failed; the message names it and its log."""


def run_one(name: str, args: argparse.Namespace) -> dict:
    method, options, eval_options = CONFIGURATIONS[name]
    out = Path(args.runs) / f"ipc{args.ipc}" / name
    command = ["ddbench", "run", "--method", method, "--dataset", args.dataset, "--image-size", str(args.image_size),
               "--ipc", str(args.ipc), "--validation", str(args.validation), "--out", str(out), "--data-workers", "0"]
    if args.cache_dir:
        command += ["--cache-dir", args.cache_dir]
    if args.arch:
        command += ["--arch", args.arch]
    if args.seeds:
        command += ["--seeds", args.seeds]
    for setting in FORWARDED:
        if getattr(args, setting) is not None:
            command += [flag(setting), str(getattr(args, setting))]
    if args.data_root:
        command += ["--data-root", args.data_root]
    command += [part for option in options for part in ("--option", f"{method}.{option}")]
    command += [part for option in eval_options for part in ("--eval-option", option)]
    results_file = out / "results.json"
    if not results_file.exists():
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "search.log"
        with open(log_path, "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        if done.returncode != 0:
            lines = log_path.read_text().strip().splitlines()
            raise ConfigurationFailed(f"{name}: ddbench exited with {done.returncode}: {lines[-1] if lines else '(no output)'} "
                                      f"(the whole log: {log_path})")
    else:  # said aloud: a default changed since would not show in the command (its row's settings_digest tells)
        print(f"{name}: reusing {results_file}, finished earlier (remove {out} to measure it again)", file=sys.stderr)
    results = json.loads(results_file.read_text())
    return measured_row(results, results["methods"][method], name=name, method=method, options=" ".join(options),
                        eval_options=" ".join(eval_options), command=shlex.join(command),
                        image_size=results["dataset"].get("image_size", args.image_size), ipc=args.ipc)


def measured_row(results: dict, entry: dict, **fields) -> dict:
    """A results-file row: what one method's entry of a ``results.json`` measured (accuracy, per
    seed, distillation time, observer, resolved options) with ``fields`` (name, method, options,
    eval_options, command, dataset size and IPC) as the caller knows them."""
    observer = results["observer"]
    return {
        "dataset": results["dataset"]["name"], **fields,
        "validation_accuracy_mean": entry["accuracy"]["mean"], "validation_accuracy_std": entry["accuracy"]["std"],
        "per_seed": " ".join(f"{a:.2f}" for a in entry["accuracy"]["per_seed"]),
        "distill_seconds": seconds(entry.get("distill_seconds")),
        "observer_validation_accuracy": observer.get("test_accuracy"),
        "observer_recipe": describe_recipe(observer.get("recipe", {})),
        "settings_digest": settings_digest(entry),
    }


def seconds(value: float | None) -> float | None:
    """A time as the results file keeps it: to the millisecond (an evaluation's ``results.json``
    written before ``ddbench eval`` rounded it carries the saved set's full float)."""
    return None if value is None else round(float(value), 3)


class NotAValidationEvaluation(ValueError):
    """``--record-eval`` was given an evaluation on a test split: the search holds validation rows only."""


def set_options(entry: dict, method: str, given: frozenset[str] = frozenset()) -> str:
    """The options a saved set was distilled with (its ``results.json`` entry) that differ from
    its method's defaults, as ``KEY=VALUE`` words; an option whose default is resolved per run
    (``None`` or ``""``, such as LIC's N and feature layer) is not compared, but named when the
    command set it (``given``: the keys of its ``--option METHOD.KEY=VALUE``)."""
    from ddbench.host.registry import get_distiller

    defaults = dataclasses.asdict(get_distiller(method).options_class())
    return changed_words(entry.get("options", {}), defaults, given)


def changed_words(values: dict, defaults: dict, given: frozenset[str], prefix: str = "") -> str:
    """``KEY=VALUE`` words (joined by spaces) for the resolved ``values`` that the command set
    (``given``) or that differ from ``defaults``; a default resolved per run (``None``, ``""`` or
    ``"auto"``) is not compared."""
    return " ".join(f"{prefix}{key}={option_text(value)}" for key, value in values.items()
                    if key in given or (defaults.get(key, "auto") not in (None, "", "auto")
                                        and option_text(defaults[key]) != option_text(value)))


class UnreadableCommand(ValueError):
    """A recorded command that ``ddbench``'s own parser does not read."""


class GivenSettings(NamedTuple):
    """The keys a recorded ``ddbench run``/``eval`` command set: method options by method,
    evaluator options and budget fields, however they were spelt (``--option lic.n=1``,
    ``--option=lic.n=1``, ``--option eval.mixing=none``, ``--budget-set``, a ``--config`` file)."""
    options: Mapping[str, frozenset[str]] = MappingProxyType({})
    evaluator: frozenset[str] = frozenset()
    budget: frozenset[str] = frozenset()


def given_settings(command: str) -> GivenSettings:
    """What ``command`` (a ``results.json``'s) set, read by ``ddbench``'s own parser and routed as
    ``ddbench`` routes it. A run through the Python API records no command line: nothing is named
    as given, and its rows name only the values that differ from the defaults."""
    from ddbench.cli.arguments import build_parser
    from ddbench.cli.common import arguments_with_config_file
    from ddbench.settings.config_file import ConfigError, route_dotted

    argv = shlex.split(command)
    if len(argv) < 2 or argv[0] != "ddbench":
        return GivenSettings()
    parser = build_parser()
    try:
        args = parser.parse_args(argv[1:])
        if getattr(args, "config", None):
            args = arguments_with_config_file(parser, args, argv[1:])
    except SystemExit:
        raise UnreadableCommand(f"the recorded command is not one this ddbench reads: {command}") from None
    except ConfigError as exc:
        raise UnreadableCommand(f"the recorded command read its settings from --config {args.config}, which "
                                f"cannot be read now ({exc}); record a run whose settings are on its command line") from None
    methods, budget, evaluator = route_dotted(getattr(args, "option", []))

    def keys(words: list[str]) -> frozenset[str]:
        return frozenset(word.partition("=")[0] for word in words)

    return GivenSettings({method: keys(words) for method, words in _method_options(methods).items()},
                         keys(evaluator + getattr(args, "eval_option", [])), keys(budget + getattr(args, "budget_set", [])))


def evaluation_settings(results: dict, given: GivenSettings) -> str:
    """The evaluation settings of a ``results.json`` that are not the defaults, as words: the
    evaluator (when not the default one) and its options, the budget preset (when not the
    default one) and its fields, the verifier (when not the observer's architecture) and the
    soft-label teacher (when not the observer). Read from the resolved values the run records,
    so a setting counts however the command spelt it; a field resolved per run (``auto``) is
    named only when the command set it."""
    from ddbench.host.registry import get_evaluator
    from ddbench.pipeline.config import RunConfig
    from ddbench.settings.budget import PRESETS

    default = RunConfig(methods=[])
    words = []
    evaluator = results.get("evaluator", {})
    name = evaluator.get("name", default.evaluator)
    if name != default.evaluator:
        words.append(f"evaluator={name}")
    words.append(changed_words(evaluator.get("options", {}),
                               dataclasses.asdict(get_evaluator(name).options_class()), given.evaluator))
    budget = dict(results.get("budget", {}))
    preset = str(budget.pop("preset", default.budget.preset)).rstrip("*")  # "quick*": the preset, changed
    if preset != default.budget.preset:
        words.append(f"budget={preset}")
    budget.pop("version", None)
    words.append(changed_words(budget, dataclasses.asdict(PRESETS[preset]), given.budget, prefix="budget."))
    observer = results.get("observer", {})
    if results.get("verifier") not in (None, observer.get("architecture")):
        words.append(f"verifier={results['verifier']}")
    teacher = results.get("teacher", "observer")
    if teacher != "observer":
        words.append(f"teacher={Path(teacher.get('checkpoint', '')).name} ({teacher.get('test_accuracy')} %)")
    return " ".join(word for word in words if word)


def eval_rows(name: str, results: dict) -> list[dict]:
    """The rows of one ``ddbench eval`` of saved sets (its ``results.json``): an evaluator-only
    configuration (``--eval-option``, ``--budget-set``) tried on sets distilled earlier (a
    ``ddbench run --validation N`` of the defaults reads the same way). The LIC set's row is
    ``name``, another method's ``METHOD-name`` (``random-mixing-none``; plain ``METHOD`` beside
    ``defaults``, as the search names its rows). The evaluator settings are those the run records
    that are not the defaults (:func:`evaluation_settings`); ``options`` are those the saved set
    records that differ from its method's defaults, and those the command set
    (:func:`set_options`): empty for a set of the defaults. Refuses an evaluation on a test split."""
    evaluated_on = results["dataset"].get("evaluated_on", "")
    if not evaluated_on.startswith("validation"):
        raise NotAValidationEvaluation(
            f"this evaluation ran on {evaluated_on or 'the test split'}; the search records validation-split "
            f"results only: evaluate the sets again with --validation N")
    given = given_settings(results["command"])
    settings = evaluation_settings(results, given)
    rows = []
    for key, entry in results["methods"].items():
        method = entry.get("method", key)  # an eval names its sets (lic-<hash>) and says their method; a run, the method
        rows.append(measured_row(
            results, entry, name=name if method == "lic" else (method if name == "defaults" else f"{method}-{name}"),
            method=method, options=set_options(entry, method, given.options.get(method, frozenset())),
            eval_options=settings, command=results["command"],
            image_size=results["dataset"]["image_shape"][-1], ipc=entry.get("images_per_class", results.get("ipc"))))
    return rows


def describe_recipe(recipe: dict) -> str:
    """The observer recipe's fields that tell one search's observer from another's, in words."""
    shift, low_res = recipe.get("shift", 0.0), recipe.get("low_res", 0.0)
    crops = f"shift crops {shift:g}" if shift else "flips only"
    views = f", low-res views {low_res:g}" if low_res else ""  # the rows before low_res existed keep their words
    return f"{recipe.get('epochs')} epochs, {crops}{views}, {recipe.get('precision')}"


@contextlib.contextmanager
def results_lock(path: Path):
    """Hold an exclusive lock on ``path``'s lock file (searches run side by side, one process each,
    read and rewrite the same results file: without it one could drop the other's new row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record(rows: list[dict], path: Path = RESULTS) -> None:
    def key(row: dict) -> tuple[str, ...]:  # a configuration under one observer: another observer, or other
        # resolved options (a default changed since), is another row
        return tuple(str(row.get(column) or "") for column in ("dataset", "image_size", "ipc", "name",
                                                               "observer_validation_accuracy", "observer_recipe",
                                                               "settings_digest"))

    with results_lock(path):
        existing = []
        if path.exists():
            with open(path, newline="") as handle:
                existing = list(csv.DictReader(handle))
        keys = {key(r) for r in rows}
        kept = [r for r in existing if key(r) not in keys]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept + rows)
        atomic_write_text(path, text.getvalue())


def summary(row: dict) -> str:
    return (f"{row['name']:>16}: {row['validation_accuracy_mean']:.2f} ± {row['validation_accuracy_std']:.2f} "
            f"({row['per_seed']})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"configurations: {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--record-eval", nargs=2, action="append", default=[], metavar=("NAME", "DIR"),
                        help="record a `ddbench eval --validation N --out DIR` of saved sets as the rows NAME (LIC) "
                             "and METHOD-NAME (the others): an evaluator-only configuration; repeatable")
    parser.add_argument("--dataset", default="imagefolder")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-10"))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--validation", type=int, default=50)
    parser.add_argument("--arch", help="observer and verifier architecture (default: ddbench's, convnet3-bn); "
                                       "the paper's Conv-4 at 64 px: convnet4-bn")
    parser.add_argument("--seeds", help="evaluation seeds, as ddbench run takes them (default: ddbench's, 3)")
    _add_observer_args(parser, single=False)  # ddbench run's observer flags, --cache-dir and --device
    parser.add_argument("--runs", default="runs/lic-search")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"the results file (default: {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--jobs", type=int, default=1, help="configurations run side by side (one thread each)")
    return parser


def record_evaluations(pairs: list[tuple[str, str]], results: Path, parser: argparse.ArgumentParser) -> None:
    """``--record-eval NAME DIR ...``: every directory is read and checked before the results file is touched."""
    recorded = []
    for name, directory in pairs:
        results_file = Path(directory) / "results.json"
        if not results_file.exists():
            parser.error(f"--record-eval {name}: {results_file} does not exist; give the --out of a finished ddbench eval")
        try:
            recorded += eval_rows(name, json.loads(results_file.read_text()))
        except (NotAValidationEvaluation, UnreadableCommand) as refusal:
            parser.error(f"--record-eval {name}: {refusal}")
    record(recorded, results)
    for row in recorded:
        print(summary(row))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CONFIGURATIONS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGURATIONS)}")
    if not args.names and not args.record_eval:
        parser.error(f"name a configuration ({', '.join(CONFIGURATIONS)}) or --record-eval NAME DIR")
    if args.record_eval:
        record_evaluations(args.record_eval, args.results, parser)
        if not args.names:
            return 0
    rows, failures, lock = [], [], threading.Lock()

    def finish(name: str) -> None:
        try:
            row = run_one(name, args)
        except ConfigurationFailed as failure:  # the other configurations still run
            with lock:
                failures.append(str(failure))
            print(f"failed: {failure}", file=sys.stderr)
            return
        with lock:  # each row is recorded as soon as it is known
            rows.append(row)
            record([row], args.results)

    first, rest = args.names[0], args.names[1:]
    finish(first)  # alone: it trains the shared observer the others then load from the cache
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(finish, name) for name in rest]:
            future.result()
    for row in sorted(rows, key=lambda r: -r["validation_accuracy_mean"]):
        print(summary(row))
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
