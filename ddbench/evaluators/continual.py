"""``continual``: class-incremental learning on a distilled set (the paper's Appendix G, after
SRe2L's and DM's protocol).

The classes are split into ``steps`` groups (5) in a fixed order drawn from
``class_order_seed``. At step s the verifier learns, from scratch (as in DM's and SRe2L's
class-incremental evaluation), from the distilled images of the classes seen in steps 1..s,
with the observer's soft labels restricted to those classes (KL at temperature T, the relabel
evaluator's augmentation, mixing and region sampling); after each step it is tested on the test
images of every class seen so far, predicting among those classes. A step trains for the
budget's epochs, an epoch being the distilled images of the seen classes.

The seed's accuracy is the last step's (all classes); ``extras["per_step"]`` holds every step's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ddbench.contracts import DistilledSet, EvalContext, EvalResult
from ddbench.plugin_base import Evaluator
from ddbench.evaluators.augment import build_augmentation
from ddbench.evaluators.regions import RegionSampler, region_augmentation, resolve_region_mode
from ddbench.evaluators.relabel import RelabelOptions, _mix, distillation_loss, teacher_targets
from ddbench.evaluators.training import fit, total_steps


@dataclass
class ContinualOptions(RelabelOptions):
    steps: int = 5
    class_order_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ValueError(f"continual option steps={self.steps}: must be at least 1")
        if self.label_source != "online":
            raise ValueError("continual option label_source: only online (the observer relabels every view)")


def class_schedule(num_classes: int, steps: int, seed: int) -> list[list[int]]:
    """The classes of each step: a seeded permutation cut into ``steps`` near-equal groups."""
    if steps > num_classes:
        raise ValueError(f"continual option steps={steps}: more steps than the {num_classes} classes")
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))
    return [group.tolist() for group in torch.tensor_split(order, steps)]


@torch.no_grad()
def seen_class_accuracy(model: nn.Module, source, seen: list[int], device: torch.device, batch_size: int = 500) -> float:
    """Accuracy (%) on the test images of the ``seen`` classes, predicting among those classes."""
    model.eval()
    seen_t = torch.tensor(seen, dtype=torch.int64)
    keep = torch.nonzero(torch.isin(source.labels, seen_t)).flatten()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen_d = seen_t.to(device)
    for chunk in keep.split(batch_size):
        logits = model(source.load(chunk).to(device))[:, seen_d]
        correct += (seen_d[logits.argmax(dim=1)] == source.labels[chunk].to(device)).sum()
    model.train()
    return 100.0 * correct.item() / max(1, len(keep))


class ContinualEvaluator(Evaluator):
    name = "continual"
    options_class = ContinualOptions
    label_kind = "soft"
    per_step = True  # results carry one accuracy per step (ranks train each seed together under torchrun)

    def _options(self, context: EvalContext) -> ContinualOptions:
        return context.options if isinstance(context.options, ContinualOptions) else ContinualOptions()

    def _seen(self, distilled: DistilledSet, context: EvalContext) -> list[list[int]]:
        options = self._options(context)
        schedule = class_schedule(context.dataset.num_classes, options.steps, options.class_order_seed)
        return [sum(schedule[: step + 1], []) for step in range(len(schedule))]

    def total_work(self, distilled: DistilledSet, context: EvalContext) -> int:
        counts = [int(torch.isin(distilled.labels, torch.tensor(seen)).sum()) for seen in self._seen(distilled, context)]
        return sum(total_steps(context.budget, max(1, count)) for count in counts)

    def describe(self, distilled: DistilledSet, context: EvalContext) -> dict[str, object]:
        options = self._options(context)
        mode = resolve_region_mode(options.region_sampling, distilled.tile_grid)
        schedule = class_schedule(context.dataset.num_classes, options.steps, options.class_order_seed)
        return {
            "labels": f"soft (online, seen classes, T={options.temperature:g}, {options.mixing}, regions={mode}), "
                      f"{options.steps} class-incremental steps",
            "region_sampling": mode,
            "schedule": schedule,
            "label_storage_bytes": 0,
        }

    def evaluate(self, distilled: DistilledSet, context: EvalContext) -> EvalResult:
        options = self._options(context)
        if context.teacher is None:
            raise ValueError("the continual evaluator needs a teacher (the observer) for soft labels")
        device, dataset = context.device, context.dataset
        torch.manual_seed(context.seed)
        sampler = options.sampler(distilled, device)
        augment = build_augmentation(region_augmentation(context.budget.augmentation, sampler.mode), dataset.image_size)
        teacher = context.teacher.eval()
        per_step, sizes = [], []
        for seen in self._seen(distilled, context):
            pool = self.step_regions(sampler, seen)
            epoch_size = int(torch.isin(distilled.labels, torch.tensor(seen)).sum())
            model = context.verifier_arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)
            self.train_step(model, sampler, pool, seen, teacher, augment, options, context, epoch_size)
            per_step.append(seen_class_accuracy(model, dataset.test, seen, device, context.budget.test_batch_size))
            sizes.append(len(pool))
        return EvalResult(accuracy=per_step[-1], seed=context.seed,
                          extras={"per_step": per_step, "classes_seen": [len(s) for s in self._seen(distilled, context)],
                                  "regions_per_step": sizes})

    @staticmethod
    def step_regions(sampler: RegionSampler, seen: list[int]) -> torch.Tensor:
        """The indices (on the sampler's index device) of the training regions of the classes seen
        so far (and of no other class)."""
        return torch.nonzero(torch.isin(sampler.labels, torch.tensor(seen))).flatten().to(sampler.index_device)

    def train_step(self, model: nn.Module, sampler: RegionSampler, pool: torch.Tensor, seen: list[int], teacher: nn.Module,
                   augment, options: ContinualOptions, context: EvalContext, epoch_size: int) -> None:
        seen_d = torch.tensor(seen, device=context.device)

        def compute_loss(batch: torch.Tensor, net: nn.Module) -> torch.Tensor:
            views = augment(sampler.gather(pool[batch]))
            if options.mixing != "none":
                views, _, _ = _mix(views, options)
            with torch.no_grad():
                targets = teacher_targets(teacher(views)[:, seen_d], options)
            return distillation_loss(net(views)[:, seen_d], targets, options)

        fit(model, len(pool), context.budget, compute_loss, context.device, context.progress,
            epoch_size=epoch_size, cluster=context.cluster, index_device=sampler.index_device)
