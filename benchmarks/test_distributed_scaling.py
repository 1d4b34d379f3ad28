"""LIC's distillation wall time in 1 and 2 processes (``torchrun``, gloo, CPU).

Each configuration runs ``ddbench run --method lic`` on the embedded digits at IPC 10 with
``lic.batch_size=10`` (10 batches of one class: units the ranks split) and reads the
distillation's wall time from the run folder's manifest (rank 0's clock, from its first unit
to the merged set). ``pytest benchmarks`` uses the paper's M = 200 iterations; with
``--benchmark-disable`` (CI) 5 iterations, as a smoke test. Every configuration must give the
same images, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (processes, threads per process)
_seconds: dict[tuple[int, int], float] = {}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An observer cache, filled once outside the timings."""
    folder = tmp_path_factory.mktemp("dist-bench-cache")
    _distill(1, 1, 1, folder, folder / "warm-up")
    return folder


def _distill(processes: int, threads: int, iterations: int, cache, out) -> float:
    args = ["run", "--method", "lic", "--ipc", "10", "--observer-epochs", "1", "--budget-set", "epochs=1",
            "--seeds", "1", "--quiet", "--option", "lic.batch_size=10", "--option", f"lic.iterations={iterations}",
            "--cache-dir", str(cache), "--out", str(out)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                "--log-dir", str(out.parent / "torchrun-logs")]  # not a torchelastic_* folder left in the system's temp
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "ddbench", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    assert result.returncode == 0, result.stderr[-3000:]
    units = json.loads((out / "manifest.json").read_text())["units"].values()
    return next(u["distill_seconds"] for u in units if u["unit"] == "distill")


@pytest.mark.parametrize("processes,threads", CONFIGS)
def test_lic_distillation_wall_time(benchmark, cache, tmp_path, processes, threads):
    from ddbench.store.artifacts import load_distilled

    iterations = 5 if benchmark.disabled else 200
    out = tmp_path / "run"
    seconds = benchmark.pedantic(lambda: _distill(processes, threads, iterations, cache, out), rounds=1, iterations=1)
    _seconds[(processes, threads)] = seconds
    images = load_distilled(next((out / "distilled").glob("lic-*.safetensors")))[0].images
    reference = cache / f"lic-{iterations}.pt"
    if reference.exists():
        assert torch.equal(images, torch.load(reference, weights_only=True))
    else:
        torch.save(images, reference)
    benchmark.extra_info.update({"processes": processes, "threads": threads, "iterations": iterations,
                                 "distill_seconds": seconds})
    if (1, 1) in _seconds:
        benchmark.extra_info["speedup_vs_1x1"] = round(_seconds[(1, 1)] / seconds, 3)
    print(f"\nlic distillation, digits IPC 10, M={iterations}: {processes} process(es) x {threads} thread(s): "
          f"{seconds:.2f} s" + (f" (speed-up {_seconds[(1, 1)] / seconds:.2f}x over 1 x 1)" if (1, 1) in _seconds else ""))
