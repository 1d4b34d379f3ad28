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
from ddbench.evaluators.training import fit, total_steps
from ddbench.metrics import accuracy


@dataclass
class TrainOptions:
    """The hard-label evaluator has no options beyond the budget."""


class TrainEvaluator:
    name = "train"
    options_class = TrainOptions
    label_kind = "hard"

    def total_work(self, distilled: DistilledSet, context: EvalContext) -> int:
        return total_steps(context.budget, len(distilled.images))

    def describe(self, distilled: DistilledSet, context: EvalContext) -> dict[str, object]:
        return {"labels": "hard (cross-entropy)", "label_storage_bytes": distilled.labels.numel() * 8}

    def evaluate(self, distilled: DistilledSet, context: EvalContext) -> EvalResult:
        device = context.device
        torch.manual_seed(context.seed)
        dataset = context.dataset
        model = context.verifier_arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)
        images = distilled.images.to(device)
        labels = distilled.labels.to(device)
        augment = build_augmentation(context.budget.augmentation, dataset.image_size)

        def compute_loss(batch: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(augment(images[batch])), labels[batch])

        fit(model, len(images), context.budget, compute_loss, device, context.progress)
        test_accuracy = accuracy(model, dataset.test, device, context.budget.test_batch_size)
        return EvalResult(accuracy=test_accuracy, seed=context.seed)
