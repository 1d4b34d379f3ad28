"""LIC's compensation loop against the bare cost of the observer passes it needs.

Per iteration, Stage 2 (Eq. 8) needs a forward of the N x B (transformed) originals without
gradients and a forward plus an input-backward of the N x B expanded images, stopping at the
feature layer. Everything else in the loop (the DSA draw and its application to both sides,
expanding the tiles, the optimiser step, the clamp, the loss trace) is overhead. The benchmark
times ``compensate`` for K iterations and K bare pass pairs with the same shapes, observer and
layer, and prints the ratio: 1.0 would be a loop that costs nothing beyond the passes.
"""

from __future__ import annotations

import math

import torch

SQUEEZED = 10  # B distilled images
N = 4  # images squeezed into each: 2 x 2 tiles
ITERATIONS = 3  # K
MAX_RATIO = 3.0  # generous: the loop must not cost more than 3x its passes


def _setup(digits, observer):
    from ddbench.tiles import expand, squeeze

    model, arch = observer
    side = math.isqrt(N)
    originals = digits.train.load(torch.arange(SQUEEZED * N))
    squeezed = squeeze(originals, side)
    low, high = digits.normalization.pixel_bounds()
    bounds = tuple(torch.tensor(b, dtype=torch.float32).view(1, -1, 1, 1) for b in (low, high))
    return model, arch.default_feature_layer, originals, squeezed, expand(squeezed, side), side, bounds


def test_compensation_loop_overhead(benchmark, rounds, stopwatch, digits, observer):
    from ddbench.augment.dsa import DEFAULT_STRATEGY, DSA
    from ddbench.models.features import read_features
    from lic_plugin.compensation import compensate

    model, layer, originals, squeezed, expanded, side, bounds = _setup(digits, observer)

    def loop():
        generator = torch.Generator().manual_seed(0)
        return compensate(model, layer, originals, squeezed, side, DSA(DEFAULT_STRATEGY), generator,
                          iterations=ITERATIONS, bounds=bounds)

    def bare_passes():
        for _ in range(ITERATIONS):
            with torch.no_grad():
                targets = read_features(model, layer, originals, stop_early=True).float()
            inputs = expanded.detach().requires_grad_(True)
            features = read_features(model, layer, inputs, stop_early=True).float()
            (grad,) = torch.autograd.grad((features - targets).pow(2).sum(), [inputs])
        return grad

    timed_loop, timed_bare = stopwatch(loop), stopwatch(bare_passes)
    timed_bare()  # warm-up of the passes (the loop is warmed up by pedantic, or here when disabled)
    if benchmark.disabled:  # untimed (CI): a warm-up, then the best of three, so one stall cannot decide the ratio
        timed_loop()
        timed_loop.seconds.clear()
        for _ in range(2):
            timed_loop()
    result, trace = benchmark.pedantic(timed_loop, **rounds)
    for _ in range(len(timed_loop.seconds)):
        timed_bare()
    # The same number of bare measurements as loop measurements after the warm-ups.
    bare = min(timed_bare.seconds[1:])
    ratio = timed_loop.best / bare
    benchmark.extra_info.update(loop_seconds=round(timed_loop.best, 4), bare_seconds=round(bare, 4),
                                overhead_ratio=round(ratio, 3), iterations=ITERATIONS, images=SQUEEZED * N, layer=layer)
    print(f"\nLIC compensation, {ITERATIONS} iterations of {SQUEEZED} images x N={N} at layer {layer}: "
          f"loop {timed_loop.best:.3f} s, bare observer passes {bare:.3f} s, overhead ratio {ratio:.2f}x")
    assert torch.isfinite(result).all() and len(trace) == ITERATIONS
    assert math.isfinite(ratio) and ratio > 0
    assert ratio < MAX_RATIO, f"the compensation loop costs {ratio:.2f}x its observer passes (limit {MAX_RATIO}x)"
