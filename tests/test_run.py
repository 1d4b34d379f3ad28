"""End to end on the embedded digits: results.json, the table, observer reuse."""

from __future__ import annotations

import json

import pytest
import torch

from ddbench.contracts import DistilledSet
from ddbench.runner import RunError, check_distilled, summarize
from tests.conftest import run_cli

FAST = ["--observer-epochs", "1", "--budget-set", "epochs=2", "--seeds", "2", "--ipc", "2", "--quiet"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    result = run_cli("run", "--method", "random", "--cache-dir", str(root / "cache"), "--out", str(root / "out"), *FAST,
                     env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    return root, result


def test_results_json_schema(first_run):
    root, _ = first_run
    results = json.loads((root / "out" / "results.json").read_text())
    assert results["schema"] == "ddbench-results/1"
    entry = results["methods"]["random"]
    assert set(entry["accuracy"]) == {"per_seed", "mean", "std"} and len(entry["accuracy"]["per_seed"]) == 2
    assert all(0 <= a <= 100 for a in entry["accuracy"]["per_seed"])
    assert entry["images_per_class"] == 2 and entry["num_images"] == 20
    assert entry["distill_seconds"] >= 0 and entry["peak_memory_bytes"] > 0
    assert results["budget"]["epochs"] == 2 and results["budget"]["preset"] == "quick*"
    assert results["observer"]["architecture"] == "convnet3-bn-w64" and 0 < results["observer"]["test_accuracy"] <= 100
    assert results["dataset"]["name"] == "digits" and results["seeds"] == [0, 1]
    assert {"ddbench", "torch", "python"} <= set(results["versions"])


def test_table_shows_accuracy_time_memory_and_budget(first_run):
    root, result = first_run
    results = json.loads((root / "out" / "results.json").read_text())
    mean = results["methods"]["random"]["accuracy"]["mean"]
    out = result.stdout
    assert f"{mean:.2f} ±" in out
    for word in ("distill time", "peak memory", "epochs", "optimizer", "adamw", "seeds", "observer", "quick*"):
        assert word in out, word
    assert f"{results['observer']['test_accuracy']:.2f}%" in out


def test_observer_is_reused_not_retrained(first_run):
    root, _ = first_run
    checkpoint = next((root / "cache" / "observers").glob("*.safetensors"))
    before = checkpoint.stat().st_mtime_ns
    result = run_cli("run", "--method", "random", "--cache-dir", str(root / "cache"), "--out", str(root / "again"), *FAST)
    assert result.returncode == 0, result.stderr
    results = json.loads((root / "again" / "results.json").read_text())
    assert results["observer"]["trained_now"] is False
    assert results["observer"]["checkpoint"] == str(checkpoint)
    assert checkpoint.stat().st_mtime_ns == before
    first = json.loads((root / "out" / "results.json").read_text())
    assert results["observer"]["test_accuracy"] == first["observer"]["test_accuracy"]
    assert results["methods"]["random"]["accuracy"] == first["methods"]["random"]["accuracy"]  # same seeds, same numbers


def test_summary_uses_sample_std():
    assert summarize([70.0, 72.0, 74.0]) == {"per_seed": [70.0, 72.0, 74.0], "mean": 72.0, "std": 2.0}
    assert summarize([50.0])["std"] == 0.0


def test_host_rejects_a_broken_distilled_set(digits):
    good = DistilledSet(images=torch.zeros(20, 1, 16, 16), labels=torch.arange(10).repeat_interleave(2), method="m")
    check_distilled(good, "m", digits, 2)
    bad_cases = {
        "tensor, got": DistilledSet(images=torch.zeros(20, 3, 16, 16), labels=good.labels, method="m"),
        "NaN": DistilledSet(images=torch.full((20, 1, 16, 16), float("nan")), labels=good.labels, method="m"),
        "lie in": DistilledSet(images=good.images, labels=good.labels + 5, method="m"),
        "per class": DistilledSet(images=good.images, labels=torch.zeros(20, dtype=torch.int64), method="m"),
    }
    for word, distilled in bad_cases.items():
        with pytest.raises(RunError, match=f"method 'm' returned an invalid distilled set.*{word}"):
            check_distilled(distilled, "m", digits, 2)


def test_exports_agree_with_results_json(first_run):
    import csv

    from PIL import Image

    root, _ = first_run
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["method"] for row in rows] == list(results["methods"])
    entry = results["methods"]["random"]
    assert float(rows[0]["accuracy_mean"]) == entry["accuracy"]["mean"]
    assert float(rows[0]["accuracy_std"]) == entry["accuracy"]["std"]
    markdown = (out / "results.md").read_text()
    assert f"| random | {entry['accuracy']['mean']:.2f} ± {entry['accuracy']['std']:.2f} |" in markdown
    latex = (out / "results.tex").read_text()
    assert "\\begin{tabular}" in latex and f"{entry['accuracy']['mean']:.2f} $\\pm$" in latex
    # every table carries the complete budget
    observer = f"observer convnet3-bn-w64 ({results['observer']['test_accuracy']:.2f}% on the test split)"
    for part in ("2 epochs, adamw lr 0.001 wd 0.0001", "multistep (x0.1 at 0.5, 0.75 of the epochs)", "batch 50",
                 "augmentation dsa", "loss=kl", "temperature=4.0", "region_sampling=auto", "eval seeds 0, 1",
                 "distill seeds 0", observer, "verifier convnet3-bn-w64", "accuracy on the test"):
        assert part in markdown and part in rows[0]["budget"], part
        assert part.replace("%", "\\%").replace("_", "\\_") in latex, part
    picture = Image.open(out / "grids" / "random.png")
    assert picture.width > 0 and picture.height > picture.width  # 10 class rows of 2 images
