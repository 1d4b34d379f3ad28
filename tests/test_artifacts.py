"""Distilled sets on disk (pickle-free, bit-identical), the manifest, resume, and a plugin
that raises while the other methods still complete."""

from __future__ import annotations

import json

import pytest
import torch

from ddbench import hookimpl
from ddbench.api import Distiller
from ddbench.store.artifacts import load_distilled, save_distilled
from ddbench.settings.budget import resolve_budget
from ddbench.contracts import DistilledSet
from ddbench.store.io import ArtifactError
from ddbench.host.plugins import pm
from ddbench.runner import RunConfig, run


class QuietUI:
    def __init__(self):
        self.messages = []

    def info(self, message):
        self.messages.append(message)

    def progress(self, description, total):
        return lambda n: None

    def results_table(self, results):
        pass


def test_distilled_set_round_trips_bit_identically(tmp_path):
    distilled = DistilledSet(images=torch.randn(6, 1, 8, 8), labels=torch.tensor([0, 0, 1, 1, 2, 2]), method="m",
                             stored_soft_labels=torch.rand(6, 3), tile_grid=2, options={"n": 4},
                             extras={"source_indices": {"0": [[1, 2, 3, 4]]}, "trace": torch.tensor([1.5, 0.5])})
    path = tmp_path / "set.safetensors"
    save_distilled(path, distilled, {"dataset": "x", "class_names": ["a", "b", "c"]})
    loaded, meta = load_distilled(path)
    assert torch.equal(loaded.images, distilled.images) and torch.equal(loaded.labels, distilled.labels)
    assert torch.equal(loaded.stored_soft_labels, distilled.stored_soft_labels)
    assert loaded.tile_grid == 2 and loaded.options == {"n": 4} and loaded.extras["trace"] == [1.5, 0.5]
    assert meta["class_names"] == ["a", "b", "c"] and meta["format"] == "ddbench-distilled/1"
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary left behind


def test_a_bad_file_names_itself(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04not safetensors at all")
    with pytest.raises(ArtifactError, match="junk.safetensors"):
        load_distilled(junk)
    with pytest.raises(ArtifactError, match="no such file"):
        load_distilled(tmp_path / "missing.safetensors")


def _config(tmp_path, methods, seeds=(0, 1)):
    return RunConfig(methods=list(methods), dataset="digits", ipc=2, seeds=list(seeds), observer_epochs=1,
                     budget=resolve_budget("quick", ["epochs=2"]), cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "out"),
                     evaluator="train")


class Counting(Distiller):
    """A distiller that counts its calls and can be told to fail."""

    def __init__(self, name, fail=False):
        from ddbench.distillers.random import RandomDistiller, RandomOptions

        self.name, self.fail, self.calls = name, fail, 0
        self.options_class = RandomOptions
        self._inner = RandomDistiller()

    def total_work(self, task):
        return 1

    def distill(self, task):
        self.calls += 1
        if self.fail:
            raise RuntimeError("this plugin is broken on purpose")
        return self._inner.distill(task)


class Plugin:
    def __init__(self, *distillers):
        self.distillers = distillers

    @hookimpl
    def register_distillers(self, register):
        for distiller in self.distillers:
            register(distiller)


def test_resume_skips_finished_work_and_gives_the_same_numbers(tmp_path):
    counting = Counting("counting")
    plugin = Plugin(counting)
    pm.register(plugin, name="counting-plugin")
    try:
        first = run(_config(tmp_path, ["counting"], seeds=(0,)), QuietUI())
        assert counting.calls == 1
        second = run(_config(tmp_path, ["counting"], seeds=(0, 1)), QuietUI())
        assert counting.calls == 1  # the distillation was not redone
        again = run(_config(tmp_path, ["counting"], seeds=(0, 1)), QuietUI())
    finally:
        pm.unregister(plugin)
    assert second["methods"]["counting"]["accuracy"]["per_seed"][0] == first["methods"]["counting"]["accuracy"]["per_seed"][0]
    assert again["methods"]["counting"] == second["methods"]["counting"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    distill = next(u for u in manifest["units"].values() if u["unit"] == "distill")
    assert (tmp_path / "out" / distill["file"]).exists() and distill["file"].startswith("distilled/counting-")
    units = sorted((u["unit"], u.get("seed")) for u in manifest["units"].values())
    assert units == [("distill", None), ("eval", 0), ("eval", 1)] and len(manifest["runs"]) == 3


def test_a_failing_plugin_is_named_and_the_others_complete(tmp_path):
    broken = Counting("broken", fail=True)
    plugin = Plugin(broken)
    pm.register(plugin, name="broken-plugin")
    try:
        ui = QuietUI()
        results = run(_config(tmp_path, ["broken", "random"], seeds=(0,)), ui)
    finally:
        pm.unregister(plugin)
    assert "this plugin is broken on purpose" in results["methods"]["broken"]["error"]
    assert 0 <= results["methods"]["random"]["accuracy"]["mean"] <= 100
    assert any("'broken' failed" in m for m in ui.messages)
    assert not list((tmp_path / "out" / "distilled").glob("broken*"))
    assert len(list((tmp_path / "out" / "distilled").glob("random-*.safetensors"))) == 1


def test_other_options_of_one_method_get_their_own_file(tmp_path):
    first = run(_config(tmp_path, ["random"], seeds=(0,)), QuietUI())
    config = _config(tmp_path, ["random"], seeds=(0,))
    config.ipc = 3
    second = run(config, QuietUI())
    files = sorted(p.name for p in (tmp_path / "out" / "distilled").glob("random-*.safetensors"))
    assert len(files) == 2
    assert first["methods"]["random"]["num_images"] == 20 and second["methods"]["random"]["num_images"] == 30
    again = run(_config(tmp_path, ["random"], seeds=(0,)), QuietUI())  # resumes the first, not the newer file
    assert again["methods"]["random"] == first["methods"]["random"]
