"""The ``lic`` distiller: Algorithm 1 of Sun et al. over a whole dataset.

The distilled images (class-major) are cut into batches of at most ``batch_size`` images made
of whole classes (:func:`ddbench.store.partials.class_major_batches`). Each batch is one unit of work:
Stage 1 (:mod:`lic_plugin.selection`) for its classes, then Stage 2, squeeze (Eq. 2,
:func:`ddbench.tiles.squeeze`) and compensation (Eq. 8, :mod:`lic_plugin.compensation`) of all
its images together. Stage 3 is the host's relabel evaluator, told by ``soft_labels="observer"``
and ``tile_grid = sqrt(N)``.

Randomness: class c's subset (then, with ``crops``, its crop boxes; without selection, its random
picks) come from the generator ``unit_generator(seed, "lic-select", c)``, and batch b's DSA draws from
``unit_generator(seed, "lic-dsa", b)``. So a batch's images depend on nothing but the seed and
the batch layout: a stopped run resumes from its saved batches (``task.save_part``), and one seed
gives bit-identical images on the CPU however the batches are run, including split over the
ranks of a ``torchrun`` launch (:func:`ddbench.store.partials.run_units`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from ddbench.api import (
    as_tiles, check_tiles_fit, class_major_batches, DistilledSet, Distiller, DistillTask, DSA, ImageBatch,
    NonFiniteLossError, run_units, squeeze, unit_generator,
)
from lic_plugin.compensation import (SGD_MOMENTUM, automatic_chunk, compensate, deepest_layer, resolve_feature_layer,
                                     scoring_batch)
from lic_plugin.options import CLUSTERED, LICOptions, default_iterations, side_of
from lic_plugin.selection import (crop_resized, draw_subset, eval_mode, group_ranks, random_square_boxes,
                                  rank_diverse, rank_kept, score_and_embed, score_images)

TRACE_POINTS = 10  # the loss is recorded every 10% of the iterations (plus the last one)


def trace_iterations(iterations: int) -> list[int]:
    every = max(1, iterations // TRACE_POINTS)
    return [it for it in range(iterations) if it % every == 0 or it == iterations - 1]


class LICDistiller(Distiller):
    """LIC (Sun et al.): score-based selection, squeeze, information compensation, observer relabel."""

    name = "lic"
    shardable = True  # its batches are independent units: ranks under torchrun split them
    revision = 2  # 2: one generator per class (selection) and per batch (DSA draws); 1: one for the run
    options_class = LICOptions

    def ablations(self):
        from lic_plugin.ablations import ABLATIONS

        return ABLATIONS

    def bench_reference(self, arch: str):
        from lic_plugin.ablations import TABLE3, bench_reference

        return bench_reference(TABLE3, arch)

    def plan_stages(self, options: LICOptions, spec: dict) -> list[dict]:
        """``ddbench run --plan``: selection and compensation passes and memory for a dataset given
        by its shape (the automatic chunk as this machine's memory would set it)."""
        from ddbench.api import inference_memory, stage
        from lic_plugin.compensation import activation_bytes_per_image, automatic_chunk

        shape, observer = spec["shape"], spec["observer"]
        per_class = shape.train // shape.classes  # a shape gives totals: its classes taken as equal
        options = options.for_dataset(spec["dataset"], image_side=side_of(shape.image), ipc=spec["ipc"],
                                      class_images=per_class)
        layer = resolve_feature_layer(spec["arch"], observer, options.feature_layer)
        side = math.isqrt(options.n)
        images = spec["ipc"] * shape.classes
        batch = min(options.batch_size, images)
        per_image = activation_bytes_per_image(observer, layer, shape.image, side, torch.device("cpu"))
        chunk = options.chunk or automatic_chunk(observer, layer, shape.image, side, torch.device("cpu"), batch)
        iterations = options.iterations if options.compensation else 0
        subset = min(options.subset_size, per_class)
        views = f", {options.crops} crops each" if options.crops > 1 else ""
        return [stage("select", subset * shape.classes * options.crops, 0, inference_memory(observer, shape.image, subset),
                      f"{subset} scored images per class{views}"),
                stage(f"compensate, M = {iterations}", 2 * iterations * options.n * images,
                      iterations * options.n * images, chunk * per_image,
                      f"{images} images x N = {options.n} tiles, chunks of {chunk} (all {batch} of a batch at once: "
                      f"{batch * per_image / 2**30:.2f} GiB)")]

    @staticmethod
    def _options(task: DistillTask) -> LICOptions:
        options = task.options if task.options is not None else LICOptions()
        return options.for_dataset(task.dataset.name, image_side=side_of(task.image_shape), ipc=task.ipc,
                                   class_images=task.dataset.smallest_class_size())

    def resolve_options(self, options: LICOptions, dataset_name: str) -> LICOptions:
        return options.for_dataset(dataset_name)

    def options_for_data(self, options: LICOptions, dataset_name: str, image_shape: tuple[int, int, int], ipc: int,
                         class_images: int) -> LICOptions:
        return options.for_dataset(dataset_name, image_side=side_of(image_shape), ipc=ipc, class_images=class_images)

    def default_iterations(self, task: DistillTask) -> tuple[int, str]:
        if self._options(task).n == 1:
            return 0, "N = 1: nothing squeezed, nothing to compensate"
        return default_iterations(task.dataset.name)

    def _layout(self, task: DistillTask, options: LICOptions) -> list[ImageBatch]:
        return class_major_batches(task.num_classes, task.ipc, options.batch_size)

    @staticmethod
    def _batch_work(batch: ImageBatch, options: LICOptions) -> int:
        compensating = options.compensation and options.iterations > 0
        return len(batch.classes) + (options.iterations if compensating else 0)

    def check_device(self, options: LICOptions, device: torch.device) -> None:
        """Before any work: bfloat16 autocast is a CUDA option."""
        if options.amp and device.type != "cuda":
            raise ValueError(f"amp=true (bfloat16 autocast) needs a CUDA device; this run is on {device}: "
                             f"set lic.amp=false or run with --device cuda")

    def check_setup(self, options: LICOptions, image_shape: tuple[int, int, int], ipc: int) -> None:
        """Before any work: the N tiles must divide the image."""
        check_tiles_fit(options.resolved_n(side_of(image_shape)), image_shape[1], image_shape[2])

    def total_work(self, task: DistillTask) -> int:
        """Per batch: one unit per class selected and one per compensation iteration."""
        options = self._options(task)
        return sum(self._batch_work(batch, options) for batch in self._layout(task, options))

    def _check(self, task: DistillTask, options: LICOptions) -> int:
        _, height, width = task.image_shape
        side = check_tiles_fit(options.n, height, width)
        self.check_device(options, task.device)
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
        bounds = None
        if options.clamp == "pixel":
            low, high = task.normalization.pixel_bounds()
            bounds = tuple(torch.tensor(b, dtype=torch.float32, device=task.device).view(1, -1, 1, 1)
                           for b in (low, high))
        timings = {"selection_seconds": 0.0, "squeeze_compensation_seconds": 0.0, "batches_computed": 0}
        layout = self._layout(task, options)

        def compute(index: int) -> tuple[dict, dict]:
            timings["batches_computed"] += 1
            return self._distill_batch(task, options, side, layer, bounds, layout[index], timings)

        units = run_units(task, [batch.name for batch in layout], compute,
                          work=lambda index: self._batch_work(layout[index], options))
        images = [tensors["images"] for tensors, _ in units]
        parts = [part for _, part in units]
        labels = torch.arange(task.num_classes, dtype=torch.int64).repeat_interleave(task.ipc)
        resolved = {**dataclasses.asdict(options), "feature_layer": layer}
        return DistilledSet(
            images=torch.cat(images).contiguous(),
            labels=labels,
            method=self.name,
            soft_labels="observer",
            tile_grid=side,
            options=resolved,
            timings=timings,
            extras={
                "source_indices": merge_by_class(parts, "sources"),
                "scores": merge_by_class(parts, "scores"),
                "crops": merge_by_class(parts, "crops"),
                "loss_trace": [part["trace"] for part in parts if part["trace"] is not None],
                "feature_layer": layer,
                "options": resolved,
                "scored_indices": {c: s for part in parts for c, s in part["scored"].items()},
                "batches": [part["batch"] for part in parts],
                "sgd_momentum": SGD_MOMENTUM,
            },
        )

    def _select_class(self, task: DistillTask, options: LICOptions, layer: str, label: int):
        """Stage 1 for one class: (subset, [IPC, N] source indices, [IPC, N] scores, [IPC, N, 4]
        crop boxes or None). ``layer``: the resolved feature layer; the clusters embed with its deepest."""
        generator = unit_generator(task.seed, "lic-select", label)
        # the subset is drawn first, so it does not depend on lic.selection
        subset = draw_subset(task.train_indices_by_class()[label], options.subset_size, generator)
        boxes = None
        if options.crops > 1:
            boxes = random_square_boxes(len(subset), options.crops, options.crop_scale, *task.image_shape[1:],
                                        generator)
        clustering = options.diversity in CLUSTERED
        with eval_mode(task.observer):
            batch_size = scoring_batch(task.observer, task.image_shape, task.device)
            subset_images = task.load_train(subset)
            view_scores, view_vectors = [], []
            for view in range(options.crops):
                candidates = subset_images if boxes is None else crop_resized(subset_images, boxes[:, view])
                if options.score_view == "tile":
                    candidates = as_tiles(candidates, math.isqrt(options.n), options.squeeze_mode)
                if clustering:
                    scores, vectors = score_and_embed(task.observer, deepest_layer(layer), candidates, label,
                                                      batch_size)
                    view_vectors.append(vectors)
                else:
                    scores = score_images(task.observer, candidates, label, batch_size)
                view_scores.append(scores.cpu())
        subset_scores, best_view = torch.stack(view_scores).max(dim=0)  # each image's best-scored view
        skip = int(options.selection_skip * len(subset_scores))
        if clustering:
            vectors = torch.stack(view_vectors)[best_view, torch.arange(len(subset))]
            kept = rank_diverse(subset_scores, vectors, options.n * task.ipc, generator, skip=skip,
                                pick=CLUSTERED[options.diversity])
        else:
            kept = rank_kept(subset_scores, options.n * task.ipc, options.selection, generator, skip=skip)
        kept_boxes = None
        if boxes is not None:
            kept_boxes = group_ranks(boxes[kept, best_view[kept]], task.ipc, options.n, options.grouping)
        return (subset, group_ranks(subset[kept], task.ipc, options.n, options.grouping),
                group_ranks(subset_scores[kept], task.ipc, options.n, options.grouping), kept_boxes)

    def _distill_batch(self, task: DistillTask, options: LICOptions, side: int, layer: str, bounds,
                       batch: ImageBatch, timings: dict) -> tuple[dict, dict]:
        """One unit: selection for the batch's classes, then squeeze and compensation of its images."""
        started = time.perf_counter()
        sources, scores, boxes, scored = [], [], [], {}
        for label in batch.classes:
            subset, class_sources, class_scores, class_boxes = self._select_class(task, options, layer, label)
            first = max(batch.start - label * task.ipc, 0)  # the batch's rows of this class
            last = min(batch.stop - label * task.ipc, task.ipc)
            sources.append(class_sources[first:last])
            scores.append(class_scores[first:last])
            if class_boxes is not None:
                boxes.append(class_boxes[first:last])
            scored[str(label)] = subset.tolist()
            task.progress(1)
        sources, scores = torch.cat(sources), torch.cat(scores)
        boxes = torch.cat(boxes) if boxes else None
        selected = time.perf_counter()  # the scores were read back to the host: the device is idle
        originals = task.load_train(sources.reshape(-1))
        if boxes is not None:  # the kept crops stand for their images from here on
            originals = crop_resized(originals, boxes.reshape(-1, 4))
        squeezed = squeeze(originals, side, options.squeeze_mode)
        trace_record = None
        if options.compensation and options.iterations > 0:
            with eval_mode(task.observer):
                chunk = options.chunk or automatic_chunk(task.observer, layer, task.image_shape, side, task.device,
                                                         len(squeezed))
                squeezed, trace = compensate(
                    task.observer, layer, originals, squeezed, side, DSA(options.dsa_strategy),
                    unit_generator(task.seed, "lic-dsa", batch.index),
                    iterations=options.iterations, optimizer=options.optimizer, lr=options.lr,
                    bounds=bounds, amp=options.amp, chunk=chunk, loss=options.loss, dsa_draw=options.dsa_draw,
                    tile_mixing=options.tile_mixing, lr_schedule=options.lr_schedule,
                    progress=task.progress)
            points = trace_iterations(options.iterations)
            finite = torch.isfinite(trace)
            first_bad = torch.where(finite.all(), -1, torch.argmin(finite.int()))
            read = torch.cat([trace[points], first_bad.float().view(1)]).tolist()  # the one read of this batch
            values, bad_at = read[:-1], int(read[-1])
            if bad_at >= 0:
                raise NonFiniteLossError(
                    f"lic: the Eq. 8 loss became NaN or infinite at iteration {bad_at + 1} of batch {batch.index} "
                    f"(classes {list(batch.classes)}); lower lic.lr (now {options.lr}) or turn lic.amp off")
            trace_record = {"batch": batch.index, "images": [batch.start, batch.stop], "chunk": chunk, "iterations": points,
                            "loss": values, "first": values[0], "last": values[-1]}
        timings["selection_seconds"] += selected - started
        timings["squeeze_compensation_seconds"] += time.perf_counter() - selected
        by_class = {}
        for row, label in enumerate(range(batch.start, batch.stop)):
            by_class.setdefault(str(label // task.ipc), []).append(row)
        part = {
            "batch": {"index": batch.index, "images": [batch.start, batch.stop], "classes": list(batch.classes)},
            "sources": {c: sources[rows].tolist() for c, rows in by_class.items()},
            "scores": {c: scores[rows].tolist() for c, rows in by_class.items()},
            "crops": {c: boxes[rows].tolist() for c, rows in by_class.items()} if boxes is not None else {},
            "scored": scored,
            "trace": trace_record,
        }
        return {"images": squeezed.float().cpu()}, part


def merge_by_class(parts: list[dict], key: str) -> dict[str, list]:
    """Per-class lists of the batches (a class split over batches comes back whole, in order)."""
    merged: dict[str, list] = {}
    for part in parts:
        for label, rows in part[key].items():
            merged.setdefault(label, []).extend(rows)
    return merged
