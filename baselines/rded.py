"""``rded``: RDED (Sun et al., CVPR 2024, "On the Diversity and Realism of Distilled Dataset"),
written from the paper and the authors' public code (LINs-lab/RDED), through the public plugin
API only.

Per class, a seeded candidate pool of ``pool`` real images is drawn. Each candidate gives
``crops`` square random resized crops (area fraction uniform in [``min_scale``, ``max_scale``])
at the tile size S / ``factor``; each crop, zero-padded to S x S in normalised space, is scored
by the observer's cross-entropy for the class (realism: a low loss is a crop the observer finds
typical), and each candidate keeps its lowest-loss crop. The ``IPC x factor²`` lowest-loss kept
crops (one per candidate image: diversity) are stitched ``factor x factor`` into the IPC
distilled images: tile k of image i holds the crop ranked ``k x IPC + i``. The set is
relabelled by the shared ``relabel`` evaluator with region-level soft labels (``tile_grid =
factor``).

Defaults are the authors' scripts': ``crops`` 5, ``pool`` 300, crop area 0.08-1 (torchvision's
RandomResizedCrop), ``factor`` 1 at 32 and 64 px (CIFAR, Tiny-ImageNet) and 2 from 128 px
(ImageNet subsets) -- ``factor = 0`` picks that automatically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddbench.api import (
    DistilledSet, Distiller, DistillTask, check_tiles_fit, hookimpl, run_units, unit_generator,
)

AUTO_FACTOR_FROM = 128  # px: the authors stitch 2 x 2 crops at 128 px and above, none below


@dataclass
class RDEDOptions:
    """Options of ``rded``.

    - ``pool``: candidate real images per class, drawn at random (seeded) (authors: 300).
    - ``crops``: random resized crops scored per candidate; the lowest-loss one is kept (authors: 5).
    - ``factor``: crops stitched per side of a distilled image (1: none; 0: automatic, 1 below 128 px, else 2).
    - ``min_scale`` / ``max_scale``: the crop's share of the image area (RandomResizedCrop's 0.08-1).
    - ``score_batch``: crops scored per observer forward (memory only).
    """

    pool: int = 300
    crops: int = 5
    factor: int = 0
    min_scale: float = 0.08
    max_scale: float = 1.0
    score_batch: int = 256

    def __post_init__(self) -> None:
        if self.pool < 1:
            raise ValueError(f"rded option pool={self.pool}: must be at least 1")
        if self.crops < 1:
            raise ValueError(f"rded option crops={self.crops}: must be at least 1")
        if self.factor < 0:
            raise ValueError(f"rded option factor={self.factor}: 0 (automatic) or crops per side (1, 2, ...)")
        if not (0 < self.min_scale <= self.max_scale <= 1):
            raise ValueError(f"rded option min_scale={self.min_scale}, max_scale={self.max_scale}: need "
                             f"0 < min_scale <= max_scale <= 1")
        if self.score_batch < 1:
            raise ValueError(f"rded option score_batch={self.score_batch}: must be at least 1")


def resolve_factor(options: RDEDOptions, size: int) -> int:
    return options.factor or (2 if size >= AUTO_FACTOR_FROM else 1)


def random_crops(images: torch.Tensor, count: int, tile: int, scale: tuple[float, float],
                 generator: torch.Generator) -> torch.Tensor:
    """``count`` square random resized crops of each image, resized to ``tile`` px (antialiased):
    ``[count, B, C, tile, tile]``; the crop boxes are drawn on the CPU ``generator``."""
    batch, _, height, width = images.shape
    area = torch.empty(count, batch).uniform_(scale[0], scale[1], generator=generator) * height * width
    sides = area.sqrt().round().clamp(1, min(height, width)).long()
    tops = (torch.rand(count, batch, generator=generator) * (height - sides + 1)).floor().long()
    lefts = (torch.rand(count, batch, generator=generator) * (width - sides + 1)).floor().long()
    out = images.new_empty(count, batch, images.shape[1], tile, tile)
    for c in range(count):
        for b in range(batch):
            top, left, side = int(tops[c, b]), int(lefts[c, b]), int(sides[c, b])
            region = images[b:b + 1, :, top:top + side, left:left + side]
            out[c, b] = F.interpolate(region, size=(tile, tile), mode="bilinear", align_corners=False,
                                      antialias=side > tile)[0]
    return out


def crop_losses(observer: torch.nn.Module, crops: torch.Tensor, label: int, size: int, batch: int) -> torch.Tensor:
    """The observer's cross-entropy for ``label`` of each crop ``[..., C, t, t]``, zero-padded to
    ``size`` (centred, as the authors score tiles), shape ``crops.shape[:-3]``."""
    flat = crops.reshape(-1, *crops.shape[-3:])
    pad = size - flat.shape[-1]
    before, after = pad // 2, pad - pad // 2
    losses = []
    with torch.no_grad():
        for start in range(0, len(flat), batch):
            part = F.pad(flat[start:start + batch], (before, after, before, after))
            logits = observer(part).float()
            target = torch.full((len(part),), label, dtype=torch.int64, device=logits.device)
            losses.append(F.cross_entropy(logits, target, reduction="none"))
    return torch.cat(losses).view(crops.shape[:-3])


def select_crops(losses: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From ``losses`` ``[crops, candidates]``: each candidate's best crop (index), then the
    ``keep`` candidates whose best crop has the lowest loss, best first. Returns (candidate
    positions, their crop indices)."""
    best_loss, best_crop = losses.min(dim=0)
    order = torch.argsort(best_loss, stable=True)[:keep]
    return order, best_crop[order]


def stitch(tiles: torch.Tensor, side: int) -> torch.Tensor:
    """``[B * side², C, t, t]`` (groups of side² consecutive tiles, row-major) -> ``[B, C, side t, side t]``."""
    total, channels, tile, _ = tiles.shape
    batch = total // (side * side)
    grid = tiles.view(batch, side, side, channels, tile, tile)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, side * tile, side * tile)


class RDEDDistiller(Distiller):
    """RDED: the most realistic random crops of diverse real images, stitched and relabelled."""

    name = "rded"
    options_class = RDEDOptions
    shardable = True  # classes are independent units

    def check_setup(self, options: RDEDOptions, image_shape: tuple[int, int, int], ipc: int) -> None:
        _, height, width = image_shape
        if height != width:
            raise ValueError(f"rded stitches square crops: the images must be square, got {height}x{width}")
        factor = resolve_factor(options, height)
        check_tiles_fit(factor * factor, height, width)
        if height % factor:  # its crops are cut at one size, side // factor, and stitched edge to edge
            raise ValueError(f"rded option factor={factor}: the crops are stitched at one size, so the image side "
                             f"{height} must be divisible by it; pick a factor that divides {height}")

    def total_work(self, task: DistillTask) -> int:
        return task.num_classes

    def distill(self, task: DistillTask) -> DistilledSet:
        options: RDEDOptions = task.options if task.options is not None else RDEDOptions()
        _, size, _ = task.image_shape
        self.check_setup(options, task.image_shape, task.ipc)
        factor = resolve_factor(options, size)
        tile = size // factor
        keep = task.ipc * factor * factor
        pools = task.train_indices_by_class()
        for label, pool in pools.items():
            if len(pool) < keep:
                raise ValueError(f"rded needs IPC x factor² = {keep} distinct training images of class {label} "
                                 f"({task.dataset.class_names[label]!r}), which has only {len(pool)}; lower --ipc or "
                                 f"rded.factor")
        was_training = task.observer.training
        task.observer.eval()

        def compute(label: int):
            generator = unit_generator(task.seed, "rded", label)
            pool = pools[label]
            candidates = pool[torch.randperm(len(pool), generator=generator)[:options.pool]]
            images = task.load_train(candidates)
            crops = random_crops(images, options.crops, tile, (options.min_scale, options.max_scale), generator)
            losses = crop_losses(task.observer, crops, label, size, options.score_batch)
            chosen, crop_index = select_crops(losses.cpu(), keep)
            kept = crops[crop_index.to(crops.device), chosen.to(crops.device)]  # [keep, C, t, t], best first
            # tile k of image i holds rank k * IPC + i (the authors' layout: each image mixes ranks)
            layout = torch.arange(keep).view(factor * factor, task.ipc).t().reshape(-1)
            distilled = stitch(kept[layout.to(kept.device)], factor) if factor > 1 else kept
            task.progress(1)
            return ({"images": distilled.cpu()},
                    {"sources": candidates[chosen].tolist(), "losses": losses.min(dim=0).values[chosen].tolist()})

        try:
            units = run_units(task, [f"class-{label:05d}" for label in range(task.num_classes)], compute,
                              work=lambda index: 1)
        finally:
            task.observer.train(was_training)
        images = torch.cat([tensors["images"] for tensors, _ in units]).float()
        labels = torch.arange(task.num_classes, dtype=torch.int64).repeat_interleave(task.ipc)
        return DistilledSet(images=images, labels=labels, method=self.name, soft_labels="observer", tile_grid=factor,
                            options={"factor": factor},
                            extras={"source_indices": [meta["sources"] for _, meta in units],
                                    "kept_losses": [meta["losses"] for _, meta in units]})


@hookimpl
def register_distillers(register):
    register(RDEDDistiller())
