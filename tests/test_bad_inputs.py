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
    "observer shift too large": (["--observer-shift", "0.5"],
                                 r"--observer-shift\) is a fraction of the image side in \[0, 0.5\), got 0.5"),
    "observer low-res share above 1": (["--observer-low-res", "1.5"],
                                       r"--observer-low-res\) is the share of training views shown at half resolution, "
                                       r"in \[0, 1\], got 1.5"),
    "repeated seeds": (["--seeds", "0,0"], r"--seeds lists seed 0 more than once"),
    "seeds 0": (["--seeds", "0"], r"--seeds needs at least one seed, got 0: a number is a count .*\(2, = seed 2 alone\)"),
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


# Regression cases: handled well before, kept so they stay so. Each builds its arguments from
# ``files`` (bad files made once per module), the output folder and the cache folder.
RUN = ["run", "--method", "random"]
EVAL = ["--observer-epochs", "1", "--budget-set", "epochs=1", "--seeds", "1", "--quiet", "--dataset", "digits"]
REGRESSION = {
    # unknown names, on every command
    "cross-arch unknown method": (lambda f: ["cross-arch", "--methods", "nosuch", "--observers", "convnet3-bn", *QUICK],
                                  r"unknown method 'nosuch'. Installed distillers: .*lic"),
    "cross-arch unknown verifier": (lambda f: ["cross-arch", "--methods", "random", "--observers", "convnet3-bn",
                                               "--verifiers", "nosuch", *QUICK], r"unknown architecture 'nosuch'"),
    "cross-arch observer twice": (lambda f: ["cross-arch", "--methods", "random", "--observers", "convnet3-bn,convnet3-bn",
                                             *QUICK], r"--observers names an architecture twice"),
    "cross-arch no observers": (lambda f: ["cross-arch", "--methods", "random", "--observers", "", *QUICK],
                                r"--observers must name at least one architecture"),
    "bench unknown method": (lambda f: ["bench", "--methods", "nosuch", "--quiet"], r"unknown method 'nosuch'"),
    "bench option for a method not run": (lambda f: ["bench", "--methods", "random", "--option", "lic.lr=1", "--quiet"],
                                          r"--option given for lic, which this bench does not use"),
    "bench one observer, two archs": (lambda f: ["bench", "--methods", "random", "--arch", "convnet3-bn,convnet4-bn",
                                                 "--observer", str(f / "garbage.pt"), "--quiet"],
                                      r"--observer gives one checkpoint; name one --arch"),
    "ablate unknown method": (lambda f: ["ablate", "nosuch", *QUICK], r"unknown method 'nosuch'"),
    "ablate no method": (lambda f: ["ablate", *QUICK], r"ablate needs a method: ddbench ablate lic \(or --method lic\)"),
    "ablate two methods": (lambda f: ["ablate", "lic", "--method", "sre2l", *QUICK], r"names two methods"),
    "ablate unknown ablation": (lambda f: ["ablate", "lic", "--sweeps", "nosuch", *QUICK],
                                r"lic has no ablation 'nosuch'; it declares table7, m, n, layer"),
    "ablate a method without ablations": (lambda f: ["ablate", "random", *QUICK], r"'random' declares no ablations"),
    "eval unknown evaluator": (lambda f: ["eval", str(f / "ok.pt"), *EVAL, "--evaluator", "nosuch"],
                               r"unknown evaluator 'nosuch'. Installed evaluators: .*relabel"),
    "observer train unknown arch": (lambda f: ["observer", "train", "--arch", "nosuch"], r"unknown architecture 'nosuch'"),
    "unknown command": (lambda f: ["nosuch"], r"invalid choice: 'nosuch'"),
    "unknown verifier": (lambda f: [*RUN, *QUICK, "--verifier", "nosuch"], r"unknown architecture 'nosuch'"),
    "unknown budget preset": (lambda f: [*RUN, *QUICK, "--budget", "nosuch"], r"unknown budget preset 'nosuch'; available: paper"),
    "unknown budget field": (lambda f: [*RUN, *QUICK, "--budget-set", "nosuch=1"],
                             r"budget 'quick' has no option 'nosuch'; valid options: epochs"),
    "unknown evaluator option": (lambda f: [*RUN, *QUICK, "--eval-option", "nosuch=1"],
                                 r"evaluator 'relabel' has no option 'nosuch'; valid options"),
    "unknown device": (lambda f: [*RUN, *QUICK, "--device", "tpu"], r"--device 'tpu' is not a device torch knows"),
    "cuda without a gpu": (lambda f: [*RUN, *QUICK, "--device", "cuda"], r"asked for CUDA but torch sees no GPU"),
    "unknown dist-eval": (lambda f: [*RUN, *QUICK, "--dist-eval", "nosuch"], r"--dist-eval: invalid choice"),
    "plan shape not understood": (lambda f: [*RUN, *QUICK, "--plan", "abc"], r"--plan 'abc': use a preset"),
    # bad values
    "seeds not numbers": (lambda f: [*RUN, *QUICK, "--seeds", "a,b"], r"--seeds takes a count \(3\) or a list"),
    "ipc not a number": (lambda f: [*RUN, *QUICK, "--ipc", "abc"], r"--ipc takes an integer or a comma list"),
    "image size not a number": (lambda f: [*RUN, *QUICK, "--image-size", "abc"], r"--image-size takes an integer"),
    "budget epochs 0": (lambda f: [*RUN, *QUICK, "--budget-set", "epochs=0"], r"epochs, batch_size and test_batch_size must be >= 1"),
    "budget batch size 0": (lambda f: [*RUN, *QUICK, "--budget-set", "batch_size=0"], r"must be >= 1, got 1, 0, 500"),
    "budget assignment without a value": (lambda f: [*RUN, *QUICK, "--budget-set", "epochs"], r"expected KEY=VALUE, got 'epochs'"),
    "option without a value": (lambda f: [*RUN, "--baseline", "lic", *QUICK, "--option", "lic.lr"],
                               r"--option takes METHOD.KEY=VALUE, got 'lic.lr'"),
    "lic n not a square": (lambda f: ["run", "--method", "lic", *QUICK, "--option", "lic.n=5"], r"N must be a perfect square"),
    "lic n 0": (lambda f: ["run", "--method", "lic", *QUICK, "--option", "lic.n=0"], r"lic option n=0"),
    "negative temperature": (lambda f: [*RUN, *QUICK, "--eval-option", "temperature=-1"],
                             r"temperature must be a positive finite number, got -1.0"),
    "negative data memory": (lambda f: [*RUN, *QUICK, "--data-memory-gib", "-1"], r"--data-memory-gib must be a finite number"),
    "nan data memory": (lambda f: [*RUN, *QUICK, "--data-memory-gib", "nan"], r"--data-memory-gib must be a finite number"),
    "negative data workers": (lambda f: [*RUN, *QUICK, "--data-workers", "-1"], r"--data-workers must be at least 0"),
    "progress every 0": (lambda f: [*RUN, *QUICK, "--progress-every", "0"], r"--progress-every must be a finite number above 0"),
    "validation larger than a class": (lambda f: [*RUN, *QUICK, "--validation", "5000"],
                                       r"--validation 5000 per class leaves nothing to train on"),
    "a method named twice": (lambda f: [*RUN, "--baseline", "random", *QUICK], r"a method is named twice"),
    "no method": (lambda f: ["run", *QUICK], r"name the main method: --method M"),
    "bench iterations 0": (lambda f: ["bench", "--methods", "random", "--bench-iterations", "0", "--quiet"],
                           r"--bench-iterations must be at least 1"),
    "bench batch size 0": (lambda f: ["bench", "--methods", "random", "--batch-size", "0", "--quiet"], r"--batch-size must be at least 1"),
    "ablate values not integers": (lambda f: ["ablate", "lic", "--values", "m=abc", *QUICK], r"--values takes NAME=1,2,3 \(integers\)"),
    "observer train epochs 0": (lambda f: ["observer", "train", "--observer-epochs", "0"], r"--observer-epochs must be at least 1"),
    # data that is not there
    "imagefolder without a root": (lambda f: [*RUN, *QUICK, "--dataset", "imagefolder"], r"--data-root is required"),
    "imagefolder without train/": (lambda f: [*RUN, *QUICK, "--dataset", "imagefolder", "--data-root", str(f / "empty")],
                                   r"expected a train/ folder with one sub-folder per class"),
    "cifar10 files missing": (lambda f: [*RUN, *QUICK, "--dataset", "cifar10", "--data-root", str(f / "empty")],
                              r"expected the CIFAR files data_batch_1.*--download"),
    # config files
    "config file missing": (lambda f: ["run", "--config", str(f / "nosuch.toml"), *QUICK], r"--config .*nosuch.toml: No such file"),
    "config file not TOML": (lambda f: ["run", "--config", str(f / "bad.toml"), *QUICK], r"not valid TOML .*; fix the file"),
    "config file unknown key": (lambda f: ["run", "--config", str(f / "unknown.toml"), *QUICK], r"unknown key 'nosuch_key'"),
    "config file wrong type": (lambda f: ["run", "--config", str(f / "wrongtype.toml")], r"--ipc takes an integer .*got 'ten'"),
    # corrupt and malicious files
    "observer file missing": (lambda f: [*RUN, *QUICK, "--observer", str(f / "nosuch.safetensors")], r"nosuch.safetensors: no such file"),
    "observer garbage safetensors": (lambda f: [*RUN, *QUICK, "--observer", str(f / "garbage.safetensors")],
                                     r"garbage.safetensors: not a readable safetensors file"),
    "observer garbage torch file": (lambda f: [*RUN, *QUICK, "--observer", str(f / "garbage.pt")], r"garbage.pt: not a readable torch file"),
    "observer malicious pickle": (lambda f: [*RUN, *QUICK, "--observer", str(f / "evil.pt")], r"evil.pt: refused"),
    "teacher malicious pickle": (lambda f: [*RUN, *QUICK, "--teacher", str(f / "evil.pt")], r"evil.pt"),
    "teacher .pt names no architecture": (lambda f: [*RUN, *QUICK, "--teacher", str(f / "ok.pt")], r"a .pt teacher names no architecture"),
    "eval file missing": (lambda f: ["eval", str(f / "nosuch.safetensors"), *EVAL], r"no such file or folder: .*nosuch.safetensors"),
    "eval garbage safetensors": (lambda f: ["eval", str(f / "garbage.safetensors"), *EVAL], r"not a readable safetensors file"),
    "eval garbage torch file": (lambda f: ["eval", str(f / "garbage.pt"), *EVAL], r"garbage.pt: not a readable torch file"),
    "eval malicious pickle": (lambda f: ["eval", str(f / "evil.pt"), *EVAL], r"evil.pt"),
    "eval empty folder": (lambda f: ["eval", str(f / "empty"), *EVAL], r"empty: no images in class folders"),
    "eval wrong image shape": (lambda f: ["eval", str(f / "wrongshape.pt"), *EVAL],
                               r"images of shape \[10, 1, 32, 32\], but digits needs \[N, 1, 16, 16\]"),
    "eval labels missing": (lambda f: ["eval", str(f / "nolabels.pt"), *EVAL], r"needs tensors 'images' \[N, C, H, W\] and 'labels'"),
    "eval label count": (lambda f: ["eval", str(f / "count.pt"), *EVAL], r"10 images but labels of shape \[9\]"),
    "eval labels out of range": (lambda f: ["eval", str(f / "labelrange.pt"), *EVAL], r"labels run from 5 to 14"),
    "eval fractional labels": (lambda f: ["eval", str(f / "fraclabels.pt"), *EVAL], r"'labels' holds fractional values"),
    "eval non-finite images": (lambda f: ["eval", str(f / "nan.pt"), *EVAL], r"the images hold NaN or infinite values"),
    "eval empty set": (lambda f: ["eval", str(f / "emptyset.pt"), *EVAL], r"the set holds no images"),
    "export file missing": (lambda f: ["export", str(f / "nosuch.safetensors"), "--format", "imagefolder", "--out",
                                       str(f / "export")], r"nosuch.safetensors: no such file"),
    "export garbage": (lambda f: ["export", str(f / "garbage.safetensors"), "--format", "imagefolder", "--out",
                                  str(f / "export")], r"not a readable safetensors file"),
    "export unknown format": (lambda f: ["export", str(f / "garbage.safetensors"), "--format", "nosuch", "--out",
                                         str(f / "export")], r"--format: invalid choice: 'nosuch'"),
    "compare missing folder": (lambda f: ["compare", str(f / "nosuch")], r"cannot read results .*pass run folders holding results.json"),
    "compare folder without results": (lambda f: ["compare", str(f / "empty")], r"results.json: cannot read results"),
    "compare corrupt results": (lambda f: ["compare", str(f / "badresults")], r"results.json: cannot read results \(Expecting"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files of every kind, made once: garbage, a malicious pickle, sets that break one rule each."""
    import os

    root = tmp_path_factory.mktemp("bad-files")
    (root / "garbage.safetensors").write_bytes(b"\x00" * 30)
    (root / "garbage.pt").write_bytes(b"not a pickle at all")
    (root / "bad.toml").write_text('method = "random"\n[budget\nepochs = 1\n')
    (root / "unknown.toml").write_text('method = "random"\nnosuch_key = 1\n')
    (root / "wrongtype.toml").write_text('method = "random"\nipc = "ten"\n')
    (root / "empty").mkdir()
    (root / "badresults").mkdir()
    (root / "badresults" / "results.json").write_text("{not json")

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(root / "marker"),))

    torch.save({"state": Evil()}, root / "evil.pt")
    zeros, labels = torch.zeros(10, 1, 16, 16), torch.arange(10)
    sets = {"ok": (zeros, labels), "wrongshape": (torch.zeros(10, 1, 32, 32), labels), "count": (zeros, torch.arange(9)),
            "labelrange": (zeros, labels + 5), "fraclabels": (zeros, labels.float() / 2),
            "nan": (torch.full_like(zeros, float("nan")), labels), "emptyset": (zeros[:0], labels[:0])}
    for name, (images, set_labels) in sets.items():
        torch.save({"images": images, "labels": set_labels}, root / f"{name}.pt")
    torch.save({"images": zeros}, root / "nolabels.pt")
    return root


@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_case_is_refused_with_one_line(files, tmp_path, capsys, name):
    arguments, pattern = REGRESSION[name]
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = arguments(files)
    if argv[0] not in ("compare", "export", "plugins", "nosuch"):
        argv += ["--out", str(out), "--cache-dir", str(cache)] if argv[0] != "observer" else ["--cache-dir", str(cache)]
    code, err = cli(capsys, *argv)
    assert_refused(code, err, pattern)
    assert nothing_written(out, cache, files / "export")
    assert not (files / "marker").exists()  # no pickle was run


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


# SIGKILL at each stage: the same command again finishes with the numbers of a run never killed.
# (Mid-distillation, with parts saved, is tests/test_resume.py.)
KILLED_RUN = ["run", "--method", "random", "--baseline", "squeeze", "--observer-epochs", "3", "--budget-set", "epochs=40",
              "--seeds", "2", "--ipc", "2", "--progress-every", "0.2", "--evaluator", "train"]
KILL_AT = {  # stage -> a pattern of the progress line after which the process is killed
    # any step under way: heartbeats report the steps done at that moment, so a fast observer skips counts
    "observer training": r"observer convnet3-bn-w64: [1-9]\d*/\d+ \(",
    "evaluation": r"evaluate squeeze seed 1: started",
}


def _ddbench(cache: Path, out: Path, log: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ddbench", *KILLED_RUN, "--cache-dir", str(cache), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)


def _finish(cache: Path, out: Path, log: Path) -> dict:
    process = _ddbench(cache, out, log)
    assert process.wait(timeout=600) == 0, log.read_text()
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def never_killed(tmp_path_factory):
    """(results, cache folder) of the run never killed."""
    root = tmp_path_factory.mktemp("never-killed")
    return _finish(root / "cache", root / "out", root / "log"), root / "cache"


@pytest.mark.parametrize("stage", list(KILL_AT))
def test_sigkill_at_each_stage_then_the_same_command_gives_the_uninterrupted_numbers(never_killed, tmp_path, stage):
    import signal
    import time

    import shutil

    never_killed, trained_cache = never_killed
    cache, out, log = tmp_path / "cache", tmp_path / "out", tmp_path / "killed.log"
    if stage != "observer training":  # the observer is not what is under test here: start from the one trained
        shutil.copytree(trained_cache, cache)
    process = _ddbench(cache, out, log)
    deadline = time.monotonic() + 300
    while not re.search(KILL_AT[stage], log.read_text()):
        assert process.poll() is None, f"the run ended before {stage}: {log.read_text()}"
        assert time.monotonic() < deadline, f"never reached {stage}"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp*"))  # nothing half-written
    assert not (out / "results.json").exists()
    if stage == "observer training":
        assert not list((cache / "observers").glob("*.safetensors"))  # no observer cached half-trained
    else:
        manifest = json.loads((out / "manifest.json").read_text())
        evals = [u for u in manifest["units"].values() if u.get("unit") == "eval"]
        assert len(evals) == 3  # random's two seeds and squeeze's first: the killed seed was not recorded

    rerun = _finish(cache, out, tmp_path / "rerun.log")
    for method in ("random", "squeeze"):
        assert rerun["methods"][method]["accuracy"] == never_killed["methods"][method]["accuracy"]
    if stage == "evaluation":
        assert "finished before" in (tmp_path / "rerun.log").read_text()  # the distilled sets were not redone
