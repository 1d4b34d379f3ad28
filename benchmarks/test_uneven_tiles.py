"""The evaluator's tiles on an uneven grid against an even one.

N = 9 at 32 px cuts each side at 10, 11 and 11 px, so a batch of tiles cannot be cut as one
tensor and resized once, as on an even grid (30 px: 10 px cells). The region sampler then
expands each sample's tile by two batched products with its own row and column weights
(``ddbench.evaluators.regions._expanded_by_weights``). The benchmark times one training batch of
expanded tiles both ways on the device at hand (CUDA when torch sees one), prints both, and fails
if the uneven grid costs more than ``MAX_RATIO`` times the even one per batch. Either way the
batch is a small part of a training step: a forward and backward of the verifier on it.
"""

from __future__ import annotations

import torch

BATCH = 256  # the relabel evaluator's batch
SIDE = 3  # N = 9
EVEN, UNEVEN = 30, 32  # px: 3 divides 30, not 32
MAX_RATIO = 6.0  # measured 1.4-1.9x on one CPU thread: a guard against a per-sample loop, not a target


def test_uneven_tiles_against_even_tiles(benchmark, stopwatch, time_against):
    from ddbench.contracts import DistilledSet
    from ddbench.evaluators.regions import RegionSampler

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)

    def batch_of_tiles(size: int):
        distilled = DistilledSet(images=torch.rand(100, 3, size, size, generator=generator),
                                 labels=torch.arange(10).repeat_interleave(10), method="t", tile_grid=SIDE)
        sampler = RegionSampler(distilled, "tiles", device)
        indices = torch.randint(sampler.num_samples, (BATCH,), generator=generator).to(sampler.index_device)

        def gather():
            batch = sampler.gather(indices)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return batch

        return gather

    sizes = {"even": EVEN, "uneven": UNEVEN}
    timed = {name: stopwatch(batch_of_tiles(size)) for name, size in sizes.items()}
    for name, run in timed.items():  # warm-ups
        assert run().shape == (BATCH, 3, sizes[name], sizes[name])
        run.seconds.clear()
    time_against(timed, "uneven", untimed_rounds=5)
    ratio = timed["uneven"].best / timed["even"].best
    benchmark.extra_info.update(device=device.type, ratio_to_even=round(ratio, 3), batch=BATCH, side=SIDE,
                                **{name: round(run.best, 5) for name, run in timed.items()})
    print(f"\n{BATCH} expanded tiles of a {SIDE}x{SIDE} grid on {device.type}: even ({EVEN} px) "
          f"{timed['even'].best * 1e3:.2f} ms, uneven ({UNEVEN} px) {timed['uneven'].best * 1e3:.2f} ms; "
          f"{ratio:.2f}x")
    assert ratio < MAX_RATIO, f"uneven tiles took {ratio:.2f}x even ones on {device.type} (limit {MAX_RATIO}x)"
