"""glibc's ``malloc`` for training loops on the CPU: keep freed blocks for the next step.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold
(128 KiB at first, raised as such blocks are freed) with fresh ``mmap`` pages and gives the
top of its heap back to the system once more than the trim threshold is free. A training
step frees and allocates the same activations, megabytes each, every step, so every step
pays the page faults again: on this project's 2-core VM about a fifth of LIC's and SRe2L's
distillation time (``benchmarks/test_host_allocator_speed.py``).

:func:`keep_freed_host_memory` raises both thresholds (``mallopt``), so blocks up to 32 MiB
(glibc's largest mmap threshold) come from the heap and up to 256 MiB of it stays mapped for
reuse. Numbers do not change: only where the bytes live. Peak memory stays honest because
:func:`ddbench.runtime.measure.measure_stage` hands the freed heap back (``malloc_trim``)
before it starts a stage's high-water mark. A user's own glibc settings (``MALLOC_*_`` or
``GLIBC_TUNABLES`` in the environment) are left as they are; elsewhere (macOS, musl) nothing
happens.
"""

from __future__ import annotations

import ctypes
import functools
import os

MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed on 64-bit systems
TRIM_THRESHOLD_BYTES = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h


def is_malloc_setting(name: str) -> bool:
    """Whether the environment variable ``name`` sets glibc's malloc (``MALLOC_*``, ``GLIBC_TUNABLES``)."""
    return name.startswith("MALLOC_") or name == "GLIBC_TUNABLES"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_host_memory() -> str:
    """Tune this process's ``malloc`` (see the module). Returns what happened: ``"tuned"``,
    ``"user settings"`` (the environment sets glibc's malloc; left alone) or ``"not glibc"``."""
    if any(is_malloc_setting(name) for name in os.environ):
        return "user settings"
    libc = _glibc()
    if libc is None:
        return "not glibc"
    if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        raise RuntimeError("glibc refused mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD); "
                           "set MALLOC_MMAP_THRESHOLD_ in the environment to choose for yourself")
    return "tuned"


def release_freed_host_memory() -> bool:
    """Give the heap's free memory back to the system (``malloc_trim(0)``). Returns whether
    the allocator could be asked (``False`` where the C library is not glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
