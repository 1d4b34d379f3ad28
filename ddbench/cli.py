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
            seeds = [int(part) for part in text.split(",") if part.strip()]
            repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
            if repeated:
                raise argparse.ArgumentTypeError(
                    f"--seeds lists seed {', '.join(map(str, repeated))} more than once: a repeated seed repeats the same "
                    f"run and shrinks the std; give distinct seeds (0,1,2) or a count (3)")
            if not seeds:
                raise argparse.ArgumentTypeError("--seeds needs at least one seed")
            return seeds
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3) or a list (0,5,7), got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed, got {count}")
    return list(range(count))


MIN_IMAGE_SIZE = 8  # the smallest side the built-in observers take (three 2x poolings)


def _at_least(flag: str, low: int, fix: str = ""):
    """An integer ``>= low`` for ``flag``; anything else is refused by name, with the fix."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {low}, got {value}" + (f"; {fix}" if fix else ""))
        return value

    return parse


def _ints(flag: str):
    """A comma list of integers (``1,10,50``) for ``flag``."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer or a comma list (1,10,50), got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} needs at least one value")
        return values

    return parse


def _names(text: str) -> list[str]:
    """A comma list of names (``lic,sre2l``)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", help="dataset name (default: digits, embedded; see 'ddbench plugins')")
    parser.add_argument("--data-root", help="folder holding the dataset (torchvision layout, or class folders for imagefolder)")
    parser.add_argument("--download", action="store_true", help="download the dataset into --data-root where a network exists")
    parser.add_argument("--image-size", type=_at_least("--image-size", MIN_IMAGE_SIZE, "leave it out for the dataset's own size"), help="resize images to this many pixels a side (default: the dataset's)")
    parser.add_argument("--data-memory-gib", type=float, default=2.0, metavar="GIB",
                        help="image folders that fit in this many GiB at the working size are decoded once, kept as "
                             "8-bit pixels and saved under --cache-dir for later runs; larger ones stream (default: 2)")
    parser.add_argument("--data-workers", type=_at_least("--data-workers", 0), metavar="N",
                        help="processes that decode image files (default: one less than the CPUs, at most 8; 0: none)")


def _add_observer_args(parser: argparse.ArgumentParser, single: bool = True, arch_help: str | None = None) -> None:
    """Observer arguments; ``single=False`` (grids of observers) leaves out ``--arch`` and ``--observer``."""
    if single:
        parser.add_argument("--arch", default="convnet3-bn", help=arch_help or "observer architecture (default: convnet3-bn: BatchNorm, so every method, SRe2L included, can share it)")
    parser.add_argument("--observer-seed", type=int, default=0, help="seed of the observer's training (default: 0)")
    parser.add_argument("--observer-epochs", type=_at_least("--observer-epochs", 1, "an untrained observer scores and labels nothing"), help="override the observer recipe's epochs")
    if single:
        parser.add_argument("--observer", dest="observer_checkpoint", metavar="PATH", help="use this observer checkpoint instead of the cache: a ddbench safetensors file, or a .pt/.pth state_dict of --arch (loaded with weights_only=True)")
    parser.add_argument("--cache-dir", help="where observers are cached (default: $DDBENCH_CACHE or ~/.cache/ddbench)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def _add_evaluation_args(parser: argparse.ArgumentParser, evaluator_help: str | None = None, methods: bool = True) -> None:
    """How distilled sets are evaluated, seeds, budget and method options (shared by run and the grids)."""
    parser.add_argument("--evaluator", default="relabel", help=evaluator_help or "evaluator: relabel (soft labels from the observer, default), train (hard labels), or a plugin's")
    parser.add_argument("--teacher", dest="teacher_checkpoint", metavar="PATH", help="soft-label teacher checkpoint (default: the observer)")
    parser.add_argument("--validation", type=_at_least("--validation", 0, "0 evaluates on the test split"), default=0, metavar="N",
                        help="hold out N training images per class (seeded) and report accuracy on them instead of the test set: for tuning")
    parser.add_argument("--validation-seed", type=int, default=0, help="seed of the validation split (default: 0)")
    parser.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="evaluation seeds: a count (3 = 0,1,2) or a list (default: 3)")
    if methods:
        parser.add_argument("--distill-seed", type=int, default=0, help="seed of every method's distillation (default: 0)")
        parser.add_argument("--distill-seeds", type=_at_least("--distill-seeds", 1), default=1, metavar="K",
                            help="distil each method K times (seeds --distill-seed, +1, ...); accuracy is then mean ± std "
                                 "over all (distill seed, evaluation seed) pairs, with the spread split by source (default: 1)")
        parser.add_argument("--compare-random", action="store_true",
                            help="add random real images at the same IPC under the same evaluator, and DD-Ranking's "
                                 "Hard Label Recovery, Improvement Over Random and score for every method")
    parser.add_argument("--budget", default="quick", help="evaluation budget preset: quick, paper, paper-imagenet (default: quick)")
    parser.add_argument("--budget-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one budget field (repeatable; the same as --option budget.KEY=VALUE)")
    parser.add_argument("--option", action="append", default=[], metavar="SCOPE.KEY=VALUE",
                        help="set one value (repeatable): a method option (lic.lr=0.01), a budget field (budget.epochs=300) "
                             "or an evaluator option (eval.temperature=4)")
    parser.add_argument("--eval-option", action="append", default=[], metavar="KEY=VALUE",
                        help="set one evaluator option (repeatable; the same as --option eval.KEY=VALUE)")
    parser.add_argument("--dist-eval", default="auto", choices=("auto", "seeds", "ddp"),
                        help="under torchrun: spread the seeds over the ranks, or train each seed on all ranks with "
                             "DistributedDataParallel (auto: seeds when there are at least as many seeds as ranks)")


HELP_GROUPS = {
    "data": (["dataset", "data_root", "download", "image_size", "data_memory_gib", "data_workers", "paths"],
             "e.g. --dataset fashion-mnist --data-root ../shared/data; "
             "--dataset imagefolder --data-root ../shared/data/tiny-imagenet-10 --image-size 32"),
    "methods": (["method", "baseline", "ipc", "option", "distill_seed", "distill_seeds", "arch", "observer_seed",
                 "observer_epochs", "observer_checkpoint", "cache_dir", "plan"],
                "e.g. --method lic --baseline sre2l --ipc 10; --method lic --option lic.n=9 --arch convnet4-bn"),
    "evaluation": (["evaluator", "teacher_checkpoint", "validation", "validation_seed", "seeds", "budget", "budget_set",
                    "eval_option", "compare_random", "verifier", "pixels"],
                   "e.g. --evaluator train --seeds 5; --budget paper --option eval.temperature=4 --validation 50"),
    "output": (["config", "out", "quiet", "progress_every"],
               "e.g. --out runs/my-run (then --config runs/my-run/config.toml repeats it); --progress-every 60 > log 2>&1"),
    "distributed": (["device", "dist_eval"],
                    "e.g. --device cuda:1; torchrun --nproc-per-node 4 -m ddbench run ... --dist-eval ddp"),
}


def _grouped_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Move the command's flags into the help groups (data, methods, evaluation, output,
    distributed), each with two examples."""
    for title, (dests, examples) in HELP_GROUPS.items():
        members = [a for g in parser._action_groups for a in g._group_actions if a.dest in dests]
        if not members:
            continue
        group = parser.add_argument_group(title, examples)
        for action in members:
            for other in parser._action_groups:
                if action in other._group_actions and other is not group:
                    other._group_actions.remove(action)
            group._group_actions.append(action)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddbench", description="Benchmark toolkit for dataset distillation (LIC, SRe2L and plugins).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="distill with each method on one shared observer, evaluate, print one table")
    run.add_argument("--config", metavar="TOML", help="read the run from a config file (any flag by its long name, "
                     "[budget], [eval], [options.METHOD]); flags given here win. A run folder's config.toml repeats that run")
    run.add_argument("--method", help="the main method (see 'ddbench plugins'); required unless --config names it")
    run.add_argument("--baseline", action="append", default=[], help="a method to compare against (repeatable)")
    _add_data_args(run)
    run.add_argument("--ipc", type=_ints("--ipc"), default=[10], help="images per class (default: 10); a comma list (1,10,50) runs an IPC sweep and plots accuracy against IPC")
    _add_observer_args(run)
    run.add_argument("--verifier", help="architecture trained on the distilled set (default: the observer's)")
    _add_evaluation_args(run)
    run.add_argument("--out", help="output folder (default: runs/<dataset>-<arch>-ipc<K>; an IPC list: runs/<dataset>-<arch>-ipc-sweep)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")
    run.add_argument("--plan", metavar="SHAPE",
                     help="print every stage's forward/backward passes and peak memory for a dataset of this shape, and "
                          "run nothing: imagenet-1k, tiny-imagenet, cifar100, cifar10, or "
                          "classes=N,train=N,test=N,size=N,channels=N")

    evaluate = commands.add_parser("eval", help="evaluate saved distilled sets as they are (no distillation), one table")
    evaluate.add_argument("--config", metavar="TOML", help="read flags from a config file (as for ddbench run)")
    evaluate.add_argument("paths", nargs="*", metavar="PATH",
                          help="distilled sets: ddbench .safetensors files, image folders (<dir>/<class>/*.png), DD-Ranking "
                               "folders (images.pt, labels.pt), or tensor files (.safetensors/.pt with images, labels, "
                               "optional soft_labels or soft_logits)")
    evaluate.add_argument("--pixels", default="normalized", choices=("normalized", "unit"),
                          help="how tensor files from other tools hold pixels: normalised with the dataset's statistics "
                               "(default) or in [0, 1]")
    _add_data_args(evaluate)
    _add_observer_args(evaluate, arch_help="observer (soft-label source) architecture (default: the one the first set records)")
    evaluate.add_argument("--verifier", help="architecture trained on the distilled sets (default: the observer's)")
    _add_evaluation_args(evaluate, methods=False)
    evaluate.add_argument("--out", help="output folder (default: runs/<dataset>-<arch>-eval)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")
    evaluate.set_defaults(dataset=None, arch=None, option=[], distill_seed=0)
    for action in evaluate._actions:
        if action.dest == "dataset":
            action.help = "dataset the sets were distilled from (default: the one the first set records)"
    _grouped_help(run)
    _grouped_help(evaluate)

    export = commands.add_parser("export", help="write a saved distilled set as an image folder or in DD-Ranking's layout")
    export.add_argument("path", metavar="PATH", help="a distilled set saved by ddbench (distilled/<method>-<key>.safetensors)")
    export.add_argument("--format", required=True, choices=("imagefolder", "ddranking"),
                        help="imagefolder: 8-bit PNGs per class; ddranking: images.pt + labels.pt (observer logits) + hard_labels.pt")
    export.add_argument("--out", required=True, help="the folder to create (must not exist)")
    export.add_argument("--ddranking-dataset", metavar="NAME",
                        help="DD-Ranking's name for imagefolder data: TinyImageNet, ImageNet1K or an ImageNet subset "
                             "(ImageNette, ImageWoof, ...); cifar10 and cifar100 map by themselves")
    _add_data_args(export)
    _add_observer_args(export, arch_help="observer for DD-Ranking's soft labels (default: the one the set records)")
    export.set_defaults(dataset=None, arch=None)

    cross = commands.add_parser("cross-arch", help="every method distilled once per observer, evaluated on every verifier (the paper's Table 2)")
    cross.add_argument("--methods", type=_names, required=True, help="comma list of methods, the main one first (lic,sre2l)")
    cross.add_argument("--observers", type=_names, required=True, help="comma list of observer architectures (convnet3-bn,resnet18)")
    cross.add_argument("--verifiers", type=_names, help="comma list of verifier architectures (default: the observers)")
    _add_data_args(cross)
    cross.add_argument("--ipc", type=_at_least("--ipc", 1), default=10, help="images per class (default: 10)")
    _add_observer_args(cross, single=False)
    _add_evaluation_args(cross)
    cross.add_argument("--out", help="output folder (default: runs/<dataset>-cross-arch-ipc<K>)")
    cross.add_argument("--quiet", action="store_true", help="no progress bars")
    cross.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")

    bench = commands.add_parser("bench", help="time to distill 100 images at batch size 100 and peak memory, per method and observer (Table 3)")
    bench.add_argument("--methods", type=_names, required=True, help="comma list of methods (lic,sre2l)")
    _add_data_args(bench)
    _add_observer_args(bench, arch_help="observer architecture(s), a comma list (default: convnet3-bn)")
    bench.add_argument("--bench-iterations", type=_at_least("--bench-iterations", 1), default=5, metavar="K",
                       help="timed runs of K and 2K iterations after a 1-iteration warm-up; the full run is projected (default: 5)")
    bench.add_argument("--batch-size", type=_at_least("--batch-size", 1), default=100, help="the methods' batch_size option (default: 100, as in the paper)")
    bench.add_argument("--distill-seed", type=int, default=0, help="seed of every distillation (default: 0)")
    bench.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                       help="set one method option (repeatable); METHOD.iterations=N sets the full run the time is projected to")
    bench.add_argument("--out", help="output folder (default: runs/<dataset>-bench)")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")

    ablate = commands.add_parser("ablate", help="the ablations a method declares (lic: Table 7, M, N, feature layer): one table, a plot each")
    ablate.add_argument("method", help="the method whose ablations run (e.g. lic)")
    ablate.add_argument("--sweeps", type=_names, help="comma list of the method's ablations (default: all it declares; "
                                                       "lic: table7, m, n, layer)")
    ablate.add_argument("--values", action="append", default=[], metavar="NAME=1,2,3",
                        help="values of one ablation (repeatable), e.g. m=0,50,100,200 or n=1,4,9 for lic")
    _add_data_args(ablate)
    ablate.add_argument("--ipc", type=_at_least("--ipc", 1), default=10, help="images per class (default: 10)")
    _add_observer_args(ablate)
    ablate.add_argument("--verifier", help="architecture trained on the distilled set (default: the observer's)")
    _add_evaluation_args(ablate, evaluator_help="evaluator of the ablations' points (default: relabel); points may set their own")
    ablate.add_argument("--out", help="output folder (default: runs/<dataset>-<arch>-ablate-ipc<K>)")
    ablate.add_argument("--quiet", action="store_true", help="no progress bars")
    ablate.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")

    compare = commands.add_parser("compare", help="one sortable table of many runs' results.json, grouped by dataset and IPC")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or results.json files)")
    compare.add_argument("--html", metavar="FILE", help="also write the table as one self-contained HTML page")

    plugins = commands.add_parser("plugins", help="list every method, evaluator, dataset and architecture with its plugin and version")
    plugins.add_argument("--json", action="store_true", help="print the list as JSON (with every option, default and doc)")
    plugins.add_argument("--options", action="store_true", help="also list every option of every method and evaluator")

    observer = commands.add_parser("observer", help="observer commands")
    observer_commands = observer.add_subparsers(dest="observer_command", metavar="SUBCOMMAND")
    train = observer_commands.add_parser("train", help="train (or load from the cache) the observer for a dataset and architecture")
    _add_data_args(train)
    _add_observer_args(train)
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")
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


def _command_line() -> str:
    return shlex.join(["ddbench", *sys.argv[1:]])


def _run_config(args: argparse.Namespace, methods: list[str], **fields):
    """A RunConfig from the arguments every comparison command shares; ``fields`` add the rest."""
    from ddbench.budget import resolve_budget
    from ddbench.config_file import route_dotted
    from ddbench.runner import RunConfig

    method_assignments, budget_set, eval_options = route_dotted(getattr(args, "option", []))
    args.option, args.budget_set, args.eval_option = method_assignments, args.budget_set + budget_set, args.eval_option + eval_options
    return RunConfig(
        methods=methods, dataset=args.dataset, data_root=args.data_root, download=args.download,
        image_size=args.image_size, data_memory_gib=args.data_memory_gib, data_workers=args.data_workers,
        evaluator=args.evaluator,
        seeds=args.seeds, distill_seed=args.distill_seed, budget=resolve_budget(args.budget, args.budget_set),
        distill_seeds=getattr(args, "distill_seeds", 1), compare_random=getattr(args, "compare_random", False),
        method_options=_method_options(args.option), evaluator_options=args.eval_option,
        observer_seed=args.observer_seed, observer_epochs=args.observer_epochs,
        teacher_checkpoint=args.teacher_checkpoint,
        validation_per_class=args.validation, validation_seed=args.validation_seed,
        cache_dir=args.cache_dir, device=args.device, out=args.out, command=_command_line(), dist_eval=args.dist_eval,
        **fields,
    )


def _exit_code(failed: list[str], where: str) -> int:
    if failed:
        print(f"ddbench: error: method(s) {', '.join(failed)} failed; see the table and {where}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ddbench.report import ConsoleUI
    from ddbench.runner import RunError, run

    if not args.method:
        raise RunError("name the main method: --method M (see 'ddbench plugins'), or method = \"M\" in a --config file")

    config = _run_config(args, [args.method, *args.baseline], ipc=args.ipc[0], arch=args.arch, verifier=args.verifier,
                         observer_checkpoint=args.observer_checkpoint)
    if args.plan:
        return print_plan(config, args.plan)
    if len(args.ipc) > 1:
        from ddbench.harness.sweep import ipc_sweep

        with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
            summary = ipc_sweep(config, args.ipc, ui)
        failed = sorted({p["method"] for p in summary["points"] if "error" in p})
        return _exit_code(failed, "ipc-sweep.json")
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        results = run(config, ui)
    failed = [name for name, entry in results["methods"].items() if "error" in entry]
    return _exit_code(failed, "results.json")


def print_plan(config, shape_text: str) -> int:
    """``ddbench run --plan SHAPE``: the cost of every stage from shapes alone; nothing runs."""
    from rich.console import Console

    from ddbench.planner import estimate_run, parse_shape, plan_table
    from ddbench.runner import RunError, plan_run

    try:
        shape = parse_shape(shape_text)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    plan = plan_run(config)
    stages = estimate_run(config, plan, shape)
    title = (f"plan: {', '.join(config.methods)} at IPC {config.ipc} on {shape.train:,} training images of "
             f"{shape.channels}x{shape.size}x{shape.size}, {shape.classes} classes; observer {plan.observer_arch.name}, "
             f"verifier {plan.verifier_arch.name}; budget {config.budget.preset} ({config.budget.epochs} epochs), "
             f"{len(config.seeds)} seeds")
    Console(width=200).print(plan_table(stages, title))
    return 0


def _observer_from_metadata(args: argparse.Namespace, meta: dict) -> None:
    """``--observer``/``--arch`` defaults for a saved set: the observer checkpoint it records when
    that file is on this machine (and neither flag was given), else its architecture from the cache."""
    from pathlib import Path

    recorded = meta.get("observer") or {}
    if not args.arch and not args.observer_checkpoint and Path(str(recorded.get("checkpoint"))).is_file():
        args.observer_checkpoint = recorded["checkpoint"]
    args.arch = args.arch or recorded.get("architecture") or "convnet3-bn"


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench.io import read_metadata
    from ddbench.report import ConsoleUI
    from ddbench.runner import RunError, is_ddbench_set, run

    if not args.paths:
        raise RunError("name at least one distilled set to evaluate: ddbench eval PATH ...")
    missing = [path for path in args.paths if not Path(path).exists()]
    if missing:
        raise RunError(f"no such file or folder: {', '.join(missing)}")
    first_path = Path(args.paths[0])
    first = read_metadata(first_path) if is_ddbench_set(first_path) else {}
    if not first and not args.dataset:
        raise RunError(f"{first_path} is not a ddbench distilled set, so it does not say its dataset: pass --dataset "
                       f"(and --data-root) it was distilled from")
    args.dataset = args.dataset or first.get("dataset") or "digits"  # defaults come from the first set's metadata
    _observer_from_metadata(args, first)
    config = _run_config(args, [], ipc=int(first.get("ipc") or 1), arch=args.arch, verifier=args.verifier,
                         observer_checkpoint=args.observer_checkpoint, saved_sets=list(args.paths),
                         saved_pixels=args.pixels)
    if not args.out:
        config.out = str(Path("runs") / f"{args.dataset}-{args.arch}-eval")
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        results = run(config, ui)
    failed = [name for name, entry in results["methods"].items() if "error" in entry]
    return _exit_code(failed, "results.json")


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench import registry
    from ddbench.artifacts import load_distilled
    from ddbench.measure import resolve_device
    from ddbench.observer import default_recipe, get_observer
    from ddbench.runner import check_saved_fits, data_options
    from ddbench.ddranking_format import ddranking_dataset, export_ddranking
    from ddbench.set_formats import export_imagefolder, teacher_logits

    path = Path(args.path)
    distilled, meta = load_distilled(path)
    args.dataset = args.dataset or meta.get("dataset") or "digits"
    dataset = registry.get_dataset(args.dataset).load(data_options(args))
    check_saved_fits(meta, dataset, path)
    if args.format == "imagefolder":
        target = export_imagefolder(distilled, dataset.normalization, list(dataset.class_names), Path(args.out))
        print(f"wrote {len(distilled.images)} PNGs to {target}/<class>/ (8-bit: pixels rounded to 1/255)")
        return 0
    ddranking_dataset(dataset, args.ddranking_dataset)  # refuse what DD-Ranking cannot read before any work
    _observer_from_metadata(args, meta)
    arch = registry.get_architecture(args.arch)
    device = resolve_device(args.device)
    observer = get_observer(dataset, arch, device, seed=args.observer_seed,
                            recipe=default_recipe(dataset.name, epochs=args.observer_epochs),
                            cache=Path(args.cache_dir) if args.cache_dir else None,
                            checkpoint=Path(args.observer_checkpoint) if args.observer_checkpoint else None)
    logits = teacher_logits(observer.model, distilled.images, device)
    target, theirs = export_ddranking(distilled, logits, dataset, Path(args.out), {
        "ddbench_dataset": dataset.name, "class_names": list(dataset.class_names), "source": str(path),
        "method": distilled.method, "observer": observer.describe(), "tile_grid": distilled.tile_grid},
        requested=args.ddranking_dataset)
    print(f"wrote {target}/images.pt (normalised with DD-Ranking's {theirs.name} statistics), labels.pt (observer "
          f"{arch.name} logits), hard_labels.pt, meta.json")
    return 0


def cmd_cross_arch(args: argparse.Namespace) -> int:
    from ddbench.harness.crossarch import cross_arch
    from ddbench.report import ConsoleUI

    config = _run_config(args, args.methods, ipc=args.ipc, arch=args.observers[0])
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = cross_arch(config, args.observers, args.verifiers or args.observers, ui)
    failed = sorted({c["method"] for c in summary["cells"] if "error" in c})
    return _exit_code(failed, "cross-arch.json")


def cmd_bench(args: argparse.Namespace) -> int:
    from ddbench.harness.bench import BenchConfig, bench
    from ddbench.report import ConsoleUI

    config = BenchConfig(
        methods=args.methods, archs=_names(args.arch), dataset=args.dataset, data_root=args.data_root,
        download=args.download, image_size=args.image_size, method_options=_method_options(args.option),
        bench_iterations=args.bench_iterations, batch_size=args.batch_size, distill_seed=args.distill_seed,
        observer_seed=args.observer_seed, observer_epochs=args.observer_epochs, observer_checkpoint=args.observer_checkpoint,
        cache_dir=args.cache_dir, device=args.device, out=args.out, command=_command_line(),
    )
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = bench(config, ui)
    failed = sorted({row["method"] for row in summary["rows"] if "error" in row})
    return _exit_code(failed, "bench.json")


def _sweep_values(assignments: list[str]) -> dict[str, list[int]]:
    from ddbench.options import OptionError

    values = {}
    for assignment in assignments:
        name, _, text = assignment.partition("=")
        try:
            values[name.strip()] = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise OptionError(f"--values takes NAME=1,2,3 (integers), got {assignment!r}") from None
        if not _ or not values[name.strip()]:
            raise OptionError(f"--values takes NAME=1,2,3, got {assignment!r}")
    return values


def cmd_ablate(args: argparse.Namespace) -> int:
    from ddbench.harness.ablate import ablate
    from ddbench.report import ConsoleUI

    config = _run_config(args, [args.method], ipc=args.ipc, arch=args.arch, verifier=args.verifier,
                         observer_checkpoint=args.observer_checkpoint)
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = ablate(config, args.sweeps, _sweep_values(args.values), ui)
    failed = sorted({f"{r['sweep']} {r['label']}" for r in summary["rows"] if "error" in r})
    return _exit_code(failed, "ablate.json")


def plugin_records() -> list[dict]:
    """Every registered plugin item: kind, name, plugin, version, description, and its options
    (name, type, default, doc) for methods and evaluators."""
    import dataclasses

    from ddbench import registry
    from ddbench.options import option_docs

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

    from ddbench.html_report import compare_rows, write_compare
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

    from ddbench.plugins import load_errors

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


def cmd_observer_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench import registry
    from ddbench.measure import resolve_device
    from ddbench.observer import default_recipe, get_observer
    from ddbench.report import ConsoleUI
    from ddbench.runner import data_options

    arch = registry.get_architecture(args.arch)
    dataset = registry.get_dataset(args.dataset).load(data_options(args))
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
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


def _with_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None) -> argparse.Namespace:
    """The arguments again, with the config file's values as defaults: flags given win."""
    from ddbench.config_file import ConfigError, config_defaults, read_config

    command = parser._subparsers._group_actions[0].choices[args.command]  # the subcommand's parser
    try:
        defaults = config_defaults(read_config(args.config), vars(args), args.config)
    except ConfigError as exc:
        print(f"ddbench: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    for key in ("option", "budget_set", "eval_option"):  # repeatable flags: the file's, then the command line's
        defaults[key] = defaults.get(key, []) + getattr(args, key, [])
    if "seeds" in defaults:
        defaults["seeds"] = [int(s) for s in defaults["seeds"]]
    command.set_defaults(**defaults)
    again = parser.parse_args(argv)
    for key in ("option", "budget_set", "eval_option"):
        setattr(again, key, defaults[key])
    return again


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: shown as one line, no traceback."""
    import pickle

    from ddbench.budget import BudgetError
    from ddbench.data.errors import DataFileError, DataRootError
    from ddbench.io import ArtifactError
    from ddbench.observer import ObserverMismatchError
    from ddbench.options import OptionError
    from ddbench.registry import UnknownNameError
    from ddbench.runner import RunError

    from ddbench.distributed import DistributedError
    from ddbench.measure import DeviceError

    from ddbench.config_file import ConfigError

    return (ConfigError, BudgetError, DataRootError, DataFileError, ArtifactError, ObserverMismatchError, OptionError, UnknownNameError,
            RunError, DeviceError, DistributedError, pickle.UnpicklingError, OSError)


def user_error_line(exc: BaseException) -> str:
    """One line for a user's error: the message (from a DataLoader worker, the original error's
    last line), or for an OS error the reason, the path and the fix."""
    from ddbench.data.errors import DataRootError

    if isinstance(exc, OSError) and not isinstance(exc, DataRootError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}; check that the path exists, is the kind expected (file or folder) and is writable"
    message = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in message:  # re-raised from a DataLoader worker: keep the original error's message
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[-1] if ": " in last else last
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ddbench.version import __version__

        print(f"ddbench {__version__}")
        return 0
    if getattr(args, "config", None):
        args = _with_config_file(parser, args, argv)
    handlers = {"run": cmd_run, "eval": cmd_eval, "compare": cmd_compare, "export": cmd_export, "plugins": cmd_plugins, "cross-arch": cmd_cross_arch, "bench": cmd_bench, "ablate": cmd_ablate}
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
        print(f"ddbench: error: {user_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if "torch.distributed" in sys.modules:  # leave torchrun's process group, if this process joined it
            from ddbench.distributed import shutdown

            shutdown()
