"""The comparison harness on the embedded digits: cross-arch, bench, ablate, the IPC sweep.

Everything runs at 8 px (the digits' native size), IPC 1, one seed, one evaluation epoch of
batches of 10, accuracy on a 2-per-class validation split, and one or two distillation
iterations. The observers are put into the cache by a fixture (a seeded,
untrained network saved where ``--observer-epochs 1`` looks for it): these tests check the
harness's plumbing and layout, not what the observers learned, and training them is covered by
``test_run.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

SIZE = "8"
OBSERVERS = ["convnet3-bn", "resnet18"]
VERIFIERS = ["convnet3", "resnet18", "mobilenetv2"]
METHODS = ["lic", "sre2l"]
VALIDATION = 2  # accuracy on 2 held-out images per class: the grid's 12 evaluations stay cheap
FAST = ["--dataset", "digits", "--image-size", SIZE, "--ipc", "1", "--seeds", "1", "--budget-set", "epochs=1",
        "--budget-set", "batch_size=10", "--validation", str(VALIDATION), "--observer-epochs", "1", "--quiet"]
LIC_FAST = ["--option", "lic.iterations=1", "--option", "lic.subset_size=20"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache holding the convnet3-bn and resnet18 observers of digits at 8 px (recipe: 1 epoch),
    for the full training set (bench) and for the training set less the validation split (runs)."""
    from ddbench.contracts import DataOptions
    from ddbench.observer import checkpoint_path, default_recipe
    from ddbench.observer_files import observer_metadata, save_observer
    from ddbench.host.registry import get_architecture, get_dataset

    root = tmp_path_factory.mktemp("cache")
    full = get_dataset("digits").load(DataOptions(image_size=int(SIZE)))
    recipe = default_recipe("digits", epochs=1)
    for dataset in (full, full.with_validation_split(VALIDATION, 0)):
        for name in OBSERVERS:
            arch = get_architecture(name)
            torch.manual_seed(0)
            model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).eval()
            meta = observer_metadata(dataset, arch, dataclasses.asdict(recipe), 0, test_accuracy=0.0)
            save_observer(checkpoint_path(root, dataset, arch, 0, recipe), model, meta)
    return root


# One thread per process: on a shared, oversubscribed CPU a second OpenMP thread makes these
# small models many times slower, not faster.
ENV = {"COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def _cli(*args: str):
    result = run_cli(*args, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# --- cross-arch ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_arch(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("xarch")
    result = _cli("cross-arch", "--methods", ",".join(METHODS), "--observers", ",".join(OBSERVERS),
                  "--verifiers", ",".join(VERIFIERS), *FAST, *LIC_FAST, "--option", "sre2l.iterations=1",
                  "--cache-dir", str(cache), "--out", str(out))
    return out, result


def test_cross_arch_table_matches_json(cross_arch):
    out, result = cross_arch
    summary = json.loads((out / "cross-arch.json").read_text())
    assert summary["observers"] == OBSERVERS and summary["verifiers"] == VERIFIERS and summary["methods"] == METHODS
    cells = {(c["verifier"], c["method"], c["observer"]): c for c in summary["cells"]}
    assert len(cells) == len(summary["cells"]) == len(VERIFIERS) * len(METHODS) * len(OBSERVERS)
    for cell in cells.values():
        assert set(cell) >= {"method", "observer", "verifier", "per_seed", "mean", "std"}
        assert len(cell["per_seed"]) == 1 and 0 <= cell["mean"] <= 100

    expected_rows = [(v, m) for v in VERIFIERS for m in METHODS]

    def text(verifier, method, observer):
        cell = cells[(verifier, method, observer)]
        return f"{cell['mean']:.2f} ± {cell['std']:.2f}"

    # CSV: rows verifier x method in order, one column per observer, every cell "mean ± std".
    rows = list(csv.reader(io.StringIO((out / "cross-arch.csv").read_text())))
    assert rows[0] == ["verifier", "method", *OBSERVERS]
    assert [tuple(r[:2]) for r in rows[1:]] == expected_rows
    for row in rows[1:]:
        for observer, value in zip(OBSERVERS, row[2:]):
            assert value == text(row[0], row[1], observer)

    # Markdown: the same grid, the verifier named once per group, the best of each pair in bold.
    lines = [line for line in (out / "cross-arch.md").read_text().splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["verifier", "method", *OBSERVERS]
    verifier = None
    for line, (want_verifier, want_method) in zip(lines[2:], expected_rows, strict=True):
        parts = [c.strip() for c in line.strip("|").split("|")]
        verifier = parts[0] or verifier
        assert (verifier, parts[1]) == (want_verifier, want_method)
        for observer, value in zip(OBSERVERS, parts[2:]):
            assert value.strip("*") == text(verifier, want_method, observer)

    # LaTeX: one row per (verifier, method), a rule between verifiers.
    tex = (out / "cross-arch.tex").read_text()
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    tex_rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(tex_rows) == len(expected_rows)
    assert body.count(r"\midrule") == len(VERIFIERS) - 1
    for line, (want_verifier, want_method) in zip(tex_rows, expected_rows):
        parts = [p.strip() for p in line.removesuffix(r"\\").split("&")]
        assert parts[1] == want_method
        for observer, value in zip(OBSERVERS, parts[2:]):
            assert value.replace(r"\textbf{", "").rstrip("}") == text(want_verifier, want_method, observer).replace("±", r"$\pm$")

    # On screen: the grid table.
    assert "verifier" in result.stdout and text(VERIFIERS[0], METHODS[0], OBSERVERS[0]) in result.stdout


def test_cross_arch_distills_once_per_observer(cross_arch):
    out, _ = cross_arch
    for observer in OBSERVERS:
        folder = out / observer
        units = json.loads((folder / "manifest.json").read_text())["units"].values()
        distills = [u for u in units if u["unit"] == "distill"]
        assert sorted(u["method"] for u in distills) == sorted(METHODS)  # once per method, reused across verifiers
        assert len([u for u in units if u["unit"] == "eval"]) == len(METHODS) * len(VERIFIERS)
        for verifier in VERIFIERS:
            results = json.loads((folder / f"results-{verifier}.json").read_text())
            assert results["verifier"] == verifier and results["observer"]["architecture"] == observer
            assert (folder / f"results-{verifier}.csv").exists()
        assert {p.name for p in (folder / "grids").iterdir()} == {f"{m}.png" for m in METHODS}
    record = json.loads((out / "manifest.json").read_text())["runs"][-1]
    assert record["harness"] == "cross-arch" and record["status"] == "finished"
    assert record["command"].startswith("ddbench cross-arch") and record["seeds"] == [0]
    assert {"git_revision", "versions", "config", "timings"} <= set(record)


def test_cross_arch_refuses_sre2l_on_an_instance_norm_observer_before_any_work(cache, tmp_path):
    result = run_cli("cross-arch", "--methods", "lic,sre2l", "--observers", "convnet3", *FAST,
                     "--cache-dir", str(cache), "--out", str(tmp_path / "out"), env=ENV)
    assert result.returncode == 2 and "sre2l" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- bench ------------------------------------------------------------------------------------


def test_bench_reports_time_per_iteration_projection_and_peak_memory(cache, tmp_path):
    out = tmp_path / "bench"
    result = _cli("bench", "--methods", "lic,sre2l", "--arch", "convnet3-bn", "--dataset", "digits", "--image-size", SIZE,
                  "--observer-epochs", "1", "--bench-iterations", "1", "--option", "lic.subset_size=40",
                  "--cache-dir", str(cache), "--out", str(out), "--quiet")
    summary = json.loads((out / "bench.json").read_text())
    rows = {row["method"]: row for row in summary["rows"]}
    assert list(rows) == ["lic", "sre2l"]
    for method, full in (("lic", 50), ("sre2l", 250)):  # both methods' defaults for the embedded digits
        row = rows[method]
        assert "error" not in row, row
        assert row["images"] == 100 and row["batch_size"] == 100
        assert row["full_iterations"] == full and row["projected"] is True and row["time_label"] == "projected"
        assert row["measured_iterations"] == [1, 2]
        assert row["seconds_per_iteration"] > 0 and row["seconds_per_100_images"] > 0
        assert row["peak_memory_bytes"] > 0 and row["peak_memory_kind"] in ("peak-rss", "process-peak-rss-since-start")
        assert row["paper"] is None  # the paper's Table 3 has no ConvNet-3
    assert "sre2l default for this dataset" in rows["sre2l"]["full_iterations_source"]
    assert "ours: M = 50 on the embedded digits" in rows["lic"]["full_iterations_source"]
    for suffix in (".csv", ".md", ".tex"):
        assert (out / f"bench{suffix}").stat().st_size > 0
    assert "projected" in (out / "bench.md").read_text() and "projected" in result.stdout
    assert len(list(csv.DictReader(io.StringIO((out / "bench.csv").read_text())))) == 2


def test_bench_full_iterations_follow_the_plugins_own_config():
    from types import SimpleNamespace

    from baselines.sre2l import SRe2LDistiller, SRe2LOptions
    from ddbench.harness.bench import images_per_class, paper_reference
    from ddbench.harness.bench_worker import full_iterations
    from lic_plugin.distiller import LICDistiller
    from lic_plugin.options import LICOptions

    def task(name, size, options, ipc=10, class_images=500):
        return SimpleNamespace(dataset=SimpleNamespace(name=name, smallest_class_size=lambda: class_images),
                               image_shape=(3, size, size), options=options, ipc=ipc)

    assert full_iterations(SRe2LDistiller(), SRe2LOptions(), task("imagefolder", 64, SRe2LOptions()), False)[0] == 4000
    assert full_iterations(SRe2LDistiller(), SRe2LOptions(), task("cifar10", 32, SRe2LOptions()), False)[0] == 1000
    assert full_iterations(SRe2LDistiller(), SRe2LOptions(iterations=7), None, True) == (7, "--option sre2l.iterations")
    assert full_iterations(LICDistiller(), LICOptions(), task("imagefolder", 32, LICOptions()), False) == (
        200, "the paper's M = 200")
    assert full_iterations(LICDistiller(), LICOptions(n=4), task("imagefolder", 64, LICOptions(n=4)), False) == (
        200, "the paper's M = 200")
    assert full_iterations(LICDistiller(), LICOptions(), task("imagefolder", 64, LICOptions()), False)[0] == 0  # N = 1
    assert full_iterations(LICDistiller(), LICOptions(), task("digits", 16, LICOptions()), False)[0] == 50
    assert full_iterations(LICDistiller(), LICOptions(), task("imagefolder", 32, LICOptions(), ipc=50), False)[0] == 0
    assert full_iterations(LICDistiller(), LICOptions(iterations=9), None, True) == (9, "--option lic.iterations")
    assert images_per_class(10) == 10 and images_per_class(200) == 1
    assert paper_reference("lic", "convnet4-bn")["seconds"] == 13.02  # declared by the method, not the host
    assert paper_reference("sre2l", "resnet18")["peak_memory_gb"] == 3.62 and paper_reference("lic", "convnet3") is None
    assert paper_reference("random", "convnet4-bn") is None


# --- IPC sweep --------------------------------------------------------------------------------


def test_ipc_sweep_writes_its_table_and_plot(cache, tmp_path):
    from PIL import Image

    out = tmp_path / "sweep"
    _cli("run", "--method", "random", "--baseline", "squeeze", *FAST, "--ipc", "1,2", "--cache-dir", str(cache), "--out", str(out))
    summary = json.loads((out / "ipc-sweep.json").read_text())
    assert summary["ipcs"] == [1, 2] and summary["methods"] == ["random", "squeeze"]
    assert {(p["method"], p["ipc"]) for p in summary["points"]} == {(m, k) for m in ("random", "squeeze") for k in (1, 2)}
    for ipc in (1, 2):
        assert json.loads((out / f"ipc{ipc}" / "results.json").read_text())["ipc"] == ipc
    rows = list(csv.reader(io.StringIO((out / "ipc-sweep.csv").read_text())))
    assert rows[0] == ["method", "IPC 1", "IPC 2"] and [r[0] for r in rows[1:]] == ["random", "squeeze"]
    with Image.open(out / "accuracy-vs-ipc.png") as picture:
        assert picture.format == "PNG" and picture.width >= 400 and picture.height >= 300
        assert len(set(picture.convert("L").get_flattened_data())) > 10  # lines and text, not a blank canvas
    assert (out / "ipc-sweep.md").exists() and (out / "ipc-sweep.tex").exists()


def test_a_validation_run_says_its_accuracies_are_on_the_validation_split(cache, tmp_path):
    talking = [arg for arg in FAST if arg != "--quiet"]
    said = _cli("run", "--method", "random", *talking, "--arch", "convnet3-bn", "--cache-dir", str(cache),
                "--out", str(tmp_path / "v")).stderr
    assert f"/ {10 * VALIDATION} validation images" in said, said
    assert "observer convnet3-bn: validation accuracy" in said and "test accuracy" not in said, said


# --- ablate -----------------------------------------------------------------------------------


def test_ablate_table7_rows_in_order(cache, tmp_path):
    from PIL import Image

    out = tmp_path / "ablate"
    _cli("ablate", "lic", "--sweeps", "table7", "--arch", "convnet3-bn", *FAST, *LIC_FAST,
         "--cache-dir", str(cache), "--out", str(out))
    summary = json.loads((out / "ablate.json").read_text())
    rows = summary["rows"]
    assert [r["label"] for r in rows] == ["original", "+selection", "+compensation", "+relabel"]
    assert [r["evaluator"] for r in rows] == ["train", "train", "train", "relabel"]
    assert all("mean" in r and "std" in r and len(r["per_seed"]) == 1 for r in rows)
    # +compensation and +relabel are the same distillation, evaluated two ways: one folder, one distill unit.
    assert rows[2]["folder"] == rows[3]["folder"] and len({r["folder"] for r in rows}) == 3
    units = json.loads((Path(rows[3]["folder"]) / "manifest.json").read_text())["units"].values()
    assert len([u for u in units if u["unit"] == "distill"]) == 1
    table = list(csv.reader(io.StringIO((out / "ablate.csv").read_text())))
    assert [r[1] for r in table[1:]] == ["original", "+selection", "+compensation", "+relabel"]
    for line, row in zip(table[1:], rows):
        assert line[3] == f"{row['mean']:.2f} ± {row['std']:.2f}"
    with Image.open(out / "ablate-table7.png") as picture:
        assert picture.width >= 400 and picture.height >= 300


def test_ablate_sweeps_skip_n_values_that_do_not_tile(cache):
    from ddbench.settings.budget import resolve_budget
    from ddbench.harness.ablate import plan_points
    from ddbench.runner import RunConfig

    base = RunConfig(methods=["lic"], image_size=8, ipc=1, seeds=[0], budget=resolve_budget("quick"),
                     cache_dir=str(cache), out="unused")
    points, skipped, _ = plan_points(base, ["m", "n", "layer"], {"m": [0, 50], "n": [1, 4, 9, 16, 25]})
    assert [p.label for p in points if p.sweep == "m"] == ["M=0", "M=50"]
    assert [p.label for p in points if p.sweep == "n"] == ["N=1", "N=4", "N=9", "N=16"]  # 9: cells of 2, 3 and 3 px
    assert [s["label"] for s in skipped] == ["N=25"] and "under 2 px" in skipped[0]["reason"]  # 1 px cells
    layers = [p.label for p in points if p.sweep == "layer"]
    assert layers == ["features.block1.relu", "features.block2.relu", "features.block3.relu", "features.block3.pool",
                      "classifier"]
    default = next(p for p in points if p.label == "M=50")  # LIC's M on the embedded digits
    same = next(p for p in points if p.label == "features.block3.pool")  # LIC's default layer: the same run
    assert default.config.out == same.config.out


# --- tables and plots -------------------------------------------------------------------------


def test_grid_table_formats_agree():
    from ddbench.harness.tables import GridTable

    table = GridTable(caption="c", header=["group", "name", "x"], rows=[["a", "m", "1 ± 0"], ["a", "n", "2 ± 0"], ["b", "m", "3|4"]],
                      group_first=True, emphasis={(1, 2)})
    assert table.to_csv().splitlines() == ["group,name,x", "a,m,1 ± 0", "a,n,2 ± 0", "b,m,3|4"]
    markdown = table.to_markdown()
    assert "| a | m | 1 ± 0 |" in markdown and "|  | n | **2 ± 0** |" in markdown and r"3\|4" in markdown
    latex = table.to_latex()
    assert r"\textbf{2 $\pm$ 0}" in latex and latex.count(r"\midrule") == 2


def test_plots_show_their_series(tmp_path):
    from PIL import Image

    from ddbench.reporting.plots import accuracy_vs_ipc, bar_plot, line_plot

    paths = [
        accuracy_vs_ipc(tmp_path / "ipc.png", {"lic": [(1, 50, 2), (10, 80, 1), (50, 90, 0.5)], "sre2l": [(1, 20, 3), (10, 40, 2)]}, "t"),
        line_plot(tmp_path / "layer.png", {"lic": [("block1", 40, 1), ("block3", 60, 2)]}, title="t", xlabel="layer", categorical=True),
        bar_plot(tmp_path / "bars.png", [("original", 40, 1), ("+relabel", 70, 2)], title="t"),
    ]
    for path in paths:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.width >= 400
            colours = set(picture.convert("RGB").get_flattened_data())
            assert len(colours) > 20
