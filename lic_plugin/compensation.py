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

from ddbench.augment.dsa import DSA
from ddbench.contracts import ArchitectureSpec
from ddbench.models.features import read_features
from ddbench.tiles import expand

SGD_MOMENTUM = 0.0  # Algorithm 1 writes a plain gradient step


def resolve_feature_layer(arch: ArchitectureSpec, observer: nn.Module, name: str = "") -> str:
    """The observer layer Eq. 8 reads: ``name``, or the architecture's ``default_feature_layer``
    when ``name`` is empty. Any name in ``arch.feature_layers`` or ``observer.named_modules()`` is
    accepted; anything else raises ``ValueError`` listing ``arch.feature_layers``."""
    listed = ", ".join(arch.feature_layers) or "(none listed)"
    chosen = name or arch.default_feature_layer
    if not chosen:
        raise ValueError(f"architecture {arch.name!r} names no default feature layer; set lic.feature_layer "
                         f"to one of: {listed}")
    modules = {module_name for module_name, _ in observer.named_modules() if module_name}
    if chosen not in modules:
        raise ValueError(f"lic feature_layer {chosen!r} is not a layer of the {arch.name!r} observer; "
                         f"valid feature layers: {listed} (or any named_modules() name)")
    return chosen


def alignment_loss(observer: nn.Module, layer: str, targets: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
    """Eq. 8 for one draw g: mean over the images of ``|| phi_l(targets_i) - phi_l(expanded_i) ||_2^2``.

    ``targets`` are the transformed originals g(x_i) and ``expanded`` the transformed expanded
    images g(x^_i), both ``[N * B, C, H, W]`` in the same order. The target features are computed
    without gradients; only ``expanded`` is differentiated through. The forward stops at ``layer``.
    The result is a float32 scalar (features are compared in float32 also under autocast).
    """
    with torch.no_grad():
        target_features = read_features(observer, layer, targets, stop_early=True).float()
    features = read_features(observer, layer, expanded, stop_early=True).float()
    return (features - target_features).flatten(1).pow(2).sum(1).mean()


def make_optimizer(name: str, params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    raise ValueError(f"unknown optimizer {name!r}; use adam or sgd")


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
    DSA parameters are drawn on the CPU ``generator``, one siamese draw per iteration.
    """
    squeezed = squeezed.detach()
    originals = originals.detach()
    count = squeezed.shape[0]
    if originals.shape[0] != count * side * side:
        raise ValueError(f"{count} squeezed images of {side * side} tiles need {count * side * side} originals, "
                         f"got {originals.shape[0]}")
    delta = torch.zeros_like(squeezed, requires_grad=True)
    step = make_optimizer(optimizer, [delta], lr)
    trace = torch.zeros(iterations, dtype=torch.float32, device=squeezed.device)
    device_type = squeezed.device.type
    for it in range(iterations):
        params = dsa.draw(originals.shape, generator, siamese=True, device=squeezed.device)
        autocast = torch.autocast(device_type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with autocast:
            with torch.no_grad():
                targets = dsa.apply(originals, params)
            expanded = dsa.apply(expand(squeezed + delta, side), params)
            loss = alignment_loss(observer, layer, targets, expanded)
        (delta.grad,) = torch.autograd.grad(loss * count, [delta])
        step.step()
        if bounds is not None:
            with torch.no_grad():
                delta.copy_(torch.clamp(squeezed + delta, min=bounds[0], max=bounds[1]) - squeezed)
        trace[it] = loss.detach()
        progress(1)
    result = (squeezed + delta).detach()
    if bounds is not None:  # x* + (clamp(x* + d) - x*) can round one ulp outside the range
        result = torch.clamp(result, min=bounds[0], max=bounds[1])
    return result, trace
