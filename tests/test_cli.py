"""The command line: fast help, clear errors for bad input, exit codes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli


def test_help_answers_in_under_a_second():
    best = min(_timed([sys.executable, "-m", "ddbench", "--help"]) for _ in range(3))
    assert best < 1.0, f"ddbench --help took {best:.2f} s"


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0 and "run" in result.stdout
    return time.perf_counter() - start


def test_console_script_and_module_agree():
    result = subprocess.run(["ddbench", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("ddbench ")
    assert run_cli("--version").stdout == result.stdout


def test_unknown_method_lists_installed(tmp_path):
    result = run_cli("run", "--method", "nosuch", "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown method 'nosuch'" in result.stderr and "random" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_baseline_and_dataset_list_installed(tmp_path):
    result = run_cli("run", "--method", "random", "--baseline", "nosuch", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "unknown method 'nosuch'" in result.stderr
    result = run_cli("run", "--method", "random", "--dataset", "nosuch", "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown dataset 'nosuch'" in result.stderr and "fashion-mnist" in result.stderr and "digits" in result.stderr


def test_missing_data_root_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "not-here"
    result = run_cli("run", "--method", "random", "--dataset", "fashion-mnist", "--data-root", str(missing),
                     "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "--data-root" in result.stderr
    assert not (tmp_path / "observers").exists()


def test_bad_options_name_the_valid_ones(tmp_path):
    result = run_cli("run", "--method", "random", "--budget-set", "epoch=3", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "'epoch'" in result.stderr and "epochs" in result.stderr
    result = run_cli("run", "--method", "random", "--option", "random.bogus=1", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "'bogus'" in result.stderr
    result = run_cli("run", "--method", "random", "--ipc", "0", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "--ipc" in result.stderr
    result = run_cli("run", "--method", "random", "--ipc", "5000", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "smallest class" in result.stderr
    assert not (tmp_path / "observers").exists()


def test_tiles_too_small_for_the_image_fail_before_any_work(tmp_path):
    result = run_cli("run", "--method", "squeeze", "--option", "squeeze.n=81", "--ipc", "1", "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert "method 'squeeze'" in result.stderr and "under 2 px" in result.stderr
    assert not (tmp_path / "observers").exists()


def test_lic_checks_its_tiles_before_any_work(tmp_path):
    result = run_cli("run", "--method", "lic", "--option", "lic.n=81", "--ipc", "1", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "method 'lic'" in result.stderr and "under 2 px" in result.stderr
    assert not (tmp_path / "observers").exists()


@pytest.mark.parametrize("args,expected", [
    (["--option", "lic.n=3"], "N must be a perfect square"),
    (["--eval-option", "temperature=-1"], "temperature must be a positive finite number"),
    (["--option", "lic.amp=true", "--device", "cpu"], "amp=true (bfloat16 autocast) needs a CUDA device"),
    (["--distill-seeds", "0"], "--distill-seeds must be at least 1"),
    (["--eval-option", "loss=l1"], "relabel option loss='l1': use one of kl, mse-logits"),
    (["--eval-option", "factor_fraction=2"], "factor_fraction=2.0: use a share between 0 and 1"),
    (["--eval-option", "crop_factor=9"], "crop_factor=9: use a grid side from 2 to 8"),
    (["--eval-option", "region_sampling=factor-crop", "--eval-option", "label_source=stored"],
     "cannot follow; use label_source=online"),
    (["--eval-option", "loss=mse-logits", "--eval-option", "label_source=set"], "use loss=kl with label_source=set"),
    (["--budget-set", "optimizer=lion"], "optimizer='lion': use one of adamw, adam, sgd"),
    (["--budget-set", "scheduler=step"], "scheduler='step': use one of multistep, cosine, constant"),
    (["--budget-set", "milestones=0.5,2"], "milestones=0.5,2.0: fractions of the epochs in (0, 1]"),
    (["--budget-set", "lr=nan"], "lr=nan: must be a positive finite number"),
])
def test_option_values_a_plugin_refuses_fail_before_any_work(tmp_path, args, expected):
    result = run_cli("run", "--method", "lic", *args, "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "observers").exists() and not (tmp_path / "out").exists()


def test_a_ddranking_name_it_does_not_have_fails_before_any_work(tmp_path):
    from tests.test_datasets import make_imagefolder

    make_imagefolder(tmp_path / "data")
    saved = tmp_path / "set.safetensors"
    import torch

    from ddbench.store.artifacts import save_distilled
    from ddbench.contracts import DistilledSet

    save_distilled(saved, DistilledSet(images=torch.zeros(2, 3, 64, 64), labels=torch.arange(2), method="m"),
                   {"dataset": "imagefolder", "class_names": ["ant", "cat"], "image_shape": [3, 64, 64], "ipc": 1})
    for name, expected in (("Nope", "--ddranking-dataset 'Nope': DD-Ranking has no such dataset"),
                           ("ImageNet1K", "ImageNet1K has 1000 classes, this imagefolder data has 2")):
        result = run_cli("export", str(saved), "--format", "ddranking", "--data-root", str(tmp_path / "data"),
                         "--ddranking-dataset", name, "--out", str(tmp_path / "dd"), "--cache-dir", str(tmp_path / "cache"))
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "dd").exists() and not (tmp_path / "cache").exists()


def test_a_missing_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli("run", "--method", "random", "--device", "cuda", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "torch sees no GPU" in result.stderr and "Traceback" not in result.stderr


def test_help_is_grouped_with_examples_and_eval_dataset_default_is_true():
    from ddbench.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    text = commands["run"].format_help()
    positions = [text.index(f"\n{title}:\n") for title in ("data", "methods", "evaluation", "output", "distributed")]
    assert positions == sorted(positions)
    assert text.count("e.g. ") == 5 and "--method lic --baseline sre2l" in text
    eval_help = " ".join(commands["eval"].format_help().split())
    assert "default: the one the first set records" in eval_help and "default: digits" not in eval_help
