"""The ``ddbench`` command line. Heavy imports (torch, plugins) happen inside the commands,
so ``ddbench --help`` answers at once."""

from __future__ import annotations

import argparse
import shlex
import sys

EXIT_USAGE = 2


def _seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` names them."""
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3) or a list (0,5,7), got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed, got {count}")
    return list(range(count))


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", help="dataset name (default: digits, embedded; see 'ddbench plugins')")
    parser.add_argument("--data-root", help="folder holding the dataset (torchvision layout, or class folders for imagefolder)")
    parser.add_argument("--download", action="store_true", help="download the dataset into --data-root where a network exists")
    parser.add_argument("--image-size", type=int, help="resize images to this many pixels a side (default: the dataset's)")


def _add_observer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="convnet3-bn", help="observer architecture (default: convnet3-bn: BatchNorm, so every method, SRe2L included, can share it)")
    parser.add_argument("--observer-seed", type=int, default=0, help="seed of the observer's training (default: 0)")
    parser.add_argument("--observer-epochs", type=int, help="override the observer recipe's epochs")
    parser.add_argument("--observer", dest="observer_checkpoint", metavar="PATH", help="use this observer checkpoint (safetensors) instead of the cache")
    parser.add_argument("--cache-dir", help="where observers are cached (default: $DDBENCH_CACHE or ~/.cache/ddbench)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddbench", description="Benchmark toolkit for dataset distillation (LIC, SRe2L and plugins).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="distill with each method on one shared observer, evaluate, print one table")
    run.add_argument("--method", required=True, help="the main method (see 'ddbench plugins')")
    run.add_argument("--baseline", action="append", default=[], help="a method to compare against (repeatable)")
    _add_data_args(run)
    run.add_argument("--ipc", type=int, default=10, help="images per class (default: 10)")
    _add_observer_args(run)
    run.add_argument("--verifier", help="architecture trained on the distilled set (default: the observer's)")
    run.add_argument("--evaluator", default="relabel", help="evaluator: relabel (soft labels from the observer, default), train (hard labels), or a plugin's")
    run.add_argument("--teacher", dest="teacher_checkpoint", metavar="PATH", help="soft-label teacher checkpoint (default: the observer)")
    run.add_argument("--validation", type=int, default=0, metavar="N",
                     help="hold out N training images per class (seeded) and report accuracy on them instead of the test set: for tuning")
    run.add_argument("--validation-seed", type=int, default=0, help="seed of the validation split (default: 0)")
    run.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="evaluation seeds: a count (3 = 0,1,2) or a list (default: 3)")
    run.add_argument("--distill-seed", type=int, default=0, help="seed of every method's distillation (default: 0)")
    run.add_argument("--budget", default="quick", help="evaluation budget preset: quick, paper, paper-imagenet (default: quick)")
    run.add_argument("--budget-set", action="append", default=[], metavar="KEY=VALUE", help="override one budget field (repeatable)")
    run.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE", help="set one method option (repeatable)")
    run.add_argument("--eval-option", action="append", default=[], metavar="KEY=VALUE", help="set one evaluator option (repeatable)")
    run.add_argument("--out", help="output folder (default: runs/<dataset>-<arch>-ipc<K>)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    commands.add_parser("plugins", help="list every method, evaluator, dataset and architecture with its plugin and version")

    observer = commands.add_parser("observer", help="observer commands")
    observer_commands = observer.add_subparsers(dest="observer_command", metavar="SUBCOMMAND")
    train = observer_commands.add_parser("train", help="train (or load from the cache) the observer for a dataset and architecture")
    _add_data_args(train)
    _add_observer_args(train)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _method_options(assignments: list[str]) -> dict[str, list[str]]:
    from ddbench.options import OptionError

    grouped: dict[str, list[str]] = {}
    for assignment in assignments:
        head, _, value = assignment.partition("=")
        method, dot, key = head.partition(".")
        if not dot or not key or not _:
            raise OptionError(f"--option takes METHOD.KEY=VALUE, got {assignment!r}")
        grouped.setdefault(method, []).append(f"{key}={value}")
    return grouped


def cmd_run(args: argparse.Namespace) -> int:
    from ddbench.budget import resolve_budget
    from ddbench.report import ConsoleUI
    from ddbench.runner import RunConfig, run

    config = RunConfig(
        methods=[args.method, *args.baseline], dataset=args.dataset, data_root=args.data_root, download=args.download,
        image_size=args.image_size, ipc=args.ipc, arch=args.arch, verifier=args.verifier, evaluator=args.evaluator,
        seeds=args.seeds, distill_seed=args.distill_seed, budget=resolve_budget(args.budget, args.budget_set),
        method_options=_method_options(args.option), evaluator_options=args.eval_option,
        observer_seed=args.observer_seed, observer_epochs=args.observer_epochs,
        observer_checkpoint=args.observer_checkpoint, teacher_checkpoint=args.teacher_checkpoint,
        validation_per_class=args.validation, validation_seed=args.validation_seed,
        cache_dir=args.cache_dir, device=args.device, out=args.out,
        command=shlex.join(["ddbench", *sys.argv[1:]]),
    )
    with ConsoleUI(quiet=args.quiet) as ui:
        results = run(config, ui)
    failed = [name for name, entry in results["methods"].items() if "error" in entry]
    if failed:
        print(f"ddbench: error: method(s) {', '.join(failed)} failed; see the table and results.json", file=sys.stderr)
        return 1
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ddbench import registry
    from ddbench.plugins import load_errors

    table = Table(title="ddbench plugins")
    for column in ("kind", "name", "plugin", "version", "description"):
        table.add_column(column)
    for kind, (_, noun) in registry.KINDS.items():
        for name, entry in registry.registered(kind).items():
            description = getattr(entry.item, "description", None) or (type(entry.item).__doc__ or "").strip().split("\n")[0]
            table.add_row(noun, name, entry.plugin.name, entry.plugin.version, description)
    console = Console()
    console.print(table)
    for error in load_errors():
        console.print(f"[red]plugin {error.name!r} failed to load:[/red] {error.error}", highlight=False)
    return 0


def cmd_observer_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench import registry
    from ddbench.contracts import DataOptions
    from ddbench.measure import resolve_device
    from ddbench.observer import default_recipe, get_observer
    from ddbench.report import ConsoleUI

    arch = registry.get_architecture(args.arch)
    dataset = registry.get_dataset(args.dataset).load(DataOptions(args.data_root, args.download, args.image_size))
    with ConsoleUI(quiet=args.quiet) as ui:
        observer = get_observer(
            dataset, arch, resolve_device(args.device), seed=args.observer_seed,
            recipe=default_recipe(dataset.name, epochs=args.observer_epochs),
            cache=Path(args.cache_dir) if args.cache_dir else None,
            checkpoint=Path(args.observer_checkpoint) if args.observer_checkpoint else None,
            progress_factory=ui.progress,
        )
    state = "trained now" if observer.trained_now else "loaded"
    print(f"observer {arch.name} on {dataset.name}: test accuracy {observer.test_accuracy:.2f}% ({state}) at {observer.checkpoint}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: shown as one line, no traceback."""
    from ddbench.budget import BudgetError
    from ddbench.data.errors import DataRootError
    from ddbench.io import ArtifactError
    from ddbench.observer import ObserverMismatchError
    from ddbench.options import OptionError
    from ddbench.registry import UnknownNameError
    from ddbench.runner import RunError

    return (BudgetError, DataRootError, ArtifactError, ObserverMismatchError, OptionError, UnknownNameError, RunError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ddbench import __version__

        print(f"ddbench {__version__}")
        return 0
    handlers = {"run": cmd_run, "plugins": cmd_plugins}
    if args.command == "observer":
        if args.observer_command != "train":
            parser.parse_args(["observer", "--help"])
        handler = cmd_observer_train
    elif args.command in handlers:
        handler = handlers[args.command]
    else:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except _user_errors() as exc:
        print(f"ddbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
