"""DM's augmentation: one DSA call per class against one per group of classes that drew the same family.

Each DM iteration draws one shared DSA transform per class and applies it to the class's real
and synthetic images. ``DSA.apply_each`` applies the draws of all classes that drew the same
family in one call per op, each sample with its class's parameters, instead of one call per class:
on CUDA an op call on a few hundred small images is mostly launch overhead, so fewer calls is the
point; on the CPU the work is the same either way. The benchmark runs both on the device at hand
(CUDA when torch sees one) for DM's iteration (10 classes, real and synthetic), checks that they
give the same images bit for bit, prints both times, and fails if ``apply_each`` is the slower by
more than ``MAX_RATIO``.
"""

from __future__ import annotations

import torch

BATCH_REAL = 64  # real images per class (DM's paper: 256; smaller keeps the CPU smoke test short)
IPC = 10
MAX_RATIO = 1.25  # on the CPU the two take the same time (noise decides); on CUDA apply_each makes fewer launches


def test_dsa_apply_each_against_a_call_per_class(benchmark, stopwatch, time_against, digits):
    from ddbench.augment import DSA

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dsa = DSA()  # DM's strategy, one family per draw
    labels = digits.train.labels
    real = [digits.train.load(torch.nonzero(labels == c).flatten()[:BATCH_REAL]).to(device)
            for c in range(digits.num_classes)]
    synthetic = [block[:IPC].clone() for block in real]
    shape = (1, digits.channels, digits.image_size, digits.image_size)
    generator = torch.Generator().manual_seed(0)
    draws = [[dsa.draw(shape, generator, siamese=True, device=device) for _ in real] for _ in range(8)]

    def per_class():
        out = [[dsa.apply(block, params) for block, params in zip(blocks, draw)]
               for draw in draws for blocks in (real, synthetic)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    def grouped():
        out = [dsa.apply_each(blocks, draw) for draw in draws for blocks in (real, synthetic)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    timed = {"a call per class": stopwatch(per_class), "apply_each": stopwatch(grouped)}
    results = {name: run() for name, run in timed.items()}  # warm-ups
    for a, b in zip(*results.values()):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    for run in timed.values():
        run.seconds.clear()
    time_against(timed, "apply_each")
    ratio = timed["apply_each"].best / timed["a call per class"].best
    benchmark.extra_info.update(device=device.type, ratio_to_per_class=round(ratio, 3), classes=len(real),
                                batch_real=BATCH_REAL, ipc=IPC, image_size=digits.image_size, draws=len(draws),
                                **{name: round(run.best, 4) for name, run in timed.items()})
    print(f"\nDSA for {len(draws)} DM iterations on {device.type}, {len(real)} classes x ({BATCH_REAL} real + {IPC} "
          f"synthetic) at {digits.image_size} px: " + ", ".join(f"{name} {run.best:.4f} s" for name, run in timed.items())
          + f"; apply_each takes {ratio:.2f}x a call per class")
    assert ratio < MAX_RATIO, f"apply_each took {ratio:.2f}x a call per class on {device.type} (limit {MAX_RATIO}x)"
