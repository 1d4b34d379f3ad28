"""Wall time and peak memory of a stage, honestly measured on either device.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset. CPU (Linux): the process's peak
resident set (``VmHWM``), reset through ``/proc/self/clear_refs`` at the start of the stage,
so it is the true high-water mark of the process during the stage. Where that reset is not
available the kind says so (``process-peak-rss-since-start``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ddbench.runtime.host_allocator import release_freed_host_memory


@dataclass
class StageMeasure:
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_kind: str = ""
    start_memory_bytes: int = 0  # held when the stage began (the observer, the data, on CPU the libraries)

    @property
    def added_memory_bytes(self) -> int:
        """What the stage itself added on top of what was held when it began."""
        return max(0, self.peak_memory_bytes - self.start_memory_bytes)


def _read_vm_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_vm_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def measure_stage(device: torch.device):
    """``with measure_stage(device) as m: ...`` fills ``m.seconds`` and ``m.peak_memory_bytes``.
    On the CPU the heap that earlier work freed goes back to the system first (the allocator
    keeps it for reuse, :mod:`ddbench.runtime.host_allocator`), so it is neither the stage's
    start nor its peak."""
    if device.type != "cuda":
        release_freed_host_memory()
    result = StageMeasure(start_memory_bytes=current_memory_bytes(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result.memory_kind = "cuda-max-allocated"
    elif _reset_vm_hwm():
        result.memory_kind = "peak-rss"
    else:
        result.memory_kind = "process-peak-rss-since-start"
    start = time.perf_counter()
    try:
        yield result
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
        else:
            hwm = _read_vm_hwm()
            if hwm is None:
                import resource

                hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            result.peak_memory_bytes = hwm
        result.seconds = time.perf_counter() - start


def release_freed_memory(device: torch.device) -> bool:
    """Hand memory freed by earlier work back to the system before a measurement, so one stage's
    start (and peak) does not carry what the previous stage freed but the allocator kept: CUDA's
    cache is emptied; on Linux with glibc, ``malloc_trim(0)`` returns the freed heap. Returns
    whether the allocator could be asked (``False`` where the C library is not glibc)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return True
    return release_freed_host_memory()


def current_memory_bytes(device: torch.device) -> int:
    """Memory held now: ``torch.cuda.memory_allocated`` on CUDA, the resident set (VmRSS) on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class DeviceError(ValueError):
    """A --device this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r} is not a device torch knows; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} asked for CUDA but torch sees no GPU; use --device cpu or auto")
    return device
