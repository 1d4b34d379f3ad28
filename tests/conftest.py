"""Shared fixtures: small datasets and observers made in the test, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# the allocator as ddbench's command line sets it, from the start: tests that call the command line
# in this process would otherwise switch it part-way, and what runs after would depend on the order
from ddbench.runtime.host_allocator import keep_freed_host_memory  # noqa: E402

keep_freed_host_memory()


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m ddbench ARGS`` in a subprocess, text output captured."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ddbench", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def digits():
    from ddbench.contracts import DataOptions
    from ddbench.host.registry import get_dataset

    return get_dataset("digits").load(DataOptions())


def make_dataset(num_classes: int = 3, per_class: int = 12, channels: int = 1, size: int = 8, test_per_class: int = 4, seed: int = 0):
    """A tiny synthetic dataset whose classes differ in mean brightness."""
    from ddbench.contracts import Normalization
    from ddbench.data.base import Dataset, TensorSource

    generator = torch.Generator().manual_seed(seed)

    def split(count: int) -> TensorSource:
        labels = torch.arange(num_classes).repeat_interleave(count)
        base = (labels.float() + 1) / (num_classes + 1)
        pixels = (base.view(-1, 1, 1, 1) + 0.1 * torch.randn(len(labels), channels, size, size, generator=generator)).clamp(0, 1)
        return TensorSource(pixels, labels, Normalization((0.5,) * channels, (0.25,) * channels), size)

    return Dataset("synthetic", split(per_class), split(test_per_class), tuple(f"c{i}" for i in range(num_classes)),
                   channels, size, Normalization((0.5,) * channels, (0.25,) * channels), source="test")
