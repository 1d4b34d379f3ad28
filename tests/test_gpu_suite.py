"""benchmarks/gpu_suite.py is run only where a GPU is lent, for minutes: its commands must still
be valid when that happens. Every ddbench step parses with today's command-line parser, every
pytest step names files that exist, and ``--steps`` refuses a name it does not know."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ddbench.cli.arguments import build_parser
from tests.conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


def load_suite():
    return load_benchmark("gpu_suite")


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


def test_a_deadline_cuts_the_running_step_skips_the_rest_and_the_bundle_keeps_the_text(tmp_path, monkeypatch, capsys):
    import json
    import tarfile

    suite = load_suite()
    monkeypatch.setattr(suite, "MIN_STEP_SECONDS", 1)  # the suite's 20 s, scaled down for a test
    out = tmp_path / "out"
    out.mkdir()
    (out / "results").mkdir()
    (out / "results" / "table.md").write_text("| lic | 52.9 |\n")
    (out / "results" / "set.safetensors").write_bytes(b"\0" * 100)  # a set: not bundled
    steps = {
        "quick": [sys.executable, "-c", "print('quick done')"],
        "slow": [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        "later": [sys.executable, "-c", "print('never')"],
    }
    archive = tmp_path / "text.tgz"
    summary = suite.run_steps(steps, list(steps), out, deadline=4, archive=archive)
    assert summary["quick"]["returncode"] == 0 and "cut" not in summary["quick"]
    assert "cut" in summary["slow"] and summary["slow"]["seconds"] < 20  # stopped at the deadline, not after 60 s
    assert "skipped" in summary["later"] and not (out / "later.log").exists()
    assert json.loads((out / "summary.json").read_text()).keys() == summary.keys()
    assert (out / "slow.log").read_text().startswith("started")
    printed = capsys.readouterr().out.splitlines()  # a line as each step starts and as it ends
    assert [line.split(":")[0] for line in printed] == ["quick", "quick", "slow", "slow", "later"]
    assert "started" in printed[2] and "cut at the deadline" in printed[3] and "skipped" in printed[4]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"quick.log", "slow.log", "summary.json", "results/table.md"} <= names
    assert "results/set.safetensors" not in names
