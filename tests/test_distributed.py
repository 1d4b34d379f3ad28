"""torchrun with 2 CPU processes (gloo): the merged distilled set equals the single-process one
bit for bit, evaluation spread over ranks (seeds, or DDP) completes, and the helpers that deal
work to ranks do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddbench.store.artifacts import load_distilled
from ddbench.runtime.distributed import Cluster, resolve_dist_eval

RUN = ["run", "--method", "lic", "--baseline", "squeeze", "--ipc", "2", "--observer-epochs", "1",
       "--budget-set", "epochs=2", "--seeds", "2", "--quiet", "--option", "lic.batch_size=4",
       "--option", "lic.iterations=10"]


# ddbench's command line, then the threads each rank still runs once it has left the process group
THREADS_LEFT = """
import os, sys
from ddbench.cli import main

code = main(sys.argv[1:])
others = [task for task in os.listdir("/proc/self/task") if task != str(os.getpid())]  # all but the main thread
names = sorted(open(f"/proc/self/task/{task}/comm").read().strip() for task in others)
sys.stdout.flush()
os.write(1, f"rank {os.environ['RANK']} threads left: {names}\\n".encode())  # one write: ranks share the pipe
sys.exit(code)
"""


def torchrun(*args: str, logs: Path, nproc: int = 2, script: Path | None = None) -> subprocess.CompletedProcess:
    # faulthandler: a rank that aborts in C++ (SIGABRT) prints every thread's Python stack
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    entry = [str(script)] if script is not None else ["-m", "ddbench"]
    # --log-dir: without it torchrun leaves a torchelastic_* folder in the system's temp folder
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "--log-dir", str(logs), *entry, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def said_by_ranks(result: subprocess.CompletedProcess) -> str:
    """What a failed launch printed beyond torchrun's own summary (which alone fills 2,500 characters)."""
    return f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-8000:]}"


def single(*args: str) -> subprocess.CompletedProcess:
    # one thread, as each torchrun rank has: oneDNN's channels-last training sums gradients in an
    # order that depends on the thread count, so only equal thread counts give equal numbers
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ddbench", *args], capture_output=True, text=True, env=env, timeout=600)


def _distilled(folder: Path, method: str):
    return load_distilled(next((folder / "distilled").glob(f"{method}-*.safetensors")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    cache = str(root / "cache")
    alone = single(*RUN, "--cache-dir", cache, "--out", str(root / "single"))
    assert alone.returncode == 0, alone.stderr
    ranks = torchrun(*RUN, "--cache-dir", cache, "--out", str(root / "two"), logs=root / "torchrun-logs")
    assert ranks.returncode == 0, said_by_ranks(ranks)
    return root, ranks


@pytest.mark.parametrize("method", ["lic", "squeeze"])
def test_two_ranks_merge_into_the_single_process_set_bit_for_bit(runs, method):
    root, _ = runs
    one, _ = _distilled(root / "single", method)
    two, meta = _distilled(root / "two", method)
    assert meta["ranks"] == 2  # it really was split over two ranks
    assert torch.equal(one.images, two.images) and torch.equal(one.labels, two.labels)
    assert one.extras["source_indices"] == two.extras["source_indices"]


def test_rank_zero_alone_reports_and_the_numbers_match(runs):
    root, ranks = runs
    one = json.loads((root / "single" / "results.json").read_text())
    two = json.loads((root / "two" / "results.json").read_text())
    assert two["ranks"] == 2 and two["backend"] == "gloo"
    for method in ("lic", "squeeze"):  # seeds spread over ranks: each seed trained as in one process
        assert two["methods"][method]["accuracy"] == one["methods"][method]["accuracy"]
        assert "distill_resumed" not in two["methods"][method]  # rank 1's units are this run's, not an earlier one's
    said = ranks.stdout + ranks.stderr
    assert said.count("results written to") == 1 and said.count("observer convnet3-bn-w64: test accuracy") == 1
    assert "resuming" not in said
    assert not (root / "two" / "partial").exists()
    units = json.loads((root / "two" / "manifest.json").read_text())["units"].values()
    assert sorted(u.get("rank") for u in units if u["unit"] == "eval" and u["method"] == "lic") == [0, 1]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the threads from /proc (Linux)")
def test_data_parallel_evaluation_completes_and_leaves_no_communication_threads(tmp_path):
    """DDP once kept the process group alive past destroy_process_group (torch.distributed.nn,
    imported by DDP, bound the default group into its functions' defaults), so gloo's threads
    lived into interpreter shutdown, where a rank now and then aborted."""
    script = tmp_path / "threads_left.py"
    script.write_text(THREADS_LEFT)
    result = torchrun("run", "--method", "random", "--ipc", "2", "--observer-epochs", "1", "--budget-set", "epochs=2",
                      "--seeds", "1", "--quiet", "--dist-eval", "ddp", "--cache-dir", str(tmp_path / "cache"),
                      "--out", str(tmp_path / "out"), logs=tmp_path / "torchrun-logs", script=script)
    assert result.returncode == 0, said_by_ranks(result)
    entry = json.loads((tmp_path / "out" / "results.json").read_text())["methods"]["random"]
    assert 0 <= entry["accuracy"]["mean"] <= 100 and len(entry["accuracy"]["per_seed"]) == 1
    for rank in (0, 1):
        assert f"rank {rank} threads left: []" in result.stdout, said_by_ranks(result)


def test_units_are_dealt_round_robin_and_auto_picks_seeds_when_enough():
    ranks = [Cluster(rank, 3) for rank in range(3)]
    owners = [[r.rank for r in ranks if r.owns(unit)] for unit in range(7)]
    assert owners == [[0], [1], [2], [0], [1], [2], [0]]
    assert resolve_dist_eval("auto", seeds=3, world_size=2) == "seeds"
    assert resolve_dist_eval("auto", seeds=1, world_size=2) == "ddp"
    assert resolve_dist_eval("ddp", seeds=8, world_size=2) == "ddp"
