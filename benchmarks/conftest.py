"""Shared fixtures of the benchmarks: the embedded digits and a small observer built here.

``pytest benchmarks`` times them (pytest-benchmark); ``pytest benchmarks --benchmark-disable``
runs each once, untimed, as a smoke test (what CI does). The observer is a randomly initialised
``convnet3-bn`` in eval mode with frozen weights: the cost of a distillation does not depend on
what the observer learned, and building it takes no training.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:  # as the tests do; OMP_NUM_THREADS, where set, decides
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# the allocator as ddbench's command line sets it (ddbench.runtime.host_allocator): benchmarks time
# what a run does
from ddbench.runtime.host_allocator import keep_freed_host_memory  # noqa: E402

keep_freed_host_memory()

OBSERVER_ARCH = "convnet3-bn"


@pytest.fixture(scope="session")
def digits():
    from ddbench.contracts import DataOptions
    from ddbench.host.registry import get_dataset

    return get_dataset("digits").load(DataOptions())


@pytest.fixture(scope="session")
def observer(digits):
    """``(model, arch)``: a frozen convnet3-bn for the digits' shape, in eval mode, on the CPU."""
    from ddbench.host.registry import get_architecture

    arch = get_architecture(OBSERVER_ARCH)
    torch.manual_seed(0)
    model = arch.build(digits.channels, digits.num_classes, digits.image_size).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, arch


class Stopwatch:
    """Wraps a function and keeps the wall time of every call, so a benchmark can report its own
    figures (images per second, overhead ratios) whether pytest-benchmark times it or not."""

    def __init__(self, function):
        self.function = function
        self.seconds: list[float] = []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        result = self.function(*args, **kwargs)
        self.seconds.append(time.perf_counter() - started)
        return result

    @property
    def best(self) -> float:
        return min(self.seconds)


@pytest.fixture
def stopwatch():
    return Stopwatch


@pytest.fixture
def time_against(benchmark, rounds):
    """``time_against(timed, main, untimed_rounds=3)``: time ``timed[main]`` against the other
    stopwatches of ``timed`` (warmed up, their ``seconds`` cleared). Untimed (CI): the best of
    ``untimed_rounds`` calls each, alternated, so one stall cannot decide a ratio. Timed:
    ``benchmark.pedantic`` on ``main`` with this test's rounds, then as many calls of each other."""

    def time_one_against_the_others(timed: dict, main: str, untimed_rounds: int = 3) -> None:
        if benchmark.disabled:
            for _ in range(untimed_rounds):
                for run in timed.values():
                    run()
            return
        benchmark.pedantic(timed[main], **rounds)
        for name, run in timed.items():
            if name != main:
                for _ in range(len(timed[main].seconds)):
                    run()

    return time_one_against_the_others


@pytest.fixture
def rounds(benchmark) -> dict:
    """``benchmark.pedantic`` settings: a warm-up and three rounds when timing; once when disabled."""
    return {"rounds": 1 if benchmark.disabled else 3, "warmup_rounds": 0 if benchmark.disabled else 1, "iterations": 1}


def run_in_processes(script: str, argument_lists: list[list[str]], timeout: float) -> list[dict]:
    """Run ``script`` once per argument list, each in a process of its own and all side by side
    (peak memory is a per-process figure, so processes do not disturb each other's), and return
    the JSON object each printed last, in order. A process that fails fails the test with its stderr."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, script, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for arguments in argument_lists]
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            assert process.returncode == 0, stderr
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.fixture
def in_processes():
    """:func:`run_in_processes`, for measurements that need a process each."""
    return run_in_processes
