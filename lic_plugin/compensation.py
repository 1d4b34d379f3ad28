"""Stage 2 of LIC (Section 2.2, Algorithm 1): compensate the information lost by squeezing.

For squeezed images x* (Eq. 2) a compensation Delta-x, initialised at 0, is learned so that the
expanded images {x^_i} = F^-1(x* + Delta-x) (Eq. 5) carry the same effective information as the
originals {x_i} (Eqs. 6-7). With one observer phi and a transformation group G (here DSA) the
loss is Eq. 8:

    L = E_{x_i, x^_i} E_{g ~ G} || phi_l(g(x_i)) - phi_l(g(x^_i)) ||_2^2

where phi_l is the output of an intermediate layer l (Section 2.2, "Balancing the semantic and
textural information"; default: the last convolutional block). Each iteration draws ONE siamese
DSA transform g, applies it to both sides, and takes one optimiser step on Delta-x only: the
observer is frozen, its targets phi_l(g(x_i)) are computed without gradients, and gradients are
taken with ``torch.autograd.grad`` with respect to Delta-x alone, so no weight ever gets a grad.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
from torch import nn

from ddbench.api import (OBSERVER_MEMORY_FORMAT, ArchitectureSpec, DSA, cutmix_box, expand, layer_output_sizes, paste_box,
                         read_layers)
from lic_plugin.options import DSA_DRAWS, LOSSES, LR_SCHEDULES, TILE_MIXINGS  # the option values, named once

SGD_MOMENTUM = 0.0  # Algorithm 1 writes a plain gradient step


LAYER_SEPARATOR = "+"  # feature_layer=a+b aligns several layers at once


def split_layers(layer: str) -> list[str]:
    """The layers of a resolved ``feature_layer``: one name, or several joined by ``+``."""
    return layer.split(LAYER_SEPARATOR)


def deepest_layer(layer: str) -> str:
    """The last of a resolved ``feature_layer``'s layers in the forward pass: what the selection's
    clusters embed with and where the compensation's forward stops."""
    return split_layers(layer)[-1]


def resolve_feature_layer(arch: ArchitectureSpec, observer: nn.Module, name: str = "") -> str:
    """The observer layer Eq. 8 reads: ``name``, or the architecture's ``default_feature_layer``
    when ``name`` is empty. Any name in ``arch.feature_layers`` or ``observer.named_modules()`` is
    accepted; anything else raises ``ValueError`` listing ``arch.feature_layers``. Several layers
    joined by ``+`` are aligned together (see :func:`alignment_loss`); they come back in the order
    the forward pass runs them, each once."""
    listed = ", ".join(arch.feature_layers) or "(none listed)"
    chosen = name or arch.default_feature_layer
    if not chosen:
        raise ValueError(f"architecture {arch.name!r} names no default feature layer; set lic.feature_layer "
                         f"to one of: {listed}")
    order = [module_name for module_name, _ in observer.named_modules() if module_name]
    for part in split_layers(chosen):
        if part not in order:
            raise ValueError(f"lic feature_layer {part!r} is not a layer of the {arch.name!r} observer; "
                             f"valid feature layers: {listed} (or any named_modules() name; several joined by "
                             f"{LAYER_SEPARATOR!r})")
    return LAYER_SEPARATOR.join(sorted(set(split_layers(chosen)), key=order.index))


def feature_distance(features: torch.Tensor, target_features: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """Per-pair distance of flattened features ``[P, D]``, averaged over the P pairs.

    ``mse``: the paper's Eq. 8, ``|| a - b ||_2^2`` (summed over the features); ``l1``: the mean
    absolute difference (the authors' successor code, CIM's ``l1_mean``); ``cosine``: 1 - cos(a, b).
    """
    a, b = features.flatten(1), target_features.flatten(1)
    if loss == "mse":
        return (a - b).pow(2).sum(1).mean()
    if loss == "l1":
        return (a - b).abs().mean(1).mean()
    if loss == "cosine":
        return (1 - torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-8)).mean()
    raise ValueError(f"unknown lic loss {loss!r}; use one of {', '.join(LOSSES)}")


def alignment_loss(observer: nn.Module, layer: str, targets: torch.Tensor, expanded: torch.Tensor,
                   loss: str = "mse") -> torch.Tensor:
    """Eq. 8 for one draw g: the mean over the pairs of the distance (``loss``, see
    :func:`feature_distance`) between ``phi_l(targets_i)`` and ``phi_l(expanded_i)``.

    ``targets`` are the transformed originals g(x_i) and ``expanded`` the transformed expanded
    images g(x^_i), both ``[N * B, C, H, W]`` in the same order. The target features are computed
    without gradients; only ``expanded`` is differentiated through. The forward stops at ``layer``.
    The result is a float32 scalar (features are compared in float32 also under autocast).

    Several layers (``a+b``, from :func:`resolve_feature_layer`) are read in one forward pass and
    their distances summed, each ``mse`` distance scaled by the deepest layer's feature count over
    its own, so that every layer weighs the same per feature (``l1`` and ``cosine`` are per
    feature already); with one layer this is Eq. 8 as above.
    """
    layers = split_layers(layer)
    with torch.no_grad():
        target_features = read_layers(observer, layers, targets)
    features = read_layers(observer, layers, expanded)
    deepest_size = features[-1][0].numel()
    total = torch.zeros((), dtype=torch.float32, device=expanded.device)
    for ours, theirs in zip(features, target_features):
        weight = deepest_size / ours[0].numel() if loss == "mse" else 1.0
        total = total + weight * feature_distance(ours.float(), theirs.float(), loss)
    return total


def activation_bytes_per_image(observer: nn.Module, layer: str, image_shape: tuple[int, int, int], side: int,
                                device: torch.device) -> int:
    """An estimate of the memory one distilled image's compensation step holds: the outputs of
    every observer module up to ``layer`` for its N expanded tiles and its N originals (kept for
    the backward pass), doubled for the gradients flowing back; measured with one probe forward."""
    sizes = layer_output_sizes(observer, torch.zeros(side * side, *image_shape, device=device),
                               stop_at=deepest_layer(layer))
    return 4 * sum(sizes) + 8 * side * side * int(torch.tensor(image_shape).prod()) * 4


def available_bytes(device: torch.device) -> int:
    """Free memory where the compensation runs: the GPU's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


CPU_CHUNK_BYTES = 256 * 2**20  # on the CPU larger chunks buy no speed, only memory
# On a GPU: the paper's Table 3 has LIC at half SRe2L's memory. SRe2L holds one batch of 100
# images' activations; LIC's unchunked step holds N x 100 tiles twice over, so the whole batch at
# once would cost several times SRe2L. 512 MiB keeps a few images (4 at 64 px on Conv-4) per
# chunk, tens of tiles per forward pass.
GPU_CHUNK_BYTES = 512 * 2**20


def activation_budget(device: torch.device) -> int:
    """Bytes of activations LIC allows itself: on CUDA the smaller of half the free memory and
    ``GPU_CHUNK_BYTES``; on the CPU the smaller of a quarter of the available RAM and ``CPU_CHUNK_BYTES``."""
    if device.type == "cuda":
        return min(available_bytes(device) // 2, GPU_CHUNK_BYTES)
    return min(available_bytes(device) // 4, CPU_CHUNK_BYTES)


def automatic_chunk(observer: nn.Module, layer: str, image_shape: tuple[int, int, int], side: int,
                    device: torch.device, count: int) -> int:
    """Distilled images per chunk: as many as fit in :func:`activation_budget` (at least one)."""
    per_image = max(1, activation_bytes_per_image(observer, layer, image_shape, side, device))
    budget = activation_budget(device)
    return max(1, min(count, budget // per_image))


def scoring_batch(observer: nn.Module, image_shape: tuple[int, int, int], device: torch.device) -> int:
    """Images per scoring forward (no gradients): a batch's largest layer input and output within
    the same budget as :func:`automatic_chunk`, at most ``SCORE_BATCH``."""
    from lic_plugin.selection import SCORE_BATCH

    sizes = layer_output_sizes(observer, torch.zeros(1, *image_shape, device=device))
    per_image = max(1, 2 * max(sizes, default=1))
    budget = activation_budget(device)
    return max(1, min(SCORE_BATCH, budget // per_image))


def draw_tile_cutmix(side: int, height: int, width: int, generator: torch.Generator) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """One cutmix draw among the ``side * side`` tiles of a distilled image, on the CPU
    ``generator``: each tile's partner (a permutation of the tiles) and the pasted box
    (:func:`ddbench.api.cutmix_box`), whose area share is uniform (Beta(1, 1), as the relabel
    evaluator's cutmix draws it)."""
    partner = torch.randperm(side * side, generator=generator)
    share = float(torch.rand((), generator=generator))
    return partner, cutmix_box(height, width, share, generator)


def tile_sources(partner: torch.Tensor, count: int, tiles: int) -> torch.Tensor:
    """For ``count * tiles`` views (each image's tiles in a row), the view each one takes its
    cutmix box from (:func:`ddbench.api.paste_box`'s ``source``): its partner tile of the same
    image, so images never mix with one another and a chunk's loss still depends on its own
    images only. The first ``k * tiles`` entries are the sources of the first ``k`` images."""
    return (torch.arange(count).view(-1, 1) * tiles + partner.view(1, -1)).flatten()


def make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":  # the successor code's choice; no weight decay on Delta-x, as there
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    raise ValueError(f"unknown optimizer {name!r}; use adam, adamw or sgd")


def make_schedule(name: str, optimizer: torch.optim.Optimizer, iterations: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The lr over the M steps: ``constant``, or ``cosine`` from ``lr`` to 0 at step M (SRe2L's
    recover schedule for its pixels)."""
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, iterations))
    raise ValueError(f"unknown lic lr_schedule {name!r}; use one of {', '.join(LR_SCHEDULES)}")


def compensate(
    observer: nn.Module,
    layer: str,
    originals: torch.Tensor,
    squeezed: torch.Tensor,
    side: int,
    dsa: DSA,
    generator: torch.Generator,
    *,
    iterations: int,
    optimizer: str = "adam",
    lr: float = 0.1,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    amp: bool = False,
    chunk: int = 0,
    loss: str = "mse",
    dsa_draw: str = "batch",
    tile_mixing: str = "none",
    lr_schedule: str = "constant",
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn Delta-x for a batch of B squeezed images (Algorithm 1, Stage 2); returns
    ``(x* + Delta-x, trace)`` where ``trace[m]`` is the Eq. 8 loss at iteration m (before its step),
    a device tensor: nothing in the loop waits for the device.

    ``originals``: ``[B * N, C, H, W]``, the N sources of each squeezed image in row-major tile
    order. The optimised objective is the SUM over the B images of each one's Eq. 8 loss (the
    paper distills one image at a time), so gradients do not shrink with the batch; ``trace``
    holds the mean. ``bounds``: ``(low, high)`` broadcastable tensors; after every step
    x* + Delta-x is clamped into them. ``amp``: bfloat16 autocast for the forward passes (CUDA).
    DSA parameters are drawn on the CPU ``generator`` once per iteration: ``dsa_draw="batch"``, one
    transform shared by every pair (and by both sides of each); ``"pair"``, each (original, expanded
    tile) pair its own transform, still shared by its two sides (a finer estimate of the
    expectation over G in Eq. 8 from the same forward passes). ``tile_mixing="cutmix"``: after
    the DSA transform, each view gets a box from its :func:`tile_sources` tile
    (:func:`ddbench.api.paste_box`), with one :func:`draw_tile_cutmix` per iteration, the
    same on both sides. ``lr_schedule``: the optimiser's lr over the ``iterations`` steps
    (:func:`make_schedule`: constant, or a cosine down to 0).

    ``chunk``: distilled images whose gradients are computed together (0: all B at once). Each
    image's loss depends on its own tiles only (one shared DSA draw; the observer is frozen, in
    eval mode), so the gradient of the summed objective is the concatenation of the chunks'
    gradients: the same images within float tolerance, with activation memory bounded by the chunk.
    """
    if dsa_draw not in DSA_DRAWS:
        raise ValueError(f"unknown lic dsa_draw {dsa_draw!r}; use one of {', '.join(DSA_DRAWS)}")
    if tile_mixing not in TILE_MIXINGS:
        raise ValueError(f"unknown lic tile_mixing {tile_mixing!r}; use one of {', '.join(TILE_MIXINGS)}")
    squeezed = squeezed.detach()
    originals = originals.detach()
    count = squeezed.shape[0]
    if originals.shape[0] != count * side * side:
        raise ValueError(f"{count} squeezed images of {side * side} tiles need {count * side * side} originals, "
                         f"got {originals.shape[0]}")
    delta = torch.zeros_like(squeezed, requires_grad=True)
    step = make_optimizer(optimizer, [delta], lr)
    schedule = make_schedule(lr_schedule, step, iterations)
    trace = torch.zeros(iterations, dtype=torch.float32, device=squeezed.device)
    device_type = squeezed.device.type
    chunk = count if chunk <= 0 else min(chunk, count)
    tiles = side * side
    for it in range(iterations):
        params = dsa.draw(originals.shape, generator, siamese=dsa_draw == "batch", device=squeezed.device)
        sources = box = None
        if tile_mixing == "cutmix":  # one draw per iteration; its sources go to the device once, sliced per chunk
            partner, box = draw_tile_cutmix(side, *originals.shape[-2:], generator)
            sources = tile_sources(partner, chunk, tiles).to(squeezed.device)
        gradient = torch.empty_like(squeezed)
        total = torch.zeros((), dtype=torch.float32, device=squeezed.device)
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            part = delta.detach()[start:stop].requires_grad_(True)
            pairs = params.select(start * tiles, stop * tiles)  # a shared draw: itself
            chunk_sources = None if sources is None else sources[:(stop - start) * tiles]
            autocast = torch.autocast(device_type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
            with autocast:
                with torch.no_grad():
                    targets = dsa.apply(originals[start * tiles:stop * tiles], pairs)
                    if chunk_sources is not None:
                        targets = paste_box(targets, chunk_sources, box)
                    targets = targets.contiguous(memory_format=OBSERVER_MEMORY_FORMAT)
                expanded = dsa.apply(expand(squeezed[start:stop] + part, side), pairs)
                if chunk_sources is not None:
                    expanded = paste_box(expanded, chunk_sources, box)
                expanded = expanded.contiguous(memory_format=OBSERVER_MEMORY_FORMAT)
                part_loss = alignment_loss(observer, layer, targets, expanded, loss)
            (gradient[start:stop],) = torch.autograd.grad(part_loss * (stop - start), [part])
            total = total + part_loss.detach() * (stop - start)
        delta.grad = gradient
        step.step()
        schedule.step()
        if bounds is not None:
            with torch.no_grad():
                delta.copy_(torch.clamp(squeezed + delta, min=bounds[0], max=bounds[1]) - squeezed)
        trace[it] = total / count
        progress(1)
    result = (squeezed + delta).detach()
    if bounds is not None:  # x* + (clamp(x* + d) - x*) can round one ulp outside the range
        result = torch.clamp(result, min=bounds[0], max=bounds[1])
    return result, trace
