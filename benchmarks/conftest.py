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
def rounds(benchmark) -> dict:
    """``benchmark.pedantic`` settings: a warm-up and three rounds when timing; once when disabled."""
    return {"rounds": 1 if benchmark.disabled else 3, "warmup_rounds": 0 if benchmark.disabled else 1, "iterations": 1}
