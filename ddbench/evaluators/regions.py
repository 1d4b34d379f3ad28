"""Training regions of a distilled set, respecting the tile layout of squeezed images.

- ``whole``: the distilled images themselves.
- ``tiles``: every tile expanded back to full size (the paper's expand operator) is its own sample.
- ``tile-crops``: the tiles at their squeezed size; the evaluator crops and resizes them to full size.
- ``auto``: ``tiles`` for squeezed sets (``tile_grid > 1``), ``whole`` otherwise.
"""

from __future__ import annotations

import torch

from ddbench.contracts import DistilledSet
from ddbench.tiles import cut_tiles, expand

REGION_MODES = ("auto", "whole", "tiles", "tile-crops")


def check_region_mode(mode: str) -> None:
    if mode not in REGION_MODES:
        raise ValueError(f"region_sampling={mode!r}: use one of {', '.join(REGION_MODES)}")


def resolve_region_mode(mode: str, tile_grid: int) -> str:
    if tile_grid == 1:
        return "whole"
    return "tiles" if mode == "auto" else mode


def training_regions(distilled: DistilledSet, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples the verifier draws batches from, and the class of each."""
    side = distilled.tile_grid
    if mode == "whole":
        return distilled.images, distilled.labels
    labels = distilled.labels.repeat_interleave(side * side)
    if mode == "tiles":
        return expand(distilled.images, side), labels
    return cut_tiles(distilled.images, side), labels


def region_augmentation(spec: str, mode: str) -> str:
    """Tile crops must be cropped and resized back to full size: make sure ``crop`` is in the spec."""
    from ddbench.evaluators.augment import parse_augmentation

    parts = parse_augmentation(spec)
    if mode == "tile-crops" and "crop" not in parts:
        parts = ["crop", *parts]
    return "+".join(parts) or "none"
