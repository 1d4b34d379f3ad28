"""What the commands share: the run configuration from the arguments, config files, exit codes."""

from __future__ import annotations

import argparse
import shlex
import sys

from ddbench.cli.arguments import EXIT_USAGE


def _method_options(assignments: list[str]) -> dict[str, list[str]]:
    from ddbench.settings.options import OptionError

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
    from ddbench.settings.budget import resolve_budget
    from ddbench.settings.config_file import route_dotted
    from ddbench.settings.observer_fields import recipe_settings
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
        observer_seed=args.observer_seed, **recipe_settings(args),
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


def arguments_with_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace,
                               argv: list[str] | None) -> argparse.Namespace:
    """The arguments again, with the config file's values as defaults: flags given win, and the
    repeatable flags (``--option``, ``--budget-set``, ``--eval-option``) hold the file's values,
    then the command line's. Raises ``ConfigError`` for a file that cannot be read."""
    from ddbench.settings.config_file import config_defaults, read_config

    command = parser._subparsers._group_actions[0].choices[args.command]  # the subcommand's parser
    defaults = config_defaults(read_config(args.config), vars(args), args.config)
    for key in ("option", "budget_set", "eval_option"):  # repeatable flags: the file's, then the command line's
        defaults[key] = defaults.get(key, []) + getattr(args, key, [])
    if "seeds" in defaults:
        defaults["seeds"] = [int(s) for s in defaults["seeds"]]
    command.set_defaults(**defaults)
    again = parser.parse_args(argv)
    for key in ("option", "budget_set", "eval_option"):
        setattr(again, key, defaults[key])
    return again


def _with_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None) -> argparse.Namespace:
    """:func:`arguments_with_config_file`, a file that cannot be read a usage error."""
    from ddbench.settings.config_file import ConfigError

    try:
        return arguments_with_config_file(parser, args, argv)
    except ConfigError as exc:
        print(f"ddbench: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
