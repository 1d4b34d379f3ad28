"""benchmarks/lic_search.py's results file: searches run side by side, one process each, and
every row each of them records must be in the file afterwards."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

def load_search():
    return load_benchmark("lic_search")


def row(search, name: str, accuracy: float = 50.0) -> dict:
    values = {column: "" for column in search.COLUMNS}
    values.update(dataset="imagefolder", image_size=32, ipc=10, name=name, method="lic",
                  validation_accuracy_mean=accuracy, observer_validation_accuracy=60.4)
    return values


def record_many(path: str, writer: int, count: int) -> None:
    search = load_search()
    for index in range(count):
        search.record([row(search, f"writer{writer}-row{index}")], Path(path))


def test_rows_recorded_side_by_side_are_all_kept(tmp_path):
    path = tmp_path / "results.csv"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=record_many, args=(str(path), writer, 25)) for writer in range(6)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    with open(path, newline="") as handle:
        names = sorted(r["name"] for r in csv.DictReader(handle))
    assert names == sorted(f"writer{w}-row{i}" for w in range(6) for i in range(25))


def test_a_configuration_measured_again_replaces_its_row(tmp_path):
    search = load_search()
    path = tmp_path / "results.csv"
    search.record([row(search, "defaults", 49.0), row(search, "random", 47.0)], path)
    search.record([row(search, "defaults", 51.0)], path)
    with open(path, newline="") as handle:
        rows = {r["name"]: r["validation_accuracy_mean"] for r in csv.DictReader(handle)}
    assert rows == {"defaults": "51.0", "random": "47.0"}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["results.csv", "results.csv.lock"]  # no temporary left


def test_a_row_under_another_observer_recipe_is_kept_beside_the_first(tmp_path):
    search = load_search()
    path = tmp_path / "results.csv"
    flips = search.describe_recipe({"epochs": 30, "shift": 0.0, "precision": "fp32"})
    shifted = search.describe_recipe({"epochs": 30, "shift": 0.125, "precision": "bf16"})
    assert (flips, shifted) == ("30 epochs, flips only, fp32", "30 epochs, shift crops 0.125, bf16")
    low_res = search.describe_recipe({"epochs": 30, "shift": 0.125, "low_res": 0.5, "precision": "fp32"})
    assert low_res == "30 epochs, shift crops 0.125, low-res views 0.5, fp32"
    search.record([{**row(search, "defaults", 49.0), "observer_recipe": flips}], path)
    search.record([{**row(search, "defaults", 51.0), "observer_recipe": shifted}], path)
    with open(path, newline="") as handle:
        rows = {r["observer_recipe"]: r["validation_accuracy_mean"] for r in csv.DictReader(handle)}
    assert rows == {flips: "49.0", shifted: "51.0"}


def test_the_observer_options_reach_the_run_command(tmp_path, monkeypatch):
    search = load_search()
    commands = []

    def fake_run(command, **kwargs):  # records the command and fails it: nothing is trained here
        commands.append(command)
        return type("Done", (), {"returncode": 2})()

    monkeypatch.setattr(search.subprocess, "run", fake_run)
    args = search.argparse.Namespace(ipc=10, validation=50, cache_dir=str(tmp_path), runs=str(tmp_path), arch=None,
                                     seeds=None, data_root=None, dataset="imagefolder", image_size=32,
                                     observer_seed=1, observer_epochs=15, observer_shift=0.0, observer_low_res=0.5,
                                     device="cpu")
    with pytest.raises(search.ConfigurationFailed, match="defaults: ddbench exited with 2"):
        search.run_one("defaults", args)
    command = commands[0]
    assert command[command.index("--observer-epochs") + 1] == "15"
    assert command[command.index("--observer-shift") + 1] == "0.0"
    assert command[command.index("--observer-low-res") + 1] == "0.5"
    assert command[command.index("--observer-seed") + 1] == "1"
    assert command[command.index("--device") + 1] == "cpu"
    assert command[command.index("--cache-dir") + 1] == str(tmp_path)


def test_the_search_parses_every_observer_recipe_setting_as_ddbench_run_does(capsys):
    from ddbench.settings.observer_fields import RECIPE_SETTINGS

    search = load_search()
    parser = search.build_parser()
    args = parser.parse_args(["defaults", "--observer-epochs", "15", "--observer-shift", "0", "--observer-low-res", "0.5"])
    assert {setting: getattr(args, setting) for setting in RECIPE_SETTINGS.values()} == {
        "observer_epochs": 15, "observer_shift": 0.0, "observer_low_res": 0.5}
    assert set(RECIPE_SETTINGS.values()) <= set(search.FORWARDED)
    with pytest.raises(SystemExit):  # ddbench run's range check comes with the flag
        parser.parse_args(["defaults", "--observer-epochs", "0"])
    assert "--observer-epochs" in capsys.readouterr().err


def eval_results(evaluated_on: str, command: str, evaluator: dict | None = None, budget: dict | None = None) -> dict:
    """The parts of a ``ddbench eval`` results.json that ``--record-eval`` reads: the evaluator's
    options and the budget as the run resolved them (the defaults, with ``evaluator`` and
    ``budget`` changed; a changed budget's preset is starred, as ``resolve_budget`` names it)."""
    import dataclasses

    from ddbench.evaluators.relabel import RelabelOptions
    from ddbench.settings.budget import PRESETS

    def entry(method: str, per_seed: list[float]) -> dict:
        mean = sum(per_seed) / len(per_seed)
        return {"method": method, "images_per_class": 10, "distill_seconds": 511.61323144999915,
                "accuracy": {"per_seed": per_seed, "mean": mean, "std": 0.5}}

    preset = PRESETS[(budget or {}).get("preset", "quick")]
    resolved_budget = {**dataclasses.asdict(preset), "precision": "fp32", "channels_last": "on", **(budget or {})}
    resolved_budget.pop("notes")
    if set(budget or {}) - {"preset"}:
        resolved_budget["preset"] = preset.preset + "*"
    return {"command": command, "ipc": 10,
            "dataset": {"name": "imagefolder", "image_shape": [3, 32, 32], "evaluated_on": evaluated_on},
            "observer": {"architecture": "convnet3-bn", "test_accuracy": 60.8,
                         "recipe": {"epochs": 30, "shift": 0.125, "precision": "fp32"}},
            "teacher": "observer", "verifier": "convnet3-bn",
            "evaluator": {"name": "relabel", "options": {**dataclasses.asdict(RelabelOptions()), **(evaluator or {})}},
            "budget": resolved_budget,
            "methods": {"lic-aaaa": entry("lic", [51.8, 52.0, 51.8]), "random-bbbb": entry("random", [41.6, 43.0, 42.2])}}


def test_an_evaluation_of_saved_sets_is_recorded_as_one_row_per_method(tmp_path, capsys):
    import json

    search = load_search()
    command = ("ddbench eval a/lic-aaaa.safetensors b/random-bbbb.safetensors --dataset imagefolder --validation 50 "
               "--eval-option mixing=none --budget-set augmentation=crop+flip --out runs/x")
    out = tmp_path / "x"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(eval_results("validation (50 per class, seed 0, carved from train)", command,
                                                              {"mixing": "none"}, {"augmentation": "crop+flip"})))
    path = tmp_path / "results.csv"
    assert search.main(["--record-eval", "mixing-none", str(out), "--results", str(path)]) == 0
    with open(path, newline="") as handle:
        rows = {r["name"]: r for r in csv.DictReader(handle)}
    assert sorted(rows) == ["mixing-none", "random-mixing-none"]
    assert rows["mixing-none"]["method"] == "lic" and rows["random-mixing-none"]["method"] == "random"
    assert rows["mixing-none"]["eval_options"] == "mixing=none budget.augmentation=crop+flip"
    assert rows["mixing-none"]["per_seed"] == "51.80 52.00 51.80"
    assert rows["random-mixing-none"]["image_size"] == "32" and rows["random-mixing-none"]["ipc"] == "10"
    assert rows["mixing-none"]["observer_recipe"] == "30 epochs, shift crops 0.125, fp32"
    assert rows["mixing-none"]["command"] == command
    assert rows["mixing-none"]["distill_seconds"] == "511.613"  # to the millisecond, as a run's rows
    assert "mixing-none: 51.87" in capsys.readouterr().out
    assert rows["mixing-none"]["options"] == "" and rows["random-mixing-none"]["options"] == ""  # the defaults' sets
    run = eval_results("validation (50 per class, seed 0, carved from train)", "ddbench run --method lic --baseline random")
    run["methods"] = {entry["method"]: {k: v for k, v in entry.items() if k != "method"} for entry in run["methods"].values()}
    (out / "results.json").write_text(json.dumps(run))  # a run's methods are keyed by method, with no "method" field
    assert search.main(["--record-eval", "defaults", str(out), "--results", str(path)]) == 0
    with open(path, newline="") as handle:
        assert sorted(r["name"] for r in csv.DictReader(handle)) == ["defaults", "mixing-none", "random", "random-mixing-none"]


def test_an_evaluated_set_of_other_options_names_them_in_its_row():
    """A saved set distilled with non-default options (``lic.compensation=false``) is recorded
    with them, not as if it were the defaults' set; options resolved per run (N, the feature layer) are not named."""
    search = load_search()
    results = eval_results("validation (50 per class, seed 0, carved from train)", "ddbench eval a/lic-aaaa.safetensors")
    results["methods"]["lic-aaaa"]["options"] = {"n": 4, "iterations": 200, "feature_layer": "features.block3.pool", "lr": 0.1,
                                                 "loss": "l1", "compensation": False}
    rows = {row["name"]: row for row in search.eval_rows("selection-only-mixing-none", results)}
    assert rows["selection-only-mixing-none"]["options"] == "loss=l1 compensation=false"
    assert rows["random-selection-only-mixing-none"]["options"] == ""


def test_an_option_a_run_set_is_named_even_where_its_default_is_resolved_per_run():
    """``--option lic.n=1`` on a ``ddbench run`` names N in the row, though N's default (unset:
    resolved from the image size and IPC) is never compared; an option the command did not set
    and that matches its default is not named."""
    search = load_search()
    command = "ddbench run --method lic --baseline random --ipc 40 --validation 50 --option lic.n=1 --option lic.lr=0.1"
    results = eval_results("validation (50 per class, seed 0, carved from train)", command)
    results["methods"]["lic-aaaa"]["options"] = {"n": 1, "iterations": 0, "feature_layer": "features.block3.pool",
                                                 "lr": 0.1, "loss": "mse"}
    rows = {row["name"]: row for row in search.eval_rows("sources", results)}
    assert rows["sources"]["options"] == "n=1 lr=0.1"
    assert rows["random-sources"]["options"] == ""
    assert search.given_settings(command).options == {"lic": frozenset({"n", "lr"})}


def test_the_settings_a_command_set_are_read_however_it_spelt_them(tmp_path):
    """``--option=lic.n=1``, ``--option eval.KEY=VALUE``, ``--option budget.KEY=VALUE`` and a
    ``--config`` file count as the flags do; the row's evaluation settings come from the values
    the run resolved (a preset other than quick, a changed field, another verifier or teacher);
    a Python API run (no command line) names only what differs from the defaults."""
    search = load_search()
    given = search.given_settings("ddbench run --method lic --option=lic.n=1 --option eval.temperature=10 "
                                  "--option budget.epochs=38 --eval-option mixing=none --budget-set lr=0.01")
    assert given.options == {"lic": frozenset({"n"})}
    assert given.evaluator == {"temperature", "mixing"} and given.budget == {"epochs", "lr"}
    config = tmp_path / "config.toml"
    config.write_text('method = "lic"\n[eval]\nmixing = "none"\n[options.lic]\nn = 1\n')
    from_file = search.given_settings(f"ddbench run --config {config} --budget-set epochs=38")
    assert from_file.options == {"lic": frozenset({"n"})} and from_file.evaluator == {"mixing"} and from_file.budget == {"epochs"}
    with pytest.raises(search.UnreadableCommand, match="--config .*cannot be read now"):
        search.given_settings(f"ddbench run --config {tmp_path / 'gone.toml'}")
    with pytest.raises(search.UnreadableCommand, match="not one this ddbench reads"):
        search.given_settings("ddbench run --no-such-flag")
    assert search.given_settings("ddbench.run (Python API)") == search.GivenSettings()

    validation = "validation (50 per class, seed 0, carved from train)"
    results = eval_results(validation, "ddbench.run (Python API)", {"temperature": 10.0}, {"preset": "paper", "epochs": 38})
    results["verifier"] = "resnet18-bn"
    results["teacher"] = {"checkpoint": "/cache/observers/teacher-20-epochs.safetensors", "test_accuracy": 59.0}
    row = search.eval_rows("api", results)[0]
    assert row["eval_options"] == ("temperature=10.0 budget=paper budget.epochs=38 verifier=resnet18-bn "
                                   "teacher=teacher-20-epochs.safetensors (59.0 %)")
    precision_set = eval_results(validation, "ddbench run --method lic --budget-set precision=fp32")
    assert search.eval_rows("fp32", precision_set)[0]["eval_options"] == "budget.precision=fp32"  # resolved per run: named as set
    assert search.eval_rows("defaults", eval_results(validation, "ddbench run --method lic"))[0]["eval_options"] == ""


def test_a_test_split_evaluation_is_refused_and_nothing_is_written(tmp_path, capsys):
    import json

    search = load_search()
    good, bad = tmp_path / "good", tmp_path / "bad"
    for directory, evaluated_on in ((good, "validation (50 per class, seed 0, carved from train)"), (bad, "test")):
        directory.mkdir()
        (directory / "results.json").write_text(json.dumps(eval_results(evaluated_on, "ddbench eval x --out y")))
    path = tmp_path / "results.csv"
    with pytest.raises(SystemExit):
        search.main(["--record-eval", "ok", str(good), "--record-eval", "peek", str(bad), "--results", str(path)])
    assert "peek: this evaluation ran on test" in capsys.readouterr().err
    assert not path.exists()
    with pytest.raises(SystemExit):
        search.main(["--record-eval", "missing", str(tmp_path / "nowhere")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search.main([])
    assert "--record-eval NAME DIR" in capsys.readouterr().err


def test_a_row_measured_after_a_default_changed_is_kept_beside_the_earlier_one(tmp_path):
    search = load_search()
    path = tmp_path / "results.csv"
    before = search.settings_digest({"options": {"feature_layer": "features.block3.relu", "n": 4}})
    after = search.settings_digest({"options": {"n": 4, "feature_layer": "features.block3.pool"}})
    assert before != after and len(before) == 12
    assert search.settings_digest({"options": {"n": 4, "feature_layer": "features.block3.pool"}}) == after  # key order
    search.record([{**row(search, "defaults", 49.0), "settings_digest": before}], path)
    search.record([{**row(search, "defaults", 51.0), "settings_digest": after}], path)
    search.record([{**row(search, "defaults", 52.0), "settings_digest": after}], path)  # measured again: replaced
    with open(path, newline="") as handle:
        rows = {r["settings_digest"]: r["validation_accuracy_mean"] for r in csv.DictReader(handle)}
    assert rows == {before: "49.0", after: "52.0"}


def test_a_finished_run_is_reused_aloud(tmp_path, monkeypatch, capsys):
    import json

    search = load_search()
    monkeypatch.setattr(search.subprocess, "run", lambda *a, **k: pytest.fail("a finished run was run again"))
    args = search.argparse.Namespace(ipc=10, validation=50, cache_dir=None, runs=str(tmp_path), arch=None, seeds=None,
                                     data_root=None, dataset="imagefolder", image_size=32, observer_seed=None,
                                     observer_epochs=None, observer_shift=None, observer_low_res=None, device=None)
    out = tmp_path / "ipc10" / "defaults"
    out.mkdir(parents=True)
    results = eval_results("validation (50 per class, seed 0, carved from train)", "ddbench run --method lic")
    results["methods"] = {"lic": {**results["methods"]["lic-aaaa"], "options": {"n": 4}}}
    (out / "results.json").write_text(json.dumps(results))
    found = search.run_one("defaults", args)
    assert found["validation_accuracy_mean"] == pytest.approx(51.8667, abs=1e-3)
    assert found["settings_digest"] == search.settings_digest({"options": {"n": 4}})
    assert f"reusing {out / 'results.json'}" in capsys.readouterr().err


def test_every_configuration_names_an_installed_method_and_valid_options():
    """A configuration with a typo would fail only when its ``ddbench run`` starts, deep in a
    search: each method must be installed and each option valid for its method and for the
    relabel evaluator, as ``--option`` and ``--eval-option`` apply them."""
    from ddbench.host.registry import get_distiller, get_evaluator
    from ddbench.settings.options import apply_overrides

    relabel = get_evaluator("relabel").options_class
    for name, (method, options, eval_options) in load_search().CONFIGURATIONS.items():
        method_options = get_distiller(method).options_class
        apply_overrides(method_options(), options, f"{name}: {method}")
        apply_overrides(relabel(), eval_options, f"{name}: relabel")
