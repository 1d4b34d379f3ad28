"""Evaluation memory stays flat as a squeezed set grows: the relabel evaluator expands tiles
batch by batch (``ddbench.evaluators.regions.RegionSampler``), never the whole set up front.

Each size runs in its own process, both side by side (64 px colour images, 4 tiles each, a one-block ConvNet, relabel at
batch 64 for 1000 samples, online teacher): the figure is the evaluation's peak memory above what the process
held when the evaluation started (the set itself included), measured as in ``ddbench run``
(peak RSS on the CPU, ``max_memory_allocated`` on CUDA). Expanding every tile up front, as
the evaluator did before, would add 4 x the set's size: printed beside it for reference.

    python -m pytest benchmarks/test_eval_memory.py -s
"""

from __future__ import annotations

import json
import os
import sys

SIZE, CHANNELS, CLASSES, SIDE = 64, 3, 10, 2


def worker(num_images: int) -> dict:
    import torch

    from ddbench.settings.budget import resolve_budget
    from ddbench.contracts import DistilledSet, EvalContext, Normalization
    from ddbench.data.base import Dataset, TensorSource
    from ddbench.evaluators.relabel import RelabelEvaluator, RelabelOptions
    from ddbench.runtime.measure import current_memory_bytes, measure_stage, resolve_device
    from ddbench.host.registry import get_architecture

    device = resolve_device("auto")
    norm = Normalization((0.5,) * CHANNELS, (0.25,) * CHANNELS)
    test = TensorSource(torch.randint(0, 256, (50, CHANNELS, SIZE, SIZE), dtype=torch.uint8),
                        torch.arange(CLASSES).repeat(5), norm, SIZE)
    dataset = Dataset("synthetic", test, test, tuple(map(str, range(CLASSES))), CHANNELS, SIZE, norm)
    generator = torch.Generator().manual_seed(0)
    distilled = DistilledSet(images=torch.randn(num_images, CHANNELS, SIZE, SIZE, generator=generator),
                             labels=torch.arange(CLASSES).repeat_interleave(num_images // CLASSES), method="m",
                             tile_grid=SIDE)
    arch = get_architecture("convnet1")
    torch.manual_seed(0)
    teacher = arch.build(CHANNELS, CLASSES, SIZE).to(device).eval()
    # about the same number of steps for every size (at least 500 samples at batch 64): only the set's size differs
    budget = resolve_budget("quick", [f"epochs={max(1, 500 // num_images)}", "batch_size=64", "augmentation=crop+flip"])
    context = EvalContext(dataset=dataset, verifier_arch=arch, teacher=teacher, budget=budget, seed=0, device=device,
                          options=RelabelOptions(region_sampling="tiles"))
    before = current_memory_bytes(device)
    with measure_stage(device) as measure:
        RelabelEvaluator().evaluate(distilled, context)
    set_bytes = distilled.images.numel() * 4
    return {"images": num_images, "peak_above_start": measure.peak_memory_bytes - before, "kind": measure.memory_kind,
            "set_bytes": set_bytes, "up_front_expansion_bytes": set_bytes * SIDE * SIDE, "seconds": measure.seconds}


def test_evaluation_memory_is_flat_in_the_number_of_squeezed_images(benchmark, in_processes):
    small, large = in_processes(__file__, [["100"], ["1000"]], timeout=900)
    mib = 2 ** 20
    for row in (small, large):
        print(f"\n{row['images']} squeezed images (64 px, 4 tiles): evaluation peak {row['peak_above_start'] / mib:.1f} MiB "
              f"above its start ({row['kind']}); set {row['set_bytes'] / mib:.1f} MiB; expanding it up front would "
              f"have added {row['up_front_expansion_bytes'] / mib:.1f} MiB; {row['seconds']:.1f} s")
    benchmark.extra_info.update(small=small, large=large)
    growth = large["peak_above_start"] - small["peak_above_start"]
    up_front_growth = large["up_front_expansion_bytes"] - small["up_front_expansion_bytes"]
    print(f"growth from 100 to 1000 images: {growth / mib:.1f} MiB (up-front expansion: {up_front_growth / mib:.1f} MiB)")
    assert growth < up_front_growth / 4  # bounded by the batch, not by the set
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


if __name__ == "__main__":
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    print(json.dumps(worker(int(sys.argv[1]))))
