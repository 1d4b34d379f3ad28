"""The command line's parser: every command's flags, grouped in its help (data, methods, evaluation, output, distributed)."""

from __future__ import annotations

import argparse


EXIT_USAGE = 2


def _seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` names them; ``2,`` names seed 2 alone."""
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
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed, got {count}: a number is a count of seeds "
                                         f"(3 = 0,1,2); to name one seed, end it with a comma (2, = seed 2 alone)")
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


def _finite_at_least(flag: str, low: float, above: bool = False):
    """A finite number ``>= low`` (``> low`` with ``above``) for ``flag``; anything else is refused by name."""

    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number {'above' if above else 'of at least'} "
                                             f"{low:g}, got {text}")
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
    parser.add_argument("--data-memory-gib", type=_finite_at_least("--data-memory-gib", 0), default=2.0, metavar="GIB",
                        help="image folders that fit in this many GiB at the working size are decoded once, kept as "
                             "8-bit pixels and saved under --cache-dir for later runs; larger ones stream (default: 2)")
    parser.add_argument("--data-workers", type=_at_least("--data-workers", 0), metavar="N",
                        help="processes that decode image files (default: one less than the CPUs, at most 8; 0: none)")


def _add_observer_args(parser: argparse.ArgumentParser, single: bool = True, arch_help: str | None = None) -> None:
    """Observer arguments; ``single=False`` (grids of observers) leaves out ``--arch`` and ``--observer``."""
    if single:
        parser.add_argument("--arch", help=arch_help or "observer architecture (default: the dataset's: convnet3-bn, BatchNorm, so "
                                                        "every method, SRe2L included, can share it; convnet3-bn-w64 on the "
                                                        "embedded digits)")
    parser.add_argument("--observer-seed", type=int, default=0, help="seed of the observer's training (default: 0)")
    parser.add_argument("--observer-epochs", type=_at_least("--observer-epochs", 1, "an untrained observer scores and labels nothing"), help="override the observer recipe's epochs")
    parser.add_argument("--observer-shift", type=float, metavar="FRACTION", help="override the observer recipe's random shift crops, up to this fraction of the image side (default: 0.125, CIFAR's pad-4 crops at 32 px, on colour datasets; 0 on the digits, MNIST and Fashion-MNIST; 0: flips only, the recipe before 0.125)")
    parser.add_argument("--observer-low-res", type=float, metavar="SHARE", help="override the observer recipe's share of training views shown at half resolution, shrunk and enlarged back as the tiles of a 2 x 2 squeeze are (default: 0, none)")
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
    parser.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="evaluation seeds: a count (3 = 0,1,2) or a list (0,5,7; one seed: 2,) (default: 3)")
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
                 "observer_epochs", "observer_shift", "observer_low_res", "observer_checkpoint", "cache_dir", "plan"],
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
    run.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
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
    evaluate.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
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
    cross.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")

    bench = commands.add_parser("bench", help="time to distill 100 images at batch size 100 and peak memory, per method and observer (Table 3)")
    bench.add_argument("--methods", type=_names, required=True, help="comma list of methods (lic,sre2l)")
    _add_data_args(bench)
    _add_observer_args(bench, arch_help="observer architecture(s), a comma list (default: the dataset's, as for run)")
    bench.add_argument("--bench-iterations", type=_at_least("--bench-iterations", 1), default=5, metavar="K",
                       help="timed runs of K and 2K iterations after a 1-iteration warm-up; the full run is projected (default: 5)")
    bench.add_argument("--batch-size", type=_at_least("--batch-size", 1), default=100, help="the methods' batch_size option (default: 100, as in the paper)")
    bench.add_argument("--distill-seed", type=int, default=0, help="seed of every distillation (default: 0)")
    bench.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                       help="set one method option (repeatable); METHOD.iterations=N sets the full run the time is projected to")
    bench.add_argument("--out", help="output folder (default: runs/<dataset>-bench)")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")

    ablate = commands.add_parser("ablate", help="the ablations a method declares (lic: Table 7, M, N, feature layer): one table, a plot each")
    ablate.add_argument("method", nargs="?", help="the method whose ablations run (e.g. lic; or --method lic)")
    ablate.add_argument("--method", dest="method_flag", metavar="METHOD", help="the same as the positional METHOD")
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
    ablate.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
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
    train.add_argument("--progress-every", type=_finite_at_least("--progress-every", 0, above=True), default=30.0, metavar="SECONDS",
                        help="when stderr is not a terminal (a log file): one progress line per stage and every SECONDS (default: 30)")
    return parser
