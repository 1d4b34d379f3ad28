"""Distillation throughput per method: distilled images per second at a fixed, small number of
iterations, on the embedded digits (16 px, 10 classes) with the shared small observer.

Each method distills IPC 1 (10 images) with its options fixed below, so the figures compare
methods at equal work per image only where the settings say so: LIC runs 3 compensation
iterations after scoring a 20-image subset per class, SRe2L 3 recover iterations; the squeeze
and random baselines have no iterations. The images/second figure is printed and stored in the
benchmark's ``extra_info``.
"""

from __future__ import annotations

import pytest
import torch

IPC = 1
SETTINGS = {
    "lic": ["iterations=3", "subset_size=20"],
    "sre2l": ["iterations=3"],
    "squeeze": [],
    "random": [],
}


@pytest.mark.parametrize("method", list(SETTINGS))
def test_distillation_throughput(benchmark, rounds, stopwatch, digits, observer, method):
    from ddbench.host import registry
    from ddbench.contracts import DistillTask
    from ddbench.settings.options import apply_overrides

    model, arch = observer
    distiller = registry.get_distiller(method)
    options = apply_overrides(distiller.options_class(), SETTINGS[method], what=f"method {method!r}")
    task = DistillTask(dataset=digits, observer=model, observer_arch=arch, ipc=IPC, device=torch.device("cpu"),
                       seed=0, options=options)
    distill = stopwatch(distiller.distill)
    distilled = benchmark.pedantic(distill, args=(task,), **rounds)

    images = len(distilled.images)
    assert images == IPC * digits.num_classes
    assert bool(torch.isfinite(distilled.images).all())
    per_second = images / distill.best
    benchmark.extra_info.update(method=method, images=images, options=SETTINGS[method], images_per_second=round(per_second, 2))
    print(f"\n{method}: {images} images in {distill.best:.3f} s = {per_second:.1f} images/s ({', '.join(SETTINGS[method]) or 'no options'})")
    assert per_second > 0
