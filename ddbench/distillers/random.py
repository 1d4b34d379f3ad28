"""``random``: IPC random real training images per class, seeded. The plain baseline every
comparison needs (published work rarely reports it under the same relabel protocol)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddbench.contracts import DistilledSet, DistillTask
from ddbench.plugin_base import Distiller
from ddbench.store.partials import run_units


@dataclass
class RandomOptions:
    """``random`` has no options: the seed and IPC come from the task."""


class RandomDistiller(Distiller):
    name = "random"
    shardable = True  # classes are independent units
    options_class = RandomOptions

    def total_work(self, task: DistillTask) -> int:
        return task.num_classes

    def distill(self, task: DistillTask) -> DistilledSet:
        # one generator for the run: every process replays all classes' draws (free) and loads its own classes
        generator = torch.Generator().manual_seed(task.seed)
        picks = [pool[torch.randperm(len(pool), generator=generator)[: task.ipc]]
                 for pool in task.train_indices_by_class().values()]

        def compute(label: int) -> tuple[dict, dict]:
            task.progress(1)
            return {"images": task.dataset.train.load(picks[label])}, {}

        units = run_units(task, [f"class-{label:05d}" for label in range(len(picks))], compute, work=lambda label: 1,
                          cheap=True)
        images = [tensors["images"] for tensors, _ in units]
        labels = [torch.full((len(picked),), label, dtype=torch.int64) for label, picked in enumerate(picks)]
        chosen = {str(label): picked.tolist() for label, picked in enumerate(picks)}
        return DistilledSet(
            images=torch.cat(images),
            labels=torch.cat(labels),
            method=self.name,
            soft_labels="observer",
            extras={"source_indices": chosen},
        )
