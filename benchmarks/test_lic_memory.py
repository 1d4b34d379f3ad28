"""LIC's distillation memory stays flat as the distilled set grows 10x: compensation works in
batches of ``lic.batch_size`` images and computes gradients in chunks (``lic.chunk``, automatic:
at most 256 MiB of activations on the CPU), so peak memory is bounded by the chunk.

Each IPC runs in its own process, all three side by side, on synthetic 64 px colour data (10 classes), a convnet3-bn
observer, 1 compensation iteration; the figure is the distillation's peak memory above what the
process held when it started (peak RSS on the CPU, ``max_memory_allocated`` on CUDA), as
``ddbench run`` measures it. Unchunked (``lic.chunk`` = the batch) is printed for reference.

    python -m pytest benchmarks/test_lic_memory.py -s
"""

from __future__ import annotations

import json
import os
import sys

SIZE, CLASSES, PER_CLASS = 64, 10, 120


def worker(ipc: int, chunk: int) -> dict:
    import torch

    from ddbench.contracts import DistillTask, Normalization
    from ddbench.data.base import Dataset, TensorSource
    from ddbench.runtime.measure import current_memory_bytes, measure_stage, resolve_device
    from ddbench.host.registry import get_architecture, get_distiller
    from lic_plugin.options import LICOptions

    device = resolve_device("auto")
    norm = Normalization((0.5,) * 3, (0.25,) * 3)
    generator = torch.Generator().manual_seed(0)
    source = TensorSource(torch.randint(0, 256, (CLASSES * PER_CLASS, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator),
                          torch.arange(CLASSES).repeat_interleave(PER_CLASS), norm, SIZE)
    dataset = Dataset("synthetic", source, source, tuple(map(str, range(CLASSES))), 3, SIZE, norm)
    arch = get_architecture("convnet3-bn")
    torch.manual_seed(0)
    observer = arch.build(3, CLASSES, SIZE).to(device).eval()
    for parameter in observer.parameters():
        parameter.requires_grad_(False)
    options = LICOptions(n=4, iterations=1, subset_size=40, chunk=chunk)  # the paper's N (unset, 64 px takes N = 1)
    task = DistillTask(dataset, observer, arch, ipc=ipc, device=device, seed=0, options=options)
    before = current_memory_bytes(device)
    with measure_stage(device) as measure:
        distilled = get_distiller("lic").distill(task)
    return {"ipc": ipc, "images": len(distilled.images), "chunk": chunk, "peak_above_start": measure.peak_memory_bytes - before,
            "kind": measure.memory_kind, "seconds": measure.seconds,
            "chunks_used": sorted({t["chunk"] for t in distilled.extras.get("loss_trace", []) if "chunk" in t})}


def test_lic_memory_is_flat_in_the_number_of_distilled_images(benchmark, in_processes):
    small, large, unchunked = in_processes(__file__, [["1", "0"], ["10", "0"], ["10", "100"]], timeout=1800)
    mib = 2 ** 20
    for row in (small, large, unchunked):
        print(f"\nIPC {row['ipc']} ({row['images']} images, chunk {row['chunk'] or 'automatic'} -> {row['chunks_used']}): "
              f"peak {row['peak_above_start'] / mib:.0f} MiB above the start ({row['kind']}), {row['seconds']:.1f} s")
    benchmark.extra_info.update(small=small, large=large, unchunked=unchunked)
    growth = large["peak_above_start"] - small["peak_above_start"]
    print(f"growth from IPC 1 to IPC 10: {growth / mib:.0f} MiB; unchunked IPC 10 holds "
          f"{(unchunked['peak_above_start'] - large['peak_above_start']) / mib:.0f} MiB more")
    assert growth < (unchunked["peak_above_start"] - small["peak_above_start"]) / 4
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


if __name__ == "__main__":
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    print(json.dumps(worker(int(sys.argv[1]), int(sys.argv[2]))))
