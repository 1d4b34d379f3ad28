"""Verifier training steps in the two memory formats: why the budget's ``channels_last=auto``
resolves to ``on`` on every device, the CPU included.

Each case times relabel-shaped steps (a teacher forward without gradients, then the verifier's
forward, backward and AdamW step on a batch of 50) for one architecture and image size, with
both models in the contiguous (NCHW) format and then in channels-last, alternating the two so
that a machine's load hits both alike. The median step time of each and their ratio are printed
and stored in ``extra_info``::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_channels_last.py -s

With ``--benchmark-disable`` (CI) each case runs a few steps once as a smoke test.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

CASES = [("convnet3-bn", 1, 16), ("convnet3-bn", 3, 32), ("mobilenetv2", 3, 32)]
BATCH = 50


def _models(name: str, channels: int, size: int, channels_last: bool):
    from ddbench.host.registry import get_architecture

    torch.manual_seed(0)
    arch = get_architecture(name)
    student, teacher = arch.build(channels, 10, size), arch.build(channels, 10, size).eval()
    if channels_last:
        student.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    return student, teacher, torch.optim.AdamW(student.parameters(), lr=1e-3)


def _step(models, images: torch.Tensor) -> torch.Tensor:
    student, teacher, optimizer = models
    with torch.no_grad():
        targets = teacher(images).softmax(dim=1)
    loss = -(student(images).log_softmax(dim=1) * targets).sum(dim=1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@pytest.mark.parametrize("name,channels,size", CASES)
def test_channels_last_training_step(benchmark, name, channels, size):
    batch = 8 if benchmark.disabled else BATCH  # untimed (CI): one small step of each, a smoke test
    images = torch.randn(batch, channels, size, size)
    formats = {"contiguous": _models(name, channels, size, False), "channels_last": _models(name, channels, size, True)}
    rounds, steps = (1, 1) if benchmark.disabled else (6, 3)
    times: dict[str, list[float]] = {key: [] for key in formats}
    losses = []
    if not benchmark.disabled:
        for key in formats:  # warm-up: oneDNN picks its kernels on the first calls
            losses.append(_step(formats[key], images))
    for round_index in range(rounds):
        order = list(formats) if round_index % 2 == 0 else list(reversed(formats))
        for key in order:
            started = time.perf_counter()
            for _ in range(steps):
                losses.append(_step(formats[key], images))
            times[key].append((time.perf_counter() - started) / steps)
    assert all(bool(torch.isfinite(loss)) for loss in losses)
    median = {key: statistics.median(values) for key, values in times.items()}
    ratio = median["contiguous"] / median["channels_last"]
    benchmark.extra_info.update(arch=name, image_size=size, batch=batch, threads=torch.get_num_threads(),
                                ms_per_step={key: round(value * 1000, 1) for key, value in median.items()},
                                speedup=round(ratio, 2))
    print(f"\n{name} {size}px batch {batch}, {torch.get_num_threads()} thread(s): contiguous "
          f"{median['contiguous'] * 1000:.1f} ms/step, channels-last {median['channels_last'] * 1000:.1f} ms/step "
          f"({ratio:.2f}x)")
    benchmark.pedantic(lambda: _step(formats["channels_last"], images), rounds=1, iterations=1)


DISTILL_CASES = {"lic": ("lic_plugin.compensation", ["iterations=3", "subset_size=40", "chunk=0"]),
                 "sre2l": ("baselines.sre2l", ["iterations=6"])}


@pytest.mark.parametrize("method", list(DISTILL_CASES))
def test_channels_last_observer_inputs_in_distillation(benchmark, monkeypatch, digits, observer, method):
    """LIC's compensation and SRe2L's recovery feed the observer channels-last inputs
    (``OBSERVER_MEMORY_FORMAT``): the same distillation (IPC 10 on the digits) timed with that
    constant set to each format in turn, alternating, and the images compared."""
    import importlib

    from ddbench.contracts import DistillTask
    from ddbench.host import registry
    from ddbench.settings.options import apply_overrides

    module_name, settings = DISTILL_CASES[method]
    module = importlib.import_module(module_name)
    model, arch = observer
    distiller = registry.get_distiller(method)
    options = apply_overrides(distiller.options_class(), settings, what=f"method {method!r}")
    task = DistillTask(dataset=digits, observer=model, observer_arch=arch, ipc=1 if benchmark.disabled else 10,
                       device=torch.device("cpu"), seed=0, options=options)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    times: dict[str, list[float]] = {key: [] for key in formats}
    images = {}
    for round_index in range(1 if benchmark.disabled else 4):
        for key in (list(formats) if round_index % 2 == 0 else list(reversed(formats))):
            monkeypatch.setattr(module, "OBSERVER_MEMORY_FORMAT", formats[key])
            started = time.perf_counter()
            images[key] = distiller.distill(task).images
            times[key].append(time.perf_counter() - started)
    torch.testing.assert_close(images["channels_last"], images["contiguous"], atol=1e-4, rtol=0)
    median = {key: statistics.median(values) for key, values in times.items()}
    ratio = median["contiguous"] / median["channels_last"]
    benchmark.extra_info.update(method=method, options=settings, seconds={k: round(v, 3) for k, v in median.items()},
                                speedup=round(ratio, 2))
    print(f"\n{method} ({', '.join(settings)}), {len(images['contiguous'])} images: contiguous {median['contiguous']:.2f} s, "
          f"channels-last {median['channels_last']:.2f} s ({ratio:.2f}x)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
