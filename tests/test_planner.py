"""``ddbench run --plan SHAPE``: every stage's passes and memory from shapes alone, no data read."""

from __future__ import annotations

import pytest

from ddbench.settings.budget import resolve_budget
from ddbench.pipeline.planner import estimate_run, parse_shape
from ddbench.runner import RunConfig, plan_run
from tests.conftest import run_cli


def test_shapes_parse_and_bad_ones_are_named():
    assert parse_shape("imagenet-1k").train == 1281167 and parse_shape("cifar10").size == 32
    assert parse_shape("classes=5,train=100,test=10,size=16,channels=1").image == (1, 16, 16)
    with pytest.raises(ValueError, match="missing channels"):
        parse_shape("classes=5,train=100,test=10,size=16")
    with pytest.raises(ValueError, match="use a preset"):
        parse_shape("imagenet-22k")


def test_passes_follow_the_methods_options_and_the_budget():
    config = RunConfig(methods=["lic", "sre2l"], dataset="imagefolder", ipc=10, arch="convnet3-bn", seeds=[0],
                       budget=resolve_budget("quick"), observer_epochs=2,
                       method_options={"lic": ["iterations=7", "n=4", "chunk=3"], "sre2l": ["iterations=11"]})
    shape = parse_shape("classes=20,train=2000,test=100,size=32,channels=3")
    stages = {row["stage"]: row for row in estimate_run(config, plan_run(config), shape)}
    assert stages["observer convnet3-bn: 2 epochs"]["forward_passes"] == 2 * 2000
    compensate = stages["lic: compensate, M = 7"]
    assert compensate["backward_passes"] == 7 * 4 * 200 and compensate["forward_passes"] == 2 * 7 * 4 * 200
    assert "chunks of 3" in compensate["note"]
    assert stages["sre2l: recover, 11 iterations"]["backward_passes"] == 11 * 200
    evaluate = next(row for name, row in stages.items() if name.startswith("evaluate (relabel)"))
    assert evaluate["backward_passes"] == 150 * 4 * 50  # 150 epochs x ceil(200 / 50) steps x batch 50
    assert all(row["peak_memory_bytes"] >= 0 for row in stages.values())
    # a smaller chunk bounds LIC's memory
    config.method_options["lic"] = ["iterations=7", "n=4", "chunk=1"]
    small = {row["stage"]: row for row in estimate_run(config, plan_run(config), shape)}["lic: compensate, M = 7"]
    assert small["peak_memory_bytes"] * 3 == compensate["peak_memory_bytes"]
    # selection scores every subset image once, or each of its crops
    assert stages["lic: select"]["forward_passes"] == 20 * 100  # 2000 / 20 = 100 images a class, all of them
    config.method_options["lic"] = ["iterations=7", "crops=5"]
    cropped = {row["stage"]: row for row in estimate_run(config, plan_run(config), shape)}["lic: select"]
    assert cropped["forward_passes"] == 5 * 20 * 100 and "5 crops each" in cropped["note"]
    # unset N: 4 x IPC 10 is more than a third of these 100-image classes, so nothing is squeezed
    unset = {row["stage"]: row for row in estimate_run(config, plan_run(config), shape)}
    assert unset["lic: compensate, M = 0"]["backward_passes"] == 0 and "N = 1 tiles" in unset["lic: compensate, M = 0"]["note"]


def test_the_command_reads_no_data_and_trains_nothing(tmp_path):
    result = run_cli("run", "--method", "lic", "--baseline", "sre2l", "--dataset", "imagefolder", "--data-root",
                     str(tmp_path / "absent"), "--plan", "tiny-imagenet", "--arch", "convnet4-bn", "--option", "lic.n=4", "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(tmp_path / "out"), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "lic: compensate, M = 200" in result.stdout and "sre2l: recover, 4000 iterations" in result.stdout
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_the_observer_defaults_to_the_datasets_architecture(tmp_path):
    # the embedded digits default to the width-64 ConvNet-3 (README: "Defaults and where they come
    # from"); every other dataset to convnet3-bn; --arch always wins
    assert RunConfig(methods=["lic"]).arch == "convnet3-bn-w64"
    assert RunConfig(methods=["lic"], dataset="cifar10").arch == "convnet3-bn"
    assert RunConfig(methods=["lic"], arch="convnet4-bn").arch == "convnet4-bn"
    assert plan_run(RunConfig(methods=["lic"])).observer_arch.build(1, 10, 16).width == 64

    def planned(*args: str) -> str:
        result = run_cli("run", "--method", "lic", *args, "--plan", "classes=10,train=100,test=10,size=16,channels=1",
                         "--cache-dir", str(tmp_path / "cache"), env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "observer convnet3-bn-w64, verifier convnet3-bn-w64" in planned()
    assert "observer convnet3-bn, verifier convnet3-bn" in planned("--dataset", "cifar10")
    assert "observer convnet3-bn, verifier convnet3-bn-w64" in planned("--arch", "convnet3-bn", "--verifier",
                                                                       "convnet3-bn-w64")
    unknown = run_cli("run", "--method", "lic", "--dataset", "nosuch", "--plan", "cifar10")
    assert unknown.returncode != 0 and "unknown dataset 'nosuch'" in unknown.stderr and "digits" in unknown.stderr
