"""An example ddbench method plugin: ``class-mean``.

Each distilled image is the pixel mean of ``group`` random real images of its class. The
whole plugin is this module plus two lines of pyproject.toml:

    [project.entry-points.ddbench]
    class_mean = "ddbench_class_mean"
"""

from dataclasses import dataclass

import torch

from ddbench.api import DistilledSet, Distiller, DistillTask, hookimpl


@dataclass
class ClassMeanOptions:
    group: int = 8  # real images averaged into one distilled image

    def __post_init__(self) -> None:
        if self.group < 1:
            raise ValueError(f"class-mean option group={self.group}: must be at least 1")


class ClassMeanDistiller(Distiller):
    """Each distilled image is the mean of a random group of real images of its class."""

    name = "class-mean"
    options_class = ClassMeanOptions

    def total_work(self, task: DistillTask) -> int:
        return task.num_classes

    def distill(self, task: DistillTask) -> DistilledSet:
        group = task.options.group
        generator = torch.Generator().manual_seed(task.seed)
        images, labels = [], []
        for label, pool in task.train_indices_by_class().items():
            if len(pool) < group * task.ipc:
                raise ValueError(f"class {label} has {len(pool)} images, fewer than group * ipc = {group * task.ipc}")
            picked = pool[torch.randperm(len(pool), generator=generator)[: group * task.ipc]]
            real = task.load_train(picked)
            images.append(real.view(task.ipc, group, *real.shape[1:]).mean(dim=1).cpu())
            labels.append(torch.full((task.ipc,), label, dtype=torch.int64))
            task.progress(1)
        return DistilledSet(images=torch.cat(images), labels=torch.cat(labels), method=self.name, soft_labels="observer")


@hookimpl
def register_distillers(register):
    register(ClassMeanDistiller())
