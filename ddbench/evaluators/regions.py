"""Training regions of a distilled set, respecting the tile layout of squeezed images, drawn
batch by batch: nothing is expanded up front, so memory is bounded by the batch whatever the
size of the set.

- ``whole``: the distilled images themselves.
- ``tiles``: every tile expanded back to full size (the paper's expand operator) is its own sample.
- ``tile-crops``: the tiles at their squeezed size; the evaluator crops and resizes them to full size
  (an even grid only: tiles of different sizes do not stack in one batch).
- ``factor-crop``: each batch is, with probability ``factor_fraction``, made of one random
  tile of every image expanded to full size, and otherwise of the whole images (the factor
  crop of the authors' successor code, LINs-lab/CIM, and RDED). The grid is the set's tile
  grid for squeezed sets, else ``crop_factor`` x ``crop_factor`` cells of the whole image.
- ``auto``: ``tiles`` for squeezed sets (``tile_grid > 1``), ``whole`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddbench.contracts import DistilledSet
from ddbench.tiles import enlarge, is_even_grid

REGION_MODES = ("auto", "whole", "tiles", "tile-crops", "factor-crop")
TILED_MODES = ("tiles", "tile-crops")  # one sample per tile
DEVICE_SET_BYTES = 1 << 30  # sets up to this size live on the compute device; larger ones stay in host memory


def check_region_mode(mode: str) -> None:
    if mode not in REGION_MODES:
        raise ValueError(f"region_sampling={mode!r}: use one of {', '.join(REGION_MODES)}")


@dataclass
class RegionOptions:
    """How an evaluator draws training samples from a distilled set (every evaluator's options
    start with these)."""

    region_sampling: str = "auto"
    factor_fraction: float = 0.5  # factor-crop: the share of batches made of expanded tiles
    crop_factor: int = 2  # factor-crop on unsqueezed sets: the grid side the tiles are cut from

    def check_regions(self, what: str) -> None:
        if self.region_sampling not in REGION_MODES:
            raise ValueError(f"{what} option region_sampling={self.region_sampling!r}: use one of {', '.join(REGION_MODES)}")
        if not 0.0 <= self.factor_fraction <= 1.0:
            raise ValueError(f"{what} option factor_fraction={self.factor_fraction}: use a share between 0 and 1")
        if not 2 <= self.crop_factor <= 8:
            raise ValueError(f"{what} option crop_factor={self.crop_factor}: use a grid side from 2 to 8")

    def sampler(self, distilled: DistilledSet, device: torch.device) -> "RegionSampler":
        mode = resolve_region_mode(self.region_sampling, distilled.tile_grid)
        return RegionSampler(distilled, mode, device, crop_factor=self.crop_factor, factor_fraction=self.factor_fraction)


def region_count(distilled: DistilledSet, mode: str) -> int:
    """How many samples ``mode`` draws batches from."""
    return len(distilled.labels) * (distilled.tile_grid ** 2 if mode in TILED_MODES else 1)


def resolve_region_mode(mode: str, tile_grid: int) -> str:
    if mode == "factor-crop":
        return mode
    if tile_grid == 1:
        return "whole"
    return "tiles" if mode == "auto" else mode


def tile_at(images: torch.Tensor, tile: torch.Tensor, side: int) -> torch.Tensor:
    """Tile ``tile[i]`` (row-major in a ``side`` x ``side`` grid) of each image ``images[i]``,
    at its own size [B, C, H // side, W // side]; gathered on the images' device, no host sync."""
    batch, channels, height, width = images.shape
    h, w = height // side, width // side
    device = images.device
    top = (tile // side) * h
    left = (tile % side) * w
    rows = (top.view(-1, 1) + torch.arange(h, device=device)).view(batch, 1, h, 1)
    cols = (left.view(-1, 1) + torch.arange(w, device=device)).view(batch, 1, 1, w)
    return images[torch.arange(batch, device=device).view(-1, 1, 1, 1), torch.arange(channels, device=device).view(1, -1, 1, 1),
                  rows, cols]


def expanded_tile_at(images: torch.Tensor, tile: torch.Tensor, side: int) -> torch.Tensor:
    """Tile ``tile[i]`` of each image ``images[i]`` expanded to full size, as :func:`ddbench.tiles.expand`
    does: one resize where the grid is even, else each sample's own cell (cut at ``k * length //
    side``) enlarged by its own weights; on the images' device, no host sync."""
    height, width = images.shape[-2:]
    if is_even_grid(height, width, side):
        return enlarge(tile_at(images, tile, side), height, width)
    return _expanded_by_weights(images, tile, side)


def _expanded_by_weights(images: torch.Tensor, tile: torch.Tensor, side: int) -> torch.Tensor:
    """:func:`expanded_tile_at` for any grid: the resize is separable, so each sample's tile is cut
    and enlarged by two batched products with its own row and column weights (two per output pixel)."""
    height, width = images.shape[-2:]
    rows = _resize_weights(tile // side, height, side).to(images.dtype).unsqueeze(1)  # [B, 1, H, H]
    cols = _resize_weights(tile % side, width, side).to(images.dtype).unsqueeze(1)  # [B, 1, W, W]
    with torch.autocast(images.device.type, enabled=False):  # in the images' precision, as a resize would be
        return rows @ images @ cols.transpose(-1, -2)


def _resize_weights(cell: torch.Tensor, length: int, side: int) -> torch.Tensor:
    """[B, length, length]: row ``o`` of sample ``b`` weighs the source pixels of output pixel ``o``
    of that sample's cell, enlarged to ``length``."""
    low, high, weight = _source_pixels(cell, length, side)
    source = torch.arange(length, device=cell.device)  # compared, not one_hot: no range check, no host sync
    return ((source == low.unsqueeze(-1)) * (1 - weight).unsqueeze(-1)
            + (source == high.unsqueeze(-1)) * weight.unsqueeze(-1))


def _source_pixels(cell: torch.Tensor, length: int, side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each sample's cell along one axis (cut at ``k * length // side``): the two source
    pixels and the weight of the second for every output pixel, [B, length] each, by the rule of
    ``F.interpolate(mode="bilinear", align_corners=False)``."""
    start = (cell * length).div(side, rounding_mode="floor").view(-1, 1)
    size = ((cell + 1) * length).div(side, rounding_mode="floor").view(-1, 1) - start
    out = torch.arange(length, device=cell.device, dtype=torch.float32).view(1, -1)
    source = ((out + 0.5) * (size.float() / length) - 0.5).clamp(min=0)
    low = torch.minimum(source.long(), size - 1)
    high = torch.minimum(low + 1, size - 1)
    weight = (source - low).clamp(0, 1)
    return start + low, start + high, weight


class RegionSampler:
    """The samples a verifier trains on, gathered per batch.

    ``num_samples`` is the size of the pool batches index into (images, or tiles of squeezed
    images for ``tiles``/``tile-crops``). The set stays where it is cheap: on the compute device
    when it is at most ``device_set_bytes``, else in (pinned) host memory with batches copied
    over; ``index_device`` is where batch indices must live so that gathering never syncs.
    """

    def __init__(self, distilled: DistilledSet, mode: str, device: torch.device, crop_factor: int = 2,
                 factor_fraction: float = 0.5, device_set_bytes: int = DEVICE_SET_BYTES):
        self.mode = mode
        self.side = distilled.tile_grid
        self.device = device
        images = distilled.images.float()
        self.storage = device if images.numel() * images.element_size() <= device_set_bytes else torch.device("cpu")
        if self.storage.type == "cpu" and device.type == "cuda":
            images = images.pin_memory()
        self.images = images.to(self.storage)
        self.per_image = self.side * self.side if mode in TILED_MODES else 1
        self.image_labels = distilled.labels.long()
        self.labels = self.image_labels.repeat_interleave(self.per_image)
        self._labels_on_device = self.labels.to(device)
        self.factor = self.side if self.side > 1 else crop_factor
        self.factor_fraction = factor_fraction
        self.height, self.width = images.shape[-2:]
        if mode == "tile-crops" and not is_even_grid(self.height, self.width, self.side):
            raise ValueError(f"region_sampling=tile-crops needs tiles of one size, and a {self.height}x{self.width} "
                             f"image's {self.side}x{self.side} tiles differ; use region_sampling=tiles (or auto)")

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    @property
    def index_device(self) -> torch.device:
        return self.storage

    def labels_of(self, indices: torch.Tensor) -> torch.Tensor:
        """The class of each sample, on the compute device."""
        return self._labels_on_device[indices.to(self.device, non_blocking=True)]

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """The samples at ``indices`` (on ``index_device``) as a batch on the compute device."""
        indices = indices.to(self.storage, non_blocking=True)
        if self.mode == "whole":
            batch = self.images[indices]
        elif self.mode in TILED_MODES:
            images, tile = self.images[indices // self.per_image], indices % self.per_image
            batch = expanded_tile_at(images, tile, self.side) if self.mode == "tiles" else tile_at(images, tile, self.side)
        elif self.mode == "factor-crop":
            batch = self.images[indices]
            if float(torch.rand(())) < self.factor_fraction:  # drawn on the CPU: no host sync
                tile = torch.randint(self.factor * self.factor, (len(indices),), device=self.storage)
                batch = expanded_tile_at(batch, tile, self.factor)
        else:
            raise ValueError(f"region_sampling={self.mode!r}: use one of {', '.join(REGION_MODES)}")
        return batch.to(self.device, non_blocking=True)

    def all_samples(self, chunk: int = 256):
        """Every sample in order, in chunks (for labels computed once)."""
        for start in range(0, self.num_samples, chunk):
            yield self.gather(torch.arange(start, min(start + chunk, self.num_samples), device=self.storage))


def region_augmentation(spec: str, mode: str) -> str:
    """Tile crops must be cropped and resized back to full size: make sure ``crop`` is in the spec."""
    from ddbench.settings.budget import parse_augmentation

    parts = parse_augmentation(spec)
    if mode == "tile-crops" and "crop" not in parts:
        parts = ["crop", *parts]
    return "+".join(parts) or "none"
