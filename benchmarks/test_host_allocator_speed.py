"""LIC's and SRe2L's distillation on the digits with glibc's malloc as the system leaves it and
as ddbench tunes it (:mod:`ddbench.runtime.host_allocator`): why the command line keeps freed
blocks for reuse.

``malloc`` options are per process, so each measurement is a fresh Python process, the two
settings alternating so that a machine's load hits both alike. Both must give the same images,
bit for bit (the allocator decides where bytes live, not what they are); the tuned one must not
be slower than the system's by more than 10 %. The median times and their ratio are printed
and stored in ``extra_info``::

    python -m pytest benchmarks/test_host_allocator_speed.py -s

With ``--benchmark-disable`` (CI) each setting runs a one-image-per-class distillation once.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

WORKER = r"""
import hashlib, json, os, sys, time
import torch
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
from ddbench.runtime.host_allocator import keep_freed_host_memory
setting, method, ipc, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
state = keep_freed_host_memory() if setting == "tuned" else "system"
from ddbench.contracts import DataOptions, DistillTask
from ddbench.host import registry
from ddbench.settings.options import apply_overrides
digits = registry.get_dataset("digits").load(DataOptions())
arch = registry.get_architecture("convnet3-bn")
torch.manual_seed(0)
observer = arch.build(digits.channels, digits.num_classes, digits.image_size).eval()
for parameter in observer.parameters():
    parameter.requires_grad_(False)
distiller = registry.get_distiller(method)
options = apply_overrides(distiller.options_class(), settings, what=method)
task = DistillTask(dataset=digits, observer=observer, observer_arch=arch, ipc=ipc, device=torch.device("cpu"),
                   seed=0, options=options)
started = time.perf_counter()
images = distiller.distill(task).images
seconds = time.perf_counter() - started
print(json.dumps({"state": state, "seconds": seconds,
                  "sha256": hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()}))
"""

CASES = {"lic": ["iterations=10"], "sre2l": ["iterations=60"]}
SETTINGS = ("system", "tuned")


def _measure(setting: str, method: str, ipc: int) -> dict:
    from ddbench.runtime.host_allocator import is_malloc_setting

    env = {key: value for key, value in os.environ.items() if not is_malloc_setting(key)}
    done = subprocess.run([sys.executable, "-c", WORKER, setting, method, str(ipc), json.dumps(CASES[method])],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
@pytest.mark.parametrize("method", list(CASES))
def test_kept_freed_blocks_distill_the_same_images_no_slower(benchmark, method):
    ipc, rounds = (1, 1) if benchmark.disabled else (10, 3)
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    for round_index in range(rounds):
        for setting in (SETTINGS if round_index % 2 == 0 else tuple(reversed(SETTINGS))):
            runs[setting].append(_measure(setting, method, ipc))
    if runs["tuned"][0]["state"] != "tuned":
        pytest.skip(f"the C library could not be tuned here: {runs['tuned'][0]['state']}")
    digests = {run["sha256"] for setting in SETTINGS for run in runs[setting]}
    assert len(digests) == 1, f"{method}: the allocator changed the distilled images ({len(digests)} different sets)"
    median = {setting: statistics.median(run["seconds"] for run in runs[setting]) for setting in SETTINGS}
    ratio = median["system"] / median["tuned"]
    benchmark.extra_info.update(method=method, options=CASES[method], ipc=ipc, rounds=rounds,
                                seconds={key: round(value, 2) for key, value in median.items()}, speedup=round(ratio, 2))
    print(f"\n{method} ({', '.join(CASES[method])}), IPC {ipc}, median of {rounds}: system malloc "
          f"{median['system']:.2f} s, kept freed blocks {median['tuned']:.2f} s ({ratio:.2f}x)")
    if not benchmark.disabled:
        assert ratio > 1 / 1.10, f"{method}: the tuned allocator was slower ({ratio:.2f}x)"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
