"""The ``ddbench`` command line. Heavy imports (torch, plugins) happen inside the commands,
so ``ddbench --help`` answers at once."""

from __future__ import annotations

import sys

from ddbench.cli.arguments import EXIT_USAGE, build_parser
from ddbench.cli.common import _with_config_file
from ddbench.cli.harness_commands import cmd_ablate, cmd_bench, cmd_cross_arch, cmd_observer_train
from ddbench.cli.listing import cmd_compare, cmd_plugins, plugin_records
from ddbench.cli.run_commands import cmd_eval, cmd_export, cmd_run
from ddbench.runtime.host_allocator import keep_freed_host_memory

__all__ = ["main", "build_parser", "plugin_records", "user_error_line", "EXIT_USAGE"]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: shown as one line, no traceback."""
    import pickle

    from ddbench.settings.budget import BudgetError
    from ddbench.data.errors import DataFileError, DataRootError
    from ddbench.store.io import ArtifactError
    from ddbench.observer_files import ObserverMismatchError
    from ddbench.settings.options import OptionError
    from ddbench.host.registry import UnknownNameError
    from ddbench.runner import RunError

    from ddbench.runtime.distributed import DistributedError
    from ddbench.runtime.measure import DeviceError

    from ddbench.settings.config_file import ConfigError

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
    keep_freed_host_memory()
    finished = False
    try:
        code = handler(args)
        finished = True
        return code
    except _user_errors() as exc:
        print(f"ddbench: error: {user_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if "torch.distributed" in sys.modules:  # leave torchrun's process group, if this process joined it
            from ddbench.runtime.distributed import shutdown

            shutdown(together=finished)
