"""``ddbench eval``: a saved distilled set evaluated without redistilling gives the numbers of
the run that made it; a set that does not fit the dataset is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddbench.runner import RunError, check_saved_fits
from tests.conftest import run_cli

FAST = ["--observer-epochs", "1", "--budget-set", "epochs=2", "--seeds", "2", "--quiet"]


def test_a_saved_set_evaluates_to_the_numbers_of_its_run(tmp_path):
    made = run_cli("run", "--method", "squeeze", "--ipc", "2", "--cache-dir", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "run"), *FAST)
    assert made.returncode == 0, made.stderr
    saved = next((tmp_path / "run" / "distilled").glob("squeeze-*.safetensors"))
    evaluated = run_cli("eval", str(saved), "--cache-dir", str(tmp_path / "other-cache"), "--out", str(tmp_path / "eval"),
                        *FAST, env={"COLUMNS": "200"})
    assert evaluated.returncode == 0, evaluated.stderr
    ran = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["squeeze"]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    entry = results["methods"][saved.stem]
    assert entry["accuracy"] == ran["accuracy"]  # same set, observer, evaluator, budget and seeds
    assert entry["method"] == "squeeze" and entry["source"] == str(saved) and entry["images_per_class"] == 2
    assert entry["distill_seconds"] == ran["distill_seconds"]  # the run's time, to the millisecond as it wrote it
    # the observer the set records was used (the other cache stayed empty: nothing was trained)
    assert not list((tmp_path / "other-cache").rglob("*.safetensors"))
    assert results["observer"]["checkpoint"] == ran_observer(tmp_path)


def ran_observer(tmp_path: Path) -> str:
    return json.loads((tmp_path / "run" / "results.json").read_text())["observer"]["checkpoint"]


def test_a_broken_file_is_named_and_fails_the_command(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a distilled set")
    result = run_cli("eval", str(junk), "--out", str(tmp_path / "eval"), *FAST)
    assert result.returncode == 2
    assert "junk.safetensors" in result.stderr and "not a readable safetensors file" in result.stderr
    assert not (tmp_path / "eval").exists()


def test_a_set_of_other_classes_or_shape_is_refused(digits):
    with pytest.raises(RunError, match="class map .* pass the --dataset"):
        check_saved_fits({"class_names": ["a", "b"]}, digits, Path("x.safetensors"))
    with pytest.raises(RunError, match="shape .* --image-size"):
        check_saved_fits({"class_names": list(digits.class_names), "image_shape": [1, 28, 28]}, digits, Path("x"))
    check_saved_fits({"class_names": list(digits.class_names), "image_shape": list(digits.image_shape)}, digits, Path("x"))
