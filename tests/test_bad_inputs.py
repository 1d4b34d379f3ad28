"""No silent wrong answers: bad inputs and faults, tried as a careless user or script would.

Every case asserts the exit code, one line on stderr naming the value or file and the fix, no
traceback, and that nothing half-written is left (no run folder, no results, no cached
observer). The first block holds the cases that once exited 0 with a wrong answer or threw
work away; the second, regression cases that were already handled well.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from ddbench.cli import main
from tests.test_datasets import make_imagefolder

QUICK = ["--observer-epochs", "1", "--budget-set", "epochs=1", "--seeds", "1", "--quiet", "--ipc", "1"]


def cli(capsys, *argv: str) -> tuple[int, str]:
    """``ddbench ARGV`` in this process: (exit code, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("usage:")
             and not line.startswith("  ")]
    assert len(lines) == 1, err  # one line (argparse adds its usage lines before it)
    assert re.search(pattern, lines[0]), lines[0]


def nothing_written(*paths: Path) -> bool:
    return all(not p.exists() or (p.is_dir() and not any(p.rglob("*.json")) and not any(p.rglob("*.safetensors")))
               for p in paths)


# name -> (arguments after "run --method random", pattern of the one line)
REFUSED_BEFORE_WORK = {
    "negative validation": (["--validation", "-5"], r"--validation must be at least 0, got -5"),
    "observer epochs 0": (["--observer-epochs", "0"], r"--observer-epochs must be at least 1, got 0"),
    "negative observer epochs": (["--observer-epochs", "-2"], r"--observer-epochs must be at least 1"),
    "repeated seeds": (["--seeds", "0,0"], r"--seeds lists seed 0 more than once"),
    "image size 0": (["--image-size", "0"], r"--image-size must be at least 8, got 0"),
    "negative image size": (["--image-size", "-3"], r"--image-size must be at least 8"),
    "too small for the observer": (["--image-size", "8", "--arch", "convnet4-bn"],
                                   r"architecture 'convnet4-bn' cannot take 8 px images.*--image-size"),
    "budget optimizer": (["--budget-set", "optimizer=adamx"], r"optimizer='adamx': use one of"),
    "budget scheduler": (["--budget-set", "scheduler=none"], r"scheduler='none'"),
    "negative lr": (["--budget-set", "lr=-1"], r"lr=-1.0: must be a positive finite number"),
    "nan lr": (["--budget-set", "lr=nan"], r"lr=nan"),
    "augmentation": (["--budget-set", "augmentation=blur"], r"blur"),
    "compile backend": (["--budget-set", "compile=fast"], r"compile='fast'"),
    "infinite temperature": (["--eval-option", "temperature=inf"], r"temperature must be a positive finite number"),
    "mix alpha 0": (["--eval-option", "mix_alpha=0"], r"mix_alpha must be a positive finite number"),
    "plugin option value": (["--baseline", "lic", "--option", "lic.lr=-1"], r"lic option lr=-1.0"),
    "plugin option name": (["--baseline", "lic", "--option", "lic.rate=1"], r"rate"),
    "unknown method": (["--baseline", "nosuch"], r"unknown method 'nosuch'.*lic.*random"),
    "unknown dataset": (["--dataset", "nosuch"], r"unknown dataset 'nosuch'"),
    "mistyped method": (["--baseline", "sre2"], r"unknown method 'sre2'. Did you mean 'sre2l'\?"),
    "mistyped dataset": (["--dataset", "fashion-mnst"], r"Did you mean 'fashion-mnist'\?"),
    "unknown evaluator": (["--evaluator", "nosuch"], r"unknown evaluator 'nosuch'"),
    "unknown architecture": (["--arch", "nosuch"], r"unknown architecture 'nosuch'"),
    "ipc 0": (["--ipc", "0"], r"--ipc must be at least 1"),
    "ipc over the class size": (["--ipc", "5000"], r"--ipc 5000 is more than the .* training images"),
    "missing data root": (["--dataset", "fashion-mnist", "--data-root", "/nonexistent"], r"tried /nonexistent.*--data-root"),
    "option for a method not run": (["--option", "lic.lr=0.1"], r"--option given for lic"),
    "distill seeds 0": (["--distill-seeds", "0"], r"--distill-seeds must be at least 1"),
}


@pytest.mark.parametrize("name", list(REFUSED_BEFORE_WORK))
def test_refused_before_any_work(tmp_path, capsys, name):
    extra, pattern = REFUSED_BEFORE_WORK[name]
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--out", str(out), "--cache-dir", str(cache), *extra)
    assert_refused(code, err, pattern)
    assert nothing_written(out, cache)


def test_outputs_that_cannot_be_written_are_refused_before_training(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cache = tmp_path / "cache"
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--out", str(a_file), "--cache-dir", str(cache))
    assert_refused(code, err, r"the output folder .*a-file is a file; pass --out with a folder")
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--out", str(tmp_path / "out"),
                    "--cache-dir", str(a_file / "cache"))
    assert_refused(code, err, r"the cache folder .* is under .*a-file, which is a file; pass --cache-dir")
    assert nothing_written(tmp_path / "out", cache)

    import tempfile

    real = tempfile.NamedTemporaryFile

    def read_only(*args, dir=None, **kwargs):  # a read-only mount (root ignores chmod, so it is simulated)
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise PermissionError(30, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--out", str(tmp_path / "out"),
                    "--cache-dir", str(tmp_path / "ro"))
    assert_refused(code, err, r"the cache folder .*ro cannot be written \(.*Read-only file system\); pass --cache-dir")
    assert nothing_written(tmp_path / "out")


def test_a_class_without_test_images_or_without_any_images_is_named(tmp_path, capsys):
    make_imagefolder(tmp_path / "data")
    shutil.rmtree(tmp_path / "data" / "val" / "cat")
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--dataset", "imagefolder", "--data-root",
                    str(tmp_path / "data"), "--image-size", "16", "--out", str(tmp_path / "out"),
                    "--cache-dir", str(tmp_path / "cache"))
    assert_refused(code, err, r"class\(es\) 'cat' of .* have no test images in .*val.*add their test images")
    make_imagefolder(tmp_path / "data2")
    for image in (tmp_path / "data2" / "train" / "ant").iterdir():
        image.unlink()
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--dataset", "imagefolder", "--data-root",
                    str(tmp_path / "data2"), "--image-size", "16", "--out", str(tmp_path / "out"),
                    "--cache-dir", str(tmp_path / "cache"))
    assert_refused(code, err, r"train class folder\(s\) 'ant' .* hold no image files")
    assert nothing_written(tmp_path / "out", tmp_path / "cache")


def test_a_truncated_image_met_while_training_is_one_line_naming_the_file(tmp_path, capsys):
    make_imagefolder(tmp_path / "data")
    victim = tmp_path / "data" / "train" / "ant" / "ant_1.png"
    victim.write_bytes(victim.read_bytes()[:40])
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--dataset", "imagefolder", "--data-root",
                    str(tmp_path / "data"), "--image-size", "16", "--out", str(tmp_path / "out"),
                    "--cache-dir", str(tmp_path / "cache"), "--data-workers", "0")
    assert_refused(code, err, r"could not decode image .*ant_1.png.*replace or delete the file")


def test_a_truncated_idx_file_is_one_line(tmp_path, capsys):
    from tests.test_datasets import make_idx_root

    make_idx_root(tmp_path, "FashionMNIST")
    images = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100])
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--dataset", "fashion-mnist", "--data-root",
                    str(tmp_path), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert_refused(code, err, r"train-images-idx3-ubyte")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished digits run of random and squeeze (shared by the fault cases below)."""
    root = tmp_path_factory.mktemp("finished")
    code = main(["run", "--method", "random", "--baseline", "squeeze", *QUICK, "--out", str(root / "out"),
                 "--cache-dir", str(root / "cache")])
    assert code == 0
    return root


def test_a_corrupt_distilled_file_keeps_the_last_good_results(finished_run, tmp_path, capsys):
    shutil.copytree(finished_run / "out", tmp_path / "out")
    good = (tmp_path / "out" / "results.json").read_text()
    victim = next((tmp_path / "out" / "distilled").glob("squeeze-*.safetensors"))
    victim.write_bytes(b"\x00" * 20)
    code = main(["run", "--method", "random", "--baseline", "squeeze", *QUICK, "--out", str(tmp_path / "out"),
                 "--cache-dir", str(finished_run / "cache")])
    err = capsys.readouterr()
    assert code != 0
    assert (tmp_path / "out" / "results.json").read_text() == good  # the last complete results are kept
    failed = json.loads((tmp_path / "out" / "results.failed.json").read_text())
    message = failed["methods"]["squeeze"]["error"]
    assert str(victim) in message and f"delete {victim}" in message
    assert "random" in failed["methods"] and "error" not in failed["methods"]["random"]
    assert "Traceback" not in err.err


def test_a_corrupt_partial_names_the_unit_and_the_fix(tmp_path):
    from ddbench.store.io import ArtifactError
    from ddbench.store.partials import PartialStore

    store = PartialStore(tmp_path / "parts")
    store.save("batch-00000", {"x": torch.zeros(2)}, {"trace": None})
    (tmp_path / "parts" / "batch-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match=r"batch-00000.safetensors.*delete .* to redo that unit"):
        store.load("batch-00000")


def test_negative_labels_in_a_saved_set_are_one_line(finished_run, tmp_path, capsys):
    images = torch.zeros(10, 1, 16, 16)
    torch.save({"images": images, "labels": torch.arange(10) - 1}, tmp_path / "set.pt")
    code, err = cli(capsys, "eval", str(tmp_path / "set.pt"), "--dataset", "digits", "--seeds", "1", "--budget-set",
                    "epochs=1", "--quiet", "--observer-epochs", "1", "--cache-dir", str(finished_run / "cache"),
                    "--out", str(tmp_path / "out"), "--evaluator", "train")
    assert_refused(code, err, r"set.pt: labels run from -1 to 8, digits has classes 0..9; pass the --dataset")
    assert nothing_written(tmp_path / "out")


def test_a_malicious_pickle_is_refused_and_never_run(tmp_path, capsys):
    import os

    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"state": Evil()}, tmp_path / "evil.pt")
    code, err = cli(capsys, "run", "--method", "random", *QUICK, "--observer", str(tmp_path / "evil.pt"),
                    "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert_refused(code, err, r"evil.pt: refused")
    assert not marker.exists()


def test_a_loaded_observer_accuracy_is_measured_not_read_from_its_header(finished_run, tmp_path):
    from ddbench.store.io import load_tensors, save_tensors

    cached = next((finished_run / "cache" / "observers").glob("*.safetensors"))
    tensors, meta = load_tensors(cached)
    forged = tmp_path / "forged.safetensors"
    save_tensors(forged, tensors, {**meta, "test_accuracy": 99.99})
    code = main(["run", "--method", "random", *QUICK, "--observer", str(forged), "--out", str(tmp_path / "out"),
                 "--cache-dir", str(finished_run / "cache")])
    assert code == 0
    observer = json.loads((tmp_path / "out" / "results.json").read_text())["observer"]
    assert observer["recorded_accuracy"] == 99.99
    honest = json.loads((finished_run / "out" / "results.json").read_text())["observer"]["test_accuracy"]
    assert observer["test_accuracy"] == honest != 99.99


def _write_records(folder: str, tag: str, count: int) -> None:
    from ddbench.store.artifacts import RunStore

    store = RunStore(Path(folder))  # read once at the start, as a run does
    run_id = store.start({"command": tag})
    for i in range(count):
        store.finish(f"{tag}-{i}", {"unit": tag, "i": i})
    store.update_run(run_id, {"command": tag, "status": "finished"})


def test_two_processes_writing_one_run_folder_lose_no_record(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_records, args=(str(tmp_path), tag, 60)) for tag in ("lic", "sre2l")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["units"]) == 120
    assert sorted((run["command"], run["status"]) for run in manifest["runs"]) == [("lic", "finished"), ("sre2l", "finished")]
