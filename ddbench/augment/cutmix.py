"""Cutmix's box (Yun et al., 2019): the relabel evaluator's mixing and LIC's ``tile_mixing=cutmix``
draw and paste it the same way."""

from __future__ import annotations

import torch


def cutmix_box(height: int, width: int, share: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """The box pasted from another view, ``(top, bottom, left, right)``: its sides ``sqrt(share)``
    of the image's, its centre uniform (drawn on the CPU, from ``generator`` or the global RNG:
    no host sync), cut at the image border."""
    cut_h, cut_w = int(height * share ** 0.5), int(width * share ** 0.5)
    cy = int(torch.randint(height, (), generator=generator))
    cx = int(torch.randint(width, (), generator=generator))
    return max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)


def paste_box(views: torch.Tensor, source: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """``views`` ``[B, C, H, W]`` with ``box`` of view ``i`` replaced by the same box of view
    ``source[i]`` (a copy; differentiable)."""
    top, bottom, left, right = box
    mixed = views.clone()
    mixed[..., top:bottom, left:right] = views[..., top:bottom, left:right][source]
    return mixed
