"""``train``: the hard-label evaluator. A verifier is trained from scratch on the distilled
images with their integer labels (cross-entropy), and scored on the test split at the last
epoch. This is the classic protocol of DC/DSA/MTT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ddbench.contracts import DistilledSet, EvalContext, EvalResult
from ddbench.plugin_base import Evaluator
from ddbench.evaluators.augment import build_augmentation
from ddbench.evaluators.regions import RegionOptions, region_augmentation, resolve_region_mode
from ddbench.evaluators.training import fit, total_steps
from ddbench.runtime.metrics import accuracy


@dataclass
class TrainOptions(RegionOptions):
    """Only how regions are drawn (see :mod:`ddbench.evaluators.regions`)."""

    def __post_init__(self) -> None:
        self.check_regions("train")


class TrainEvaluator(Evaluator):
    name = "train"
    options_class = TrainOptions
    label_kind = "hard"

    def _options(self, context: EvalContext) -> TrainOptions:
        return context.options if isinstance(context.options, TrainOptions) else TrainOptions()

    def _mode(self, distilled: DistilledSet, context: EvalContext) -> str:
        return resolve_region_mode(self._options(context).region_sampling, distilled.tile_grid)

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
        sampler = self._options(context).sampler(distilled, device)
        augment = build_augmentation(region_augmentation(context.budget.augmentation, sampler.mode), dataset.image_size)

        def compute_loss(batch: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
            return F.cross_entropy(net(augment(sampler.gather(batch))), sampler.labels_of(batch))

        fit(model, sampler.num_samples, context.budget, compute_loss, device, context.progress,
            epoch_size=len(distilled.images), cluster=context.cluster, index_device=sampler.index_device)
        test_accuracy = accuracy(model, dataset.test, device, context.budget.test_batch_size, cluster=context.cluster)
        return EvalResult(accuracy=test_accuracy, seed=context.seed)
