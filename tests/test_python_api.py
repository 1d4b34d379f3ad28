"""The Python API: ddbench.run and ddbench.evaluate return the results dict, with typed options."""

from __future__ import annotations

import torch

import ddbench
from baselines.squeeze import SqueezeOptions


def test_run_with_typed_options_returns_the_results(tmp_path):
    results = ddbench.run("random", baselines=["squeeze"], ipc=1, seeds=1, budget_fields={"epochs": 1},
                          options={"squeeze": SqueezeOptions(n=1)}, eval_options={"temperature": 2.0},
                          observer_epochs=1, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert list(results["methods"]) == ["random", "squeeze"]
    assert results["methods"]["squeeze"]["options"]["n"] == 1
    assert results["budget"]["epochs"] == 1 and results["evaluator"]["options"]["temperature"] == 2.0
    assert (tmp_path / "out" / "results.json").exists()


def test_evaluate_tensors_as_they_are(tmp_path):
    from ddbench.contracts import DataOptions
    from ddbench.host.registry import get_dataset

    digits = get_dataset("digits").load(DataOptions())
    picks = torch.cat([torch.nonzero(digits.train.labels == c).flatten()[:1] for c in range(10)])
    results = ddbench.evaluate(digits.train.load(picks), labels=digits.train.labels[picks], dataset="digits",
                               seeds=[0], budget_fields={"epochs": 1}, evaluator="train", observer_epochs=1,
                               out=tmp_path / "out", cache_dir=tmp_path / "cache")
    (entry,) = results["methods"].values()
    assert entry["num_images"] == 10 and 0 <= entry["accuracy"]["mean"] <= 100


def test_plugins_json_lists_every_option_with_default_and_doc():
    import json

    from tests.conftest import run_cli

    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {(p["kind"], p["name"]): p for p in json.loads(result.stdout)["plugins"]}
    lic = {o["name"]: o for o in plugins[("method", "lic")]["options"]}
    assert lic["n"]["default"] is None and "perfect square" in lic["n"]["doc"] and "64 px" in lic["n"]["doc"]
    assert all(o["doc"] for o in plugins[("method", "sre2l")]["options"])
    assert ("architecture", "convnet3-bn") in plugins and "options" not in plugins[("architecture", "convnet3-bn")]
