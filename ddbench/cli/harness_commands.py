"""``ddbench cross-arch``, ``bench``, ``ablate`` and ``observer train``."""

from __future__ import annotations

import argparse

from ddbench.cli.arguments import _names
from ddbench.cli.common import _command_line, _exit_code, _method_options, _run_config


def cmd_cross_arch(args: argparse.Namespace) -> int:
    from ddbench.harness.crossarch import cross_arch
    from ddbench.reporting.console import ConsoleUI
    from ddbench.runner import RunError

    if not args.observers:
        raise RunError("--observers must name at least one architecture (e.g. --observers convnet3-bn,resnet18)")
    config = _run_config(args, args.methods, ipc=args.ipc, arch=args.observers[0])
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = cross_arch(config, args.observers, args.verifiers or args.observers, ui)
    failed = sorted({c["method"] for c in summary["cells"] if "error" in c})
    return _exit_code(failed, "cross-arch.json")


def cmd_bench(args: argparse.Namespace) -> int:
    from ddbench.harness.bench import BenchConfig, bench
    from ddbench.reporting.console import ConsoleUI
    from ddbench.settings.observer_fields import observer_settings
    from ddbench.runner import RunConfig

    from ddbench.host import registry

    archs = _names(args.arch or registry.get_dataset(args.dataset).default_arch)
    run = RunConfig(
        methods=args.methods, dataset=args.dataset, data_root=args.data_root, download=args.download,
        image_size=args.image_size, data_memory_gib=args.data_memory_gib, data_workers=args.data_workers, arch=archs[0],
        distill_seed=args.distill_seed, method_options=_method_options(args.option), **observer_settings(args),
        device=args.device, out=args.out, command=_command_line())
    config = BenchConfig(run=run, archs=archs, bench_iterations=args.bench_iterations, batch_size=args.batch_size)
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = bench(config, ui)
    failed = sorted({row["method"] for row in summary["rows"] if "error" in row})
    return _exit_code(failed, "bench.json")


def _sweep_values(assignments: list[str]) -> dict[str, list[int]]:
    from ddbench.settings.options import OptionError

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
    from ddbench.reporting.console import ConsoleUI
    from ddbench.runner import RunError

    if args.method and args.method_flag and args.method != args.method_flag:
        raise RunError(f"ddbench ablate names two methods ({args.method!r} and --method {args.method_flag!r}); give one")
    method = args.method or args.method_flag
    if not method:
        raise RunError("ddbench ablate needs a method: ddbench ablate lic (or --method lic); 'ddbench plugins' lists them")
    config = _run_config(args, [method], ipc=args.ipc, arch=args.arch, verifier=args.verifier,
                         observer_checkpoint=args.observer_checkpoint)
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        summary = ablate(config, args.sweeps, _sweep_values(args.values), ui)
    failed = sorted({f"{r['sweep']} {r['label']}" for r in summary["rows"] if "error" in r})
    return _exit_code(failed, "ablate.json")


def cmd_observer_train(args: argparse.Namespace) -> int:
    from ddbench.host import registry
    from ddbench.runtime.measure import resolve_device
    from ddbench.observer import observer_for
    from ddbench.reporting.console import ConsoleUI
    from ddbench.runner import data_options
    from ddbench.pipeline.preflight import fingerprint_ahead

    spec = registry.get_dataset(args.dataset)
    arch = registry.get_architecture(args.arch or spec.default_arch)
    dataset = spec.load(data_options(args))
    device = resolve_device(args.device)
    with ConsoleUI(quiet=args.quiet, every=args.progress_every) as ui:
        fingerprint_ahead(dataset, ui)
        observer = observer_for(args, dataset, arch, device, progress_factory=ui.progress)
    state = "trained now" if observer.trained_now else "loaded"
    print(f"observer {arch.name} on {dataset.name}: test accuracy {observer.test_accuracy:.2f}% ({state}) at {observer.checkpoint}")
    return 0
