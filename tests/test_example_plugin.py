"""The worked third-party plugin in examples/ddbench-class-mean: pip-installed, listed by
``ddbench plugins`` and run through ``ddbench run`` like any method."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli

EXAMPLE = REPO / "examples" / "ddbench-class-mean"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(EXAMPLE)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return {"PYTHONPATH": str(site), "COLUMNS": "250"}


def test_example_plugin_is_listed(installed):
    result = run_cli("plugins", env=installed)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "class-mean" in line)
    assert "class_mean" in row and "0.1.0" in row


def test_example_plugin_is_not_there_without_install():
    assert "class-mean" not in run_cli("plugins", env={"COLUMNS": "250"}).stdout


def test_example_plugin_runs_through_ddbench_run(installed, tmp_path):
    result = run_cli("run", "--method", "class-mean", "--baseline", "random", "--option", "class-mean.group=4", "--ipc", "2",
                     "--observer-epochs", "1", "--budget-set", "epochs=2", "--seeds", "1", "--evaluator", "train",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet", env=installed)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["methods"]) == ["class-mean", "random"]
    assert results["methods"]["class-mean"]["options"] == {"group": 4}
    assert results["methods"]["class-mean"]["num_images"] == 20


def test_example_plugin_keeps_the_contract():
    """What the guide (docs/plugins.md) tells an author to write: the contract checker."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from ddbench_class_mean import ClassMeanDistiller
    finally:
        sys.path.remove(str(EXAMPLE))
    from ddbench.testing import check_distiller

    check_distiller(ClassMeanDistiller(), options={"group": 4}, bad_options={"group": 0}, installed=False)
