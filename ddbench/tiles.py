"""Squeeze and expand (the paper's Definition 1): N = g*g images, each resized to
(H/g, W/g), tiled row-major into one H x W image; expand cuts the tiles out and resizes each
back to H x W. Both are batched and differentiable."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHRINK_MODES = ("bilinear", "nearest")  # bilinear: antialiased (the default); nearest: every side-th pixel


def grid_side(n: int) -> int:
    """The side g of a g x g grid of ``n`` tiles; ``n`` must be a perfect square."""
    side = math.isqrt(n)
    if n < 1 or side * side != n:
        raise ValueError(f"N = {n} images per distilled image must be a perfect square (1, 4, 9, 16, ...)")
    return side


def check_tiles_fit(n: int, height: int, width: int) -> int:
    """The grid side for ``n`` tiles, checking the tiles divide the image size."""
    side = grid_side(n)
    if height % side or width % side:
        raise ValueError(f"N = {n} tiles of a {height}x{width} image need the image size divisible by {side}; "
                         f"pick N whose square root divides {height} and {width}, or --image-size accordingly")
    return side


def squeeze(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """[B * side², C, H, W] -> [B, C, H, W]: groups of side² consecutive images, row-major tiles,
    each shrunk by ``mode`` (:data:`SHRINK_MODES`)."""
    check_shrink_mode(mode)
    total, channels, height, width = images.shape
    if total % (side * side):
        raise ValueError(f"{total} images cannot be grouped in tiles of {side * side}")
    if side == 1:
        return images
    small = shrink(images, side, mode)
    batch = total // (side * side)
    tiles = small.view(batch, side, side, channels, height // side, width // side)
    # [B, row, col, C, h, w] -> [B, C, row, h, col, w] -> [B, C, H, W]
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def cut_tiles(images: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * side², C, H/side, W/side], row-major, without resizing."""
    batch, channels, height, width = images.shape
    tiles = images.view(batch, channels, side, height // side, side, width // side)
    return tiles.permute(0, 2, 4, 1, 3, 5).reshape(batch * side * side, channels, height // side, width // side)


def expand(images: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * side², C, H, W]: each tile resized back to full size (bilinear)."""
    if side == 1:
        return images
    return enlarge(cut_tiles(images, side), *images.shape[-2:])


def check_shrink_mode(mode: str) -> None:
    """Raise ``ValueError`` naming :data:`SHRINK_MODES` for any other ``mode``, whatever the tile
    side (with one tile a side nothing is shrunk, but a misspelt mode is still an error)."""
    if mode not in SHRINK_MODES:
        raise ValueError(f"shrink mode {mode!r}: use one of {', '.join(SHRINK_MODES)}")


def shrink(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H/side, W/side]: each image resized to one tile (``bilinear``:
    antialiased; ``nearest``: the successor code's, one pixel of each side x side block)."""
    check_shrink_mode(mode)
    height, width = images.shape[-2:]
    if mode == "nearest":
        return F.interpolate(images, size=(height // side, width // side), mode="nearest")
    return F.interpolate(images, size=(height // side, width // side), mode="bilinear", align_corners=False,
                         antialias=True)


def enlarge(tiles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, height, width]: tiles resized back to full size (bilinear)."""
    return F.interpolate(tiles, size=(height, width), mode="bilinear", align_corners=False)


def as_tiles(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """Each image as a distilled set shows it: shrunk to one tile of a ``side`` x ``side`` grid and
    expanded back (``expand(squeeze(images, side), side)`` image by image, for any batch size)."""
    check_shrink_mode(mode)
    if side == 1:
        return images
    return enlarge(shrink(images, side, mode), *images.shape[-2:])
