"""``relabel``: train a fresh verifier on the distilled set with the observer's soft labels.

Each step takes a batch of training *regions* of the distilled images, augments them (the
budget's augmentation: random resized crops + flips, DSA where asked), optionally mixes them
(cutmix / mixup), asks the teacher (the observer unless told otherwise) for its softened
prediction of exactly those views, and trains the verifier with KL divergence at
temperature T (the paper's Eq. 9; SRe2L/RDED relabel). ``stored`` soft labels instead keep
one label per region, computed once, and mix them with the images.

Region sampling respects the tile layout of squeezed sets (``DistilledSet.tile_grid``):

- ``whole``: views of the whole distilled image.
- ``tiles``: every tile expanded back to full size (the paper's expand operator) is its own
  training sample.
- ``tile-crops``: random resized crops taken inside a tile.
- ``auto``: ``tiles`` for squeezed sets, ``whole`` otherwise (measured: see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddbench.contracts import DistilledSet, EvalContext, EvalResult
from ddbench.evaluators.augment import build_augmentation
from ddbench.evaluators.regions import REGION_MODES, region_augmentation, resolve_region_mode, training_regions
from ddbench.evaluators.training import fit, total_steps
from ddbench.metrics import accuracy

MIXING = ("none", "cutmix", "mixup")
LABEL_SOURCES = ("online", "stored", "set")


@dataclass
class RelabelOptions:
    temperature: float = 4.0
    mixing: str = "cutmix"
    mix_alpha: float = 1.0  # Beta(alpha, alpha) for the mixing ratio
    # online: teacher on every view; stored: one teacher label per region, computed once;
    # set: the soft labels the distilled set carries (one per image, e.g. from another toolkit)
    label_source: str = "online"
    region_sampling: str = "auto"

    def __post_init__(self) -> None:
        for value, allowed, key in ((self.mixing, MIXING, "mixing"), (self.label_source, LABEL_SOURCES, "label_source"),
                                    (self.region_sampling, REGION_MODES, "region_sampling")):
            if value not in allowed:
                raise ValueError(f"relabel option {key}={value!r}: use one of {', '.join(allowed)}")
        if self.temperature <= 0:
            raise ValueError(f"relabel option temperature must be positive, got {self.temperature}")


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, scaled by T² (Hinton et al.)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature * temperature


def _mix(x: torch.Tensor, options: RelabelOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix a batch with a permutation of itself; the ratio is drawn on the CPU (no host sync)."""
    lam = float(torch.distributions.Beta(options.mix_alpha, options.mix_alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    if options.mixing == "mixup":
        return lam * x + (1 - lam) * x[perm], perm, torch.tensor(lam)
    height, width = x.shape[-2:]
    cut_h, cut_w = int(height * (1 - lam) ** 0.5), int(width * (1 - lam) ** 0.5)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, perm, torch.tensor(kept)


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())


class RelabelEvaluator:
    name = "relabel"
    options_class = RelabelOptions
    label_kind = "soft"

    def _options(self, context: EvalContext) -> RelabelOptions:
        return context.options if isinstance(context.options, RelabelOptions) else RelabelOptions()

    def total_work(self, distilled: DistilledSet, context: EvalContext) -> int:
        return total_steps(context.budget, len(distilled.images))

    def describe(self, distilled: DistilledSet, context: EvalContext) -> dict[str, object]:
        options = self._options(context)
        mode = resolve_region_mode(options.region_sampling, distilled.tile_grid)
        regions = len(training_regions(distilled, mode)[1])
        num_classes = context.dataset.num_classes
        steps = total_steps(context.budget, len(distilled.images))
        storage = {
            "hard": distilled.labels.numel() * 8,
            "stored": regions * num_classes * 4,
            "online_teacher": parameter_bytes(context.teacher) if context.teacher is not None else 0,
            "online_replayed_fp16": steps * min(context.budget.batch_size, regions) * num_classes * 2,
        }
        storage["set"] = regions * num_classes * 4 if options.label_source == "set" else 0
        chosen = {"stored": "stored", "set": "set"}.get(options.label_source, "online_teacher")
        return {
            "labels": f"soft ({options.label_source}, T={options.temperature:g}, {options.mixing}, regions={mode})",
            "region_sampling": mode,
            "label_storage_bytes": storage[chosen],
            "label_storage": storage,
        }

    def evaluate(self, distilled: DistilledSet, context: EvalContext) -> EvalResult:
        options = self._options(context)
        if context.teacher is None:
            raise ValueError("the relabel evaluator needs a teacher (the observer) for soft labels")
        device = context.device
        torch.manual_seed(context.seed)
        dataset = context.dataset
        mode = resolve_region_mode(options.region_sampling, distilled.tile_grid)
        regions, _ = training_regions(distilled, mode)
        regions = regions.to(device)
        augment = build_augmentation(region_augmentation(context.budget.augmentation, mode), dataset.image_size)
        teacher = context.teacher.eval()
        temperature = options.temperature
        stored = None
        if options.label_source == "stored":
            stored = self._stored_labels(teacher, regions, dataset.image_size, temperature)
        elif options.label_source == "set":
            stored = self._set_labels(distilled, mode, temperature).to(device)
        model = context.verifier_arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)

        def compute_loss(batch: torch.Tensor, net: nn.Module) -> torch.Tensor:
            views = augment(regions[batch])
            targets = None if stored is None else stored[batch]
            if options.mixing != "none":
                views, perm, kept = _mix(views, options)
                if targets is not None:
                    kept = kept.to(device)
                    targets = kept * targets + (1 - kept) * targets[perm]
            if targets is None:
                with torch.no_grad():
                    targets = F.softmax(teacher(views) / temperature, dim=1)
            return kd_loss(net(views), targets, temperature)

        fit(model, len(regions), context.budget, compute_loss, device, context.progress, epoch_size=len(distilled.images),
            cluster=context.cluster)
        test_accuracy = accuracy(model, dataset.test, device, context.budget.test_batch_size, cluster=context.cluster)
        return EvalResult(accuracy=test_accuracy, seed=context.seed)

    @staticmethod
    def _set_labels(distilled: DistilledSet, mode: str, temperature: float) -> torch.Tensor:
        """The set's own soft labels (probabilities per image), softened at T: softmax(log p / T)."""
        if distilled.stored_soft_labels is None:
            raise ValueError("relabel label_source=set: this distilled set carries no soft labels; "
                             "use label_source=online (the observer) instead")
        if mode != "whole":
            raise ValueError(f"relabel label_source=set gives one label per image; use region_sampling=whole (not {mode})")
        log_p = distilled.stored_soft_labels.float().clamp_min(1e-12).log()
        return F.softmax(log_p / temperature, dim=1)

    @staticmethod
    @torch.no_grad()
    def _stored_labels(teacher: nn.Module, regions: torch.Tensor, size: int, temperature: float) -> torch.Tensor:
        views = regions if regions.shape[-1] == size else F.interpolate(regions, size=(size, size), mode="bilinear", align_corners=False)
        return torch.cat([F.softmax(teacher(chunk) / temperature, dim=1) for chunk in views.split(256)])
