"""``train``: the hard-label evaluator. A verifier is trained from scratch on the distilled
images with their integer labels (cross-entropy), and scored on the test split at the last
epoch. This is the classic protocol of DC/DSA/MTT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddbench.contracts import DistilledSet, EvalContext, EvalResult
from ddbench.evaluators.augment import build_augmentation
from ddbench.evaluators.regions import check_region_mode, region_augmentation, resolve_region_mode, training_regions
from ddbench.evaluators.training import fit, total_steps
from ddbench.metrics import accuracy


@dataclass
class TrainOptions:
    region_sampling: str = "auto"  # see ddbench.evaluators.regions

    def __post_init__(self) -> None:
        check_region_mode(self.region_sampling)


class TrainEvaluator:
    name = "train"
    options_class = TrainOptions
    label_kind = "hard"

    def _mode(self, distilled: DistilledSet, context: EvalContext) -> str:
        options = context.options if isinstance(context.options, TrainOptions) else TrainOptions()
        return resolve_region_mode(options.region_sampling, distilled.tile_grid)

    def total_work(self, distilled: DistilledSet, context: EvalContext) -> int:
        return total_steps(context.budget, len(distilled.images))

    def describe(self, distilled: DistilledSet, context: EvalContext) -> dict[str, object]:
        mode = self._mode(distilled, context)
        return {"labels": f"hard (cross-entropy, regions={mode})", "region_sampling": mode,
                "label_storage_bytes": distilled.labels.numel() * 8}

    def evaluate(self, distilled: DistilledSet, context: EvalContext) -> EvalResult:
        device = context.device
        torch.manual_seed(context.seed)
        dataset = context.dataset
        model = context.verifier_arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)
        mode = self._mode(distilled, context)
        regions, labels = training_regions(distilled, mode)
        images, labels = regions.to(device), labels.to(device)
        augment = build_augmentation(region_augmentation(context.budget.augmentation, mode), dataset.image_size)

        def compute_loss(batch: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
            return F.cross_entropy(net(augment(images[batch])), labels[batch])

        fit(model, len(images), context.budget, compute_loss, device, context.progress, epoch_size=len(distilled.images),
            cluster=context.cluster)
        test_accuracy = accuracy(model, dataset.test, device, context.budget.test_batch_size, cluster=context.cluster)
        return EvalResult(accuracy=test_accuracy, seed=context.seed)
