"""benchmarks/gpu_suite.py is run only where a GPU is lent, for minutes: its commands must still
be valid when that happens. Every ddbench step parses with today's command-line parser, every
pytest step names files that exist, and ``--steps`` refuses a name it does not know."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ddbench.cli.arguments import build_parser

ROOT = Path(__file__).resolve().parent.parent


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_step_is_a_command_that_parses_today(tmp_path):
    steps = load_suite().suite_steps(sys.executable, str(tmp_path / "data"), tmp_path / "out")
    assert {"cuda_tests", "dm_matching", "ipc_table", "cross_arch"} <= set(steps)
    parser = build_parser()
    for name, command in steps.items():
        assert command[:2] == [sys.executable, "-m"], name
        if command[2] == "ddbench":
            args = parser.parse_args(command[3:])  # an unknown or renamed flag exits here
            assert args.device == "cuda", name
        else:
            assert command[2] == "pytest", name
            files = [part for part in command[3:] if part.endswith(".py")]
            assert files and all((ROOT / part).is_file() for part in files), (name, files)


def test_steps_refuses_an_unknown_name_and_lists_the_steps(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_suite().main(["--data-root", "x", "--steps", "ipc_table,nope"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown step(s) nope" in error and "ipc_table" in error and "cross_arch" in error
