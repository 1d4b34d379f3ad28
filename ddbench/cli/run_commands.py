"""``ddbench run``, ``ddbench eval`` and ``ddbench export``."""

from __future__ import annotations

import argparse

from ddbench.cli.common import _exit_code, _run_config


def cmd_run(args: argparse.Namespace) -> int:
    from ddbench.reporting.console import ConsoleUI
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

    from ddbench.pipeline.planner import estimate_run, parse_shape, plan_table
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

    from ddbench.host import registry

    recorded = meta.get("observer") or {}
    if not args.arch and not args.observer_checkpoint and Path(str(recorded.get("checkpoint"))).is_file():
        args.observer_checkpoint = recorded["checkpoint"]
    args.arch = args.arch or recorded.get("architecture") or registry.default_arch(args.dataset)


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench.store.io import read_metadata
    from ddbench.reporting.console import ConsoleUI
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
        config.out = str(Path("runs") / f"{args.dataset}-{config.arch}-eval")
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        results = run(config, ui)
    failed = [name for name, entry in results["methods"].items() if "error" in entry]
    return _exit_code(failed, "results.json")


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ddbench.host import registry
    from ddbench.store.artifacts import load_distilled
    from ddbench.runtime.measure import resolve_device
    from ddbench.observer import observer_for
    from ddbench.runner import check_saved_fits, data_options
    from ddbench.interop.ddranking_format import ddranking_dataset, export_ddranking
    from ddbench.interop.set_formats import export_imagefolder, teacher_logits

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
    observer = observer_for(args, dataset, arch, device)
    logits = teacher_logits(observer.model, distilled.images, device)
    target, theirs = export_ddranking(distilled, logits, dataset, Path(args.out), {
        "ddbench_dataset": dataset.name, "class_names": list(dataset.class_names), "source": str(path),
        "method": distilled.method, "observer": observer.describe(), "tile_grid": distilled.tile_grid},
        requested=args.ddranking_dataset)
    print(f"wrote {target}/images.pt (normalised with DD-Ranking's {theirs.name} statistics), labels.pt (observer "
          f"{arch.name} logits), hard_labels.pt, meta.json")
    return 0
