"""The ``lic`` distiller: Algorithm 1 of Sun et al. over a whole dataset.

Stage 1 (:mod:`lic_plugin.selection`) runs class by class; Stage 2 squeezes the kept images
(Eq. 2, :func:`ddbench.tiles.squeeze`) and compensates them (Eq. 8,
:mod:`lic_plugin.compensation`) in batches of ``batch_size`` distilled images drawn from all
classes; Stage 3 is the host's relabel evaluator, told by ``soft_labels="observer"`` and
``tile_grid = sqrt(N)``. Randomness: one CPU generator seeded with ``task.seed`` draws, in this
order, every class's subset, then (without selection) each class's random picks, then every
DSA draw of every batch, so one seed gives bit-identical images on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from ddbench.augment.dsa import DSA
from ddbench.contracts import DistilledSet, DistillTask
from ddbench.tiles import check_tiles_fit, squeeze
from lic_plugin.compensation import SGD_MOMENTUM, compensate, resolve_feature_layer
from lic_plugin.options import LICOptions
from lic_plugin.selection import draw_subset, eval_mode, group_ranks, rank_kept, score_images

TRACE_POINTS = 10  # the loss is recorded every 10% of the iterations (plus the last one)


def trace_iterations(iterations: int) -> list[int]:
    every = max(1, iterations // TRACE_POINTS)
    return [it for it in range(iterations) if it % every == 0 or it == iterations - 1]


class LICDistiller:
    """LIC (Sun et al.): score-based selection, squeeze, information compensation, observer relabel."""

    name = "lic"
    options_class = LICOptions

    @staticmethod
    def _options(task: DistillTask) -> LICOptions:
        return task.options if task.options is not None else LICOptions()

    def _batches(self, task: DistillTask, options: LICOptions) -> int:
        if not options.compensation or options.iterations == 0:
            return 0
        return math.ceil(task.num_classes * task.ipc / options.batch_size)

    def check_setup(self, options: LICOptions, image_shape: tuple[int, int, int], ipc: int) -> None:
        """Before any work: the N tiles must divide the image."""
        check_tiles_fit(options.n, image_shape[1], image_shape[2])

    def total_work(self, task: DistillTask) -> int:
        """One unit per class (selection) and one per iteration of every compensation batch."""
        options = self._options(task)
        return task.num_classes + self._batches(task, options) * options.iterations

    def _check(self, task: DistillTask, options: LICOptions) -> int:
        _, height, width = task.image_shape
        side = check_tiles_fit(options.n, height, width)
        if options.amp and task.device.type != "cuda":
            raise ValueError(f"lic option amp=true (bfloat16 autocast) needs a CUDA device; this run is on "
                             f"{task.device}: set lic.amp=false or run with --device cuda")
        needed = options.n * task.ipc
        for label, pool in task.train_indices_by_class().items():
            if len(pool) < needed:
                raise ValueError(f"lic needs N * IPC = {options.n} * {task.ipc} = {needed} training images of class "
                                 f"{label} ({task.dataset.class_names[label]!r}), which has only {len(pool)}; "
                                 f"lower --ipc or lic.n")
        return side

    def distill(self, task: DistillTask) -> DistilledSet:
        options = self._options(task)
        side = self._check(task, options)
        layer = resolve_feature_layer(task.observer_arch, task.observer, options.feature_layer)
        generator = torch.Generator().manual_seed(task.seed)
        needed = options.n * task.ipc
        sources, scores, scored = [], [], {}
        started = time.perf_counter()
        # Every class's subset T'_c is drawn first, so it does not depend on lic.selection.
        subsets = [draw_subset(pool, options.subset_size, generator) for pool in task.train_indices_by_class().values()]
        with eval_mode(task.observer):
            for label, subset in enumerate(subsets):  # Stage 1
                scored[str(label)] = subset.tolist()
                subset_scores = score_images(task.observer, task.load_train(subset), label).cpu()
                kept = rank_kept(subset_scores, needed, options.selection, generator)
                sources.append(group_ranks(subset[kept], task.ipc, options.n, options.grouping))
                scores.append(group_ranks(subset_scores[kept], task.ipc, options.n, options.grouping))
                task.progress(1)
            selected = time.perf_counter()  # the scores were read back to the host: the device is idle
            images, loss_trace = self._squeeze_and_compensate(task, options, side, layer,
                                                              torch.cat(sources), generator)
        timings = {"selection_seconds": selected - started, "squeeze_compensation_seconds": time.perf_counter() - selected}
        labels = torch.arange(task.num_classes, dtype=torch.int64).repeat_interleave(task.ipc)
        resolved = {**dataclasses.asdict(options), "feature_layer": layer}
        return DistilledSet(
            images=images,
            labels=labels,
            method=self.name,
            soft_labels="observer",
            tile_grid=side,
            options=resolved,
            timings=timings,
            extras={
                "source_indices": {str(c): s.tolist() for c, s in enumerate(sources)},
                "scores": {str(c): s.tolist() for c, s in enumerate(scores)},
                "loss_trace": loss_trace,
                "feature_layer": layer,
                "options": resolved,
                "scored_indices": scored,
                "sgd_momentum": SGD_MOMENTUM,
            },
        )

    def _squeeze_and_compensate(self, task: DistillTask, options: LICOptions, side: int, layer: str,
                                sources: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, list[dict]]:
        """Stage 2 over all distilled images (class-major), ``batch_size`` at a time."""
        compensating = options.compensation and options.iterations > 0
        bounds = None
        if options.clamp == "pixel":
            low, high = task.normalization.pixel_bounds()
            bounds = tuple(torch.tensor(b, dtype=torch.float32, device=task.device).view(1, -1, 1, 1)
                           for b in (low, high))
        dsa = DSA(options.dsa_strategy)
        points = trace_iterations(options.iterations)
        images, loss_trace = [], []
        for start in range(0, len(sources), options.batch_size):
            batch = sources[start:start + options.batch_size]
            originals = task.load_train(batch.reshape(-1))
            squeezed = squeeze(originals, side)
            if compensating:
                squeezed, trace = compensate(
                    task.observer, layer, originals, squeezed, side, dsa, generator,
                    iterations=options.iterations, optimizer=options.optimizer, lr=options.lr,
                    bounds=bounds, amp=options.amp, progress=task.progress)
                values = trace[points].tolist()  # the one read of this batch's trace
                loss_trace.append({"batch": len(loss_trace), "images": [start, start + len(batch)],
                                   "iterations": points, "loss": values,
                                   "first": values[0], "last": values[-1]})
            images.append(squeezed.float().cpu())
        return torch.cat(images).contiguous(), loss_trace
