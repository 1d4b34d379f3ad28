"""Resume: a run killed with SIGKILL mid-distillation, started again with the same command,
skips what finished and ends with the numbers of an uninterrupted run; the parts of a
distillation are independent units, so redoing some of them gives bit-identical images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from baselines.sre2l import SRe2LDistiller, SRe2LOptions
from ddbench.store.artifacts import load_distilled
from ddbench.contracts import DistillTask
from ddbench.store.partials import UNIT_SECONDS, PartialStore, class_major_batches
from ddbench.host.registry import get_architecture
from lic_plugin.distiller import LICDistiller
from lic_plugin.options import LICOptions

LIC_RUN = ["run", "--method", "lic", "--baseline", "random", "--ipc", "2", "--observer-epochs", "1",
           "--budget-set", "epochs=2", "--seeds", "2", "--evaluator", "train", "--quiet",
           "--option", "lic.batch_size=2", "--option", "lic.iterations=40"]


def _command(cache: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ddbench", *LIC_RUN, "--cache-dir", str(cache), "--out", str(out)]


def _kill_when_first_part_is_saved(cache: Path, out: Path, timeout: float = 300) -> None:
    process = subprocess.Popen(_command(cache, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not list(out.glob("partial/*/batch-*.safetensors")):
            assert process.poll() is None, f"the run ended before saving a part: {process.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no part saved in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def test_sigkill_mid_distillation_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    cache = tmp_path / "cache"
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    _kill_when_first_part_is_saved(cache, killed)
    parts = list(killed.glob("partial/*/batch-*.safetensors"))
    assert parts and not list(killed.glob("distilled/lic-*.safetensors"))  # killed inside lic's distillation
    assert not list(killed.rglob("*.tmp"))  # nothing half-written looks whole

    rerun = subprocess.run(_command(cache, killed), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "lic: resuming" in rerun.stdout + rerun.stderr
    assert not (killed / "partial").exists() or not any((killed / "partial").iterdir())  # cleaned up once saved

    uninterrupted = subprocess.run(_command(cache, clean), capture_output=True, text=True, timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    resumed_results = json.loads((killed / "results.json").read_text())
    clean_results = json.loads((clean / "results.json").read_text())
    for method in ("lic", "random"):
        assert resumed_results["methods"][method]["accuracy"] == clean_results["methods"][method]["accuracy"]
    resumed_set, _ = load_distilled(next(killed.glob("distilled/lic-*.safetensors")))
    clean_set, _ = load_distilled(next(clean.glob("distilled/lic-*.safetensors")))
    assert torch.equal(resumed_set.images, clean_set.images)
    assert clean_set.timings["batches_computed"] == 10  # 10 classes, one per batch
    assert 1 <= resumed_set.timings["batches_computed"] < 10  # the rerun redid only the unfinished ones
    assert resumed_set.extras["source_indices"] == clean_set.extras["source_indices"]
    # the reported time covers every unit: this run's plus those the killed run finished
    timings = resumed_set.timings
    resumed = resumed_results["methods"]["lic"]
    assert timings["resumed_units"] == 10 - timings["batches_computed"] and timings["resumed_seconds"] > 0
    assert resumed["distill_resumed"]["units"] == timings["resumed_units"]
    assert resumed["distill_seconds"] == pytest.approx(timings["seconds_this_run"] + timings["resumed_seconds"], abs=0.01)
    assert "distill_resumed" not in clean_results["methods"]["lic"]


@pytest.fixture(scope="module")
def small_observer(digits):
    torch.manual_seed(0)
    arch = get_architecture("convnet3-bn")
    model = arch.build(digits.channels, digits.num_classes, digits.image_size).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return arch, model


def _task(digits, observer, options, partials, ipc=2):
    arch, model = observer
    return DistillTask(dataset=digits, observer=model, observer_arch=arch, ipc=ipc, device=torch.device("cpu"), seed=3,
                       options=options, partials=partials)


@pytest.mark.parametrize("method", ["lic", "sre2l"])
def test_redoing_some_parts_gives_bit_identical_images(tmp_path, digits, small_observer, method):
    if method == "lic":
        distiller, options = LICDistiller(), LICOptions(iterations=5, batch_size=6, subset_size=20)
    else:
        distiller, options = SRe2LDistiller(), SRe2LOptions(iterations=5, batch_size=6)
    whole = distiller.distill(_task(digits, small_observer, options, None))
    store = PartialStore(tmp_path / "parts")
    first = distiller.distill(_task(digits, small_observer, options, store))
    names = store.finished()
    assert len(names) == 4  # 20 images in batches of 6
    for name in names[1::2]:  # forget every other part, as a kill would leave some unfinished
        (store.folder / f"{name}.safetensors").unlink()
    restarted = PartialStore(tmp_path / "parts")  # as the command run again opens it
    again = distiller.distill(_task(digits, small_observer, options, restarted))
    assert restarted.resumed_units == 2  # the kept parts were loaded, the forgotten ones redone
    assert torch.equal(whole.images, first.images) and torch.equal(first.images, again.images)
    assert whole.extras["loss_trace"] == again.extras["loss_trace"]


def test_only_the_units_an_earlier_run_left_count_as_resumed(tmp_path):
    # under torchrun a unit another rank of this same run saves meanwhile is shared work: loading
    # it must not report it (and its time) as "resumed from an earlier run"
    store = PartialStore(tmp_path / "parts")
    store.save("unit-0", {"x": torch.ones(2)}, {UNIT_SECONDS: 3.0})
    assert store.resume("unit-0") is None and store.load("unit-0") is not None
    assert store.resumed_units == 0 and store.resumed_seconds == 0.0
    restarted = PartialStore(tmp_path / "parts")
    tensors, _ = restarted.resume("unit-0")
    assert torch.equal(tensors["x"], torch.ones(2))
    assert restarted.resumed_units == 1 and restarted.resumed_seconds == 3.0


def test_batches_are_whole_classes_and_never_depend_on_the_process_count():
    batches = class_major_batches(num_classes=10, ipc=10, batch_size=25)
    assert [b.classes for b in batches] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert [(b.start, b.stop) for b in batches][:2] == [(0, 20), (20, 40)]
    split = class_major_batches(num_classes=2, ipc=5, batch_size=2)
    assert [(b.start, b.stop, b.classes) for b in split] == [(0, 2, (0,)), (2, 4, (0,)), (4, 5, (0,)),
                                                            (5, 7, (1,)), (7, 9, (1,)), (9, 10, (1,))]
