"""``squeeze``: N random real images per class, resized and tiled into one image.

No selection and no compensation: the paper's "Original" row and its Figure 3. Each
distilled image holds N = g*g randomly drawn training images of one class, tiled row-major
with :func:`ddbench.tiles.squeeze` (Definition 1); the evaluator expands the tiles back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ddbench.api import check_tiles_fit, DistilledSet, Distiller, DistillTask, hookimpl, run_units, squeeze


@dataclass
class SqueezeOptions:
    """Options of ``squeeze``.

    - ``n``: real images squeezed into each distilled image (a perfect square: 1, 4, 9...).
    """

    n: int = 4

    def __post_init__(self) -> None:
        side = math.isqrt(self.n) if self.n >= 1 else 0
        if self.n < 1 or side * side != self.n:
            raise ValueError(f"squeeze option n={self.n}: N must be a perfect square (1, 4, 9, 16, ...)")


class SqueezeDistiller(Distiller):
    """Random real images squeezed N to an image, no selection or compensation (the paper's "Original" row)."""

    name = "squeeze"
    shardable = True  # classes are independent units
    options_class = SqueezeOptions

    def check_setup(self, options: SqueezeOptions, image_shape: tuple[int, int, int], ipc: int) -> None:
        check_tiles_fit(options.n, image_shape[1], image_shape[2])

    def total_work(self, task: DistillTask) -> int:
        return task.num_classes

    def distill(self, task: DistillTask) -> DistilledSet:
        options: SqueezeOptions = task.options if task.options is not None else SqueezeOptions()
        _, height, width = task.image_shape
        side = check_tiles_fit(options.n, height, width)
        needed = options.n * task.ipc
        pools = task.train_indices_by_class()
        for label, pool in pools.items():
            if len(pool) < needed:
                raise ValueError(
                    f"squeeze needs n * ipc = {options.n} * {task.ipc} = {needed} distinct training images of class "
                    f"{label} ({task.dataset.class_names[label]!r}), which has only {len(pool)}; "
                    f"lower --ipc or squeeze.n so that n * ipc <= {len(pool)}"
                )

        # one generator for the whole run (as since the first release): every process replays the
        # draws of all classes, which costs nothing, and squeezes only the classes it owns
        generator = torch.Generator().manual_seed(task.seed)
        picks = [pool[torch.randperm(len(pool), generator=generator)[:needed]] for pool in pools.values()]

        def compute(label: int) -> tuple[dict, dict]:
            real = task.dataset.train.load(picks[label]).to(task.device)
            task.progress(1)
            return {"images": squeeze(real, side).float().cpu()}, {}

        units = run_units(task, [f"class-{label:05d}" for label in range(len(picks))], compute, work=lambda label: 1,
                          cheap=True)
        images = [tensors["images"] for tensors, _ in units]
        labels = [torch.full((task.ipc,), label, dtype=torch.int64) for label in range(len(picks))]
        sources = {str(label): picked.view(task.ipc, options.n).tolist() for label, picked in enumerate(picks)}
        return DistilledSet(
            images=torch.cat(images),
            labels=torch.cat(labels),
            method=self.name,
            soft_labels="observer",
            tile_grid=side,
            extras={"source_indices": sources},
        )


@hookimpl
def register_distillers(register):
    register(SqueezeDistiller())
