"""glibc's malloc keeps freed blocks for reuse (ddbench.runtime.host_allocator): a block of a few
MiB comes from the heap instead of fresh mmap pages once tuned, the user's own settings win,
the command line and the Python API tune, and a stage's memory is still measured without what
earlier work freed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")

# how many blocks malloc serves with mmap before and after an 8 MiB malloc (glibc's mallinfo2)
PROBE = textwrap.dedent("""
    import ctypes, sys
    from ddbench.runtime.host_allocator import keep_freed_host_memory
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        print("no mallinfo2"); sys.exit(0)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    state = keep_freed_host_memory() if sys.argv[1] == "tune" else "system"
    before = libc.mallinfo2().hblks
    block = libc.malloc(8 << 20)
    print(state, libc.mallinfo2().hblks - before)
""")


def _probe(mode: str, **env: str) -> str:
    from ddbench.runtime.host_allocator import is_malloc_setting

    clean = {key: value for key, value in os.environ.items() if not is_malloc_setting(key)}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no mallinfo2":
        pytest.skip("this C library has no mallinfo2 (glibc before 2.33, or not glibc)")
    return done.stdout.strip()


def test_a_tuned_process_serves_megabyte_blocks_from_the_heap():
    assert _probe("system") == "system 1"  # glibc's default: an 8 MiB block is fresh mmap pages
    assert _probe("tune") == "tuned 0"  # tuned: from the heap, which keeps what is freed


def test_the_users_own_malloc_settings_are_left_alone():
    assert _probe("tune", MALLOC_TRIM_THRESHOLD_="131072") == "user settings 1"
    assert _probe("tune", GLIBC_TUNABLES="glibc.malloc.arena_max=2") == "user settings 1"
    assert _probe("tune", MALLOC_ARENA_MAX="2") == "user settings 1"  # any MALLOC_* variable, as the README says


def test_the_command_line_and_the_python_api_tune_before_any_work(monkeypatch, capsys):
    import ddbench
    import ddbench.cli
    from ddbench.runtime import host_allocator

    calls = []
    monkeypatch.setattr(ddbench.cli, "keep_freed_host_memory", lambda: calls.append("cli"))
    assert ddbench.cli.main(["plugins", "--json"]) == 0
    assert calls == ["cli"]

    class Tuned(Exception):
        pass

    def tune_then_stop():
        calls.append("api")
        raise Tuned

    monkeypatch.setattr(host_allocator, "keep_freed_host_memory", tune_then_stop)
    for call in (lambda: ddbench.run("random"), lambda: ddbench.evaluate("missing.safetensors")):
        with pytest.raises(Tuned):
            call()
    assert calls == ["cli", "api", "api"]


def test_a_stage_starts_without_the_heap_earlier_work_freed():
    """200 MiB allocated and freed stay with the tuned process (under the trim threshold), yet
    the next stage's starting memory does not count them."""
    script = textwrap.dedent("""
        import torch
        from ddbench.runtime.host_allocator import keep_freed_host_memory
        from ddbench.runtime.measure import current_memory_bytes, measure_stage
        assert keep_freed_host_memory() == "tuned"
        cpu = torch.device("cpu")
        blocks = [torch.ones(2 << 20) for _ in range(25)]  # 25 blocks of 8 MiB, touched
        del blocks
        kept = current_memory_bytes(cpu)
        with measure_stage(cpu) as measure:
            pass
        print(kept >> 20, measure.start_memory_bytes >> 20)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kept_mib, start_mib = map(int, done.stdout.split())
    assert kept_mib - start_mib > 150, (kept_mib, start_mib)
