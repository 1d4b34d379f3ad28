"""``random``: IPC random real training images per class, seeded. The plain baseline every
comparison needs (published work rarely reports it under the same relabel protocol)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddbench.contracts import DistilledSet, DistillTask


@dataclass
class RandomOptions:
    """``random`` has no options: the seed and IPC come from the task."""


class RandomDistiller:
    name = "random"
    options_class = RandomOptions

    def total_work(self, task: DistillTask) -> int:
        return task.num_classes

    def distill(self, task: DistillTask) -> DistilledSet:
        generator = torch.Generator().manual_seed(task.seed)
        images, labels, chosen = [], [], {}
        for label, pool in task.train_indices_by_class().items():
            picked = pool[torch.randperm(len(pool), generator=generator)[: task.ipc]]
            images.append(task.dataset.train.load(picked))
            labels.append(torch.full((len(picked),), label, dtype=torch.int64))
            chosen[str(label)] = picked.tolist()
            task.progress(1)
        return DistilledSet(
            images=torch.cat(images),
            labels=torch.cat(labels),
            method=self.name,
            soft_labels="observer",
            extras={"source_indices": chosen},
        )
