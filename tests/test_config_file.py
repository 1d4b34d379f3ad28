"""Runs written down: every run folder's config.toml repeats the run (from the cache), a
hand-written --config works with flags winning over it, and one dotted --option syntax reaches
method options, budget fields and evaluator options."""

from __future__ import annotations

import json

import pytest

from ddbench.cli import main

RUN = ["run", "--method", "random", "--baseline", "squeeze", "--ipc", "1", "--observer-epochs", "1", "--seeds", "2",
       "--option", "budget.epochs=2", "--option", "eval.temperature=3", "--option", "squeeze.n=1", "--quiet"]


def test_a_run_folder_config_repeats_the_run_from_the_cache(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main([*RUN, "--out", str(out), "--cache-dir", str(cache)]) == 0
    first = json.loads((out / "results.json").read_text())
    units = len(json.loads((out / "manifest.json").read_text())["units"])
    assert first["budget"]["epochs"] == 2 and first["budget"]["preset"] == "quick*"
    assert first["evaluator"]["options"]["temperature"] == 3.0 and first["methods"]["squeeze"]["options"]["n"] == 1
    text = (out / "config.toml").read_text()
    assert 'method = "random"' in text and "[options.squeeze]" in text and "epochs = 2" in text
    capsys.readouterr()

    assert main(["run", "--config", str(out / "config.toml"), "--quiet"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["methods"]["random"]["accuracy"] == first["methods"]["random"]["accuracy"]
    assert again["methods"]["squeeze"]["accuracy"] == first["methods"]["squeeze"]["accuracy"]
    assert again["budget"] == first["budget"] and again["evaluator"] == first["evaluator"]
    assert len(json.loads((out / "manifest.json").read_text())["units"]) == units  # nothing redone
    assert "finished before" in capsys.readouterr().out


def test_a_hand_written_config_with_flags_winning(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'''
method = "random"
ipc = 1
seeds = 1
observer_epochs = 1
observer_shift = 0.25
observer_low_res = 0.5
cache_dir = "{tmp_path / 'cache'}"
out = "{tmp_path / 'from-file'}"

[budget]
preset = "quick"
epochs = 1

[eval]
temperature = 2
''')
    assert main(["run", "--config", str(config), "--quiet", "--out", str(tmp_path / "from-flag"),
                 "--option", "eval.temperature=5"]) == 0
    results = json.loads((tmp_path / "from-flag" / "results.json").read_text())  # the flag's --out won
    assert not (tmp_path / "from-file").exists()
    assert results["budget"]["epochs"] == 1 and results["seeds"] == [0]
    assert results["observer"]["recipe"]["shift"] == 0.25  # the digits' default is no shift
    assert results["observer"]["recipe"]["low_res"] == 0.5  # the default is none
    assert results["evaluator"]["options"]["temperature"] == 5.0  # applied after the file's 2


def test_bad_config_files_are_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('method = "random"\nimage_sise = 32\n')
    with pytest.raises(SystemExit) as stop:
        main(["run", "--config", str(config)])
    assert stop.value.code == 2 and "unknown key 'image_sise'" in capsys.readouterr().err
    config.write_text("method = \n")
    with pytest.raises(SystemExit):
        main(["run", "--config", str(config)])
    assert "not valid TOML" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["run", "--config", str(tmp_path / "missing.toml")])
    assert stop.value.code == 2 and "missing.toml: No such file or directory" in capsys.readouterr().err


def test_the_dotted_option_equals_the_old_flags():
    from ddbench.settings.config_file import route_dotted

    methods, budget, evaluator = route_dotted(["lic.lr=0.01", "budget.epochs=300", "eval.temperature=4", "lic.n=9"])
    assert methods == ["lic.lr=0.01", "lic.n=9"] and budget == ["epochs=300"] and evaluator == ["temperature=4"]


@pytest.mark.parametrize("side,ipc,n,iterations", [(64, 10, 1, 0), (32, 10, 4, 200), (32, 41, 4, 200), (32, 42, 1, 0),
                                                  (32, 50, 1, 0)])
def test_options_that_follow_the_images_and_ipc_are_keyed_and_written_as_used(side, ipc, n, iterations):
    """LIC's N follows the image side and the share of a class it would squeeze when unset (1 from
    64 to 127 px, and where 4 x IPC is more than a third of the smallest class: here 500 images,
    so IPC 41 squeezes and IPC 42 does not; M = 0 with N = 1): once the images are loaded the run
    resolves it, so config.toml says what ran and a run that gives those values explicitly (as
    one repeated from that file does) has the same options, hence the same keys."""
    from types import SimpleNamespace

    from ddbench.contracts import options_to_dict
    from ddbench.pipeline.config import RunConfig, plan_run, resolve_for_data
    from ddbench.settings.config_file import resolved_config

    images = SimpleNamespace(name="imagefolder", image_shape=(3, side, side), smallest_class_size=lambda: 500)
    unset = RunConfig(methods=["lic"], dataset="imagefolder", image_size=side, ipc=ipc)
    plan = plan_run(unset)
    assert plan.method_options["lic"].n is None and plan.method_options["lic"].iterations == 200  # before the images
    resolve_for_data(plan, images, ipc)
    assert (plan.method_options["lic"].n, plan.method_options["lic"].iterations) == (n, iterations)
    text = resolved_config(unset, unset.budget, plan)
    assert f"\nn = {n}\n" in text and f"\niterations = {iterations}\n" in text

    given = RunConfig(methods=["lic"], dataset="imagefolder", image_size=side, ipc=ipc,
                      method_options={"lic": [f"n={n}", f"iterations={iterations}"]})
    plan_given = plan_run(given)
    resolve_for_data(plan_given, images, ipc)
    assert options_to_dict(plan_given.method_options["lic"]) == options_to_dict(plan.method_options["lic"])
