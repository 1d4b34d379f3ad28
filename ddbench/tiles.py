"""Squeeze and expand (the paper's Definition 1): N = g*g images, each resized to one cell of
a g x g grid, tiled row-major into one H x W image; expand cuts the tiles out and resizes each
back to H x W. Both are batched and differentiable.

The grid's cells need not be equal: a side that g does not divide is cut at ``k * side // g``
(a 32 px side in three: 10, 11 and 11 px), so N = 9 runs at 32 px as the paper ran it on
CIFAR-10. Where g divides both sides every tile has one size and one resize serves all of them."""

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
    """The grid side for ``n`` tiles, checking every tile keeps at least two pixels a side."""
    side = grid_side(n)
    if min(height, width) // side < 2:
        raise ValueError(f"N = {n} tiles of a {height}x{width} image would be under 2 px a side; "
                         f"pick a smaller N or a larger --image-size")
    return side


def tile_edges(length: int, side: int) -> list[int]:
    """Where a ``side``-cell grid cuts a side of ``length`` pixels: ``k * length // side``."""
    return [k * length // side for k in range(side + 1)]


def is_even_grid(height: int, width: int, side: int) -> bool:
    """Whether every tile of the grid has the same size (``side`` divides both sides)."""
    return height % side == 0 and width % side == 0


def squeeze(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """[B * side², C, H, W] -> [B, C, H, W]: groups of side² consecutive images, row-major tiles,
    each shrunk by ``mode`` (:data:`SHRINK_MODES`) to its cell of the grid."""
    check_shrink_mode(mode)
    total, channels, height, width = images.shape
    if total % (side * side):
        raise ValueError(f"{total} images cannot be grouped in tiles of {side * side}")
    if side == 1:
        return images
    batch = total // (side * side)
    if not is_even_grid(height, width, side):
        return _squeeze_uneven(images.reshape(batch, side * side, channels, height, width), side, mode)
    small = shrink(images, side, mode)
    tiles = small.view(batch, side, side, channels, height // side, width // side)
    # [B, row, col, C, h, w] -> [B, C, row, h, col, w] -> [B, C, H, W]
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def _squeeze_uneven(grouped: torch.Tensor, side: int, mode: str) -> torch.Tensor:
    """[B, side², C, H, W] -> [B, C, H, W], each grid position resized to its own cell (one resize
    per position, the whole batch at once)."""
    height, width = grouped.shape[-2:]
    rows, cols = tile_edges(height, side), tile_edges(width, side)
    return torch.cat([
        torch.cat([_resize(grouped[:, r * side + c], rows[r + 1] - rows[r], cols[c + 1] - cols[c], mode)
                   for c in range(side)], dim=-1)
        for r in range(side)], dim=-2)


def cut_tiles(images: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * side², C, H/side, W/side], row-major, without resizing (an even
    grid only: tiles of different sizes do not stack)."""
    batch, channels, height, width = images.shape
    if not is_even_grid(height, width, side):
        raise ValueError(f"a {height}x{width} image's {side}x{side} tiles differ in size and cannot be stacked; "
                         f"expand them to full size instead (expand)")
    tiles = images.view(batch, channels, side, height // side, side, width // side)
    return tiles.permute(0, 2, 4, 1, 3, 5).reshape(batch * side * side, channels, height // side, width // side)


def expand(images: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * side², C, H, W]: each tile resized back to full size (bilinear)."""
    if side == 1:
        return images
    batch, channels, height, width = images.shape
    if is_even_grid(height, width, side):
        return enlarge(cut_tiles(images, side), height, width)
    rows, cols = tile_edges(height, side), tile_edges(width, side)
    tiles = [enlarge(images[:, :, rows[r]:rows[r + 1], cols[c]:cols[c + 1]], height, width)
             for r in range(side) for c in range(side)]
    return torch.stack(tiles, dim=1).reshape(batch * side * side, channels, height, width)


def check_shrink_mode(mode: str) -> None:
    """Raise ``ValueError`` naming :data:`SHRINK_MODES` for any other ``mode``, whatever the tile
    side (with one tile a side nothing is shrunk, but a misspelt mode is still an error)."""
    if mode not in SHRINK_MODES:
        raise ValueError(f"shrink mode {mode!r}: use one of {', '.join(SHRINK_MODES)}")


def shrink(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H//side, W//side]: each image resized to one tile (the smallest
    cell where ``side`` does not divide the image) (``bilinear``: antialiased; ``nearest``: the
    successor code's, one pixel of each side x side block)."""
    check_shrink_mode(mode)
    height, width = images.shape[-2:]
    return _resize(images, height // side, width // side, mode)


def _resize(images: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(images, size=(height, width), mode="nearest")
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def enlarge(tiles: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, height, width]: tiles resized back to full size (bilinear)."""
    return F.interpolate(tiles, size=(height, width), mode="bilinear", align_corners=False)


def as_tiles(images: torch.Tensor, side: int, mode: str = "bilinear") -> torch.Tensor:
    """Each image as a distilled set shows it: shrunk to one tile of a ``side`` x ``side`` grid and
    expanded back (``expand(squeeze(images, side), side)`` image by image, for any batch size; on
    an uneven grid, at the smallest cell's size, at most a pixel a side below the largest)."""
    check_shrink_mode(mode)
    if side == 1:
        return images
    return enlarge(shrink(images, side, mode), *images.shape[-2:])
