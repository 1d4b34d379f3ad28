"""``relabel``: train a fresh verifier on the distilled set with the observer's soft labels.

Each step takes a batch of training *regions* of the distilled images, augments them (the
budget's augmentation: random resized crops + flips, DSA where asked), optionally mixes them
(cutmix / mixup), asks the teacher (the observer unless told otherwise) for its softened
prediction of exactly those views, and trains the verifier with KL divergence at
temperature T (``loss=kl``: the paper's Eq. 9; SRe2L/RDED relabel) or with the mean squared
error between the verifier's and the teacher's logits (``loss=mse-logits``: the authors'
successor code, LINs-lab/CIM, ``data/utils/evaluator.py``). ``stored`` soft labels instead
keep one target per region, computed once, and mix them with the images.

Region sampling respects the tile layout of squeezed sets (``DistilledSet.tile_grid``):

- ``whole``: views of the whole distilled image.
- ``tiles``: every tile expanded back to full size (the paper's expand operator) is its own
  training sample.
- ``tile-crops``: random resized crops taken inside a tile.
- ``factor-crop``: a share (``factor_fraction``) of the batches made of one random expanded
  tile per image, the rest of whole images (CIM's and RDED's factor crop).
- ``auto``: ``tiles`` for squeezed sets, ``whole`` otherwise (measured: see the README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddbench.augment.cutmix import cutmix_box, paste_box
from ddbench.contracts import DistilledSet, EvalContext, EvalResult
from ddbench.plugin_base import Evaluator
from ddbench.evaluators.augment import build_augmentation
from ddbench.evaluators.regions import RegionOptions, region_augmentation, region_count, resolve_region_mode
from ddbench.evaluators.training import fit, total_steps
from ddbench.runtime.metrics import accuracy

MIXING = ("none", "cutmix", "mixup")
LABEL_SOURCES = ("online", "stored", "set")
LOSSES = ("kl", "mse-logits")


@dataclass
class RelabelOptions(RegionOptions):
    temperature: float = 4.0  # kl: the softening temperature T (mse-logits ignores it)
    loss: str = "kl"  # kl: KL(teacher_T || student_T) * T^2; mse-logits: MSE between the logits
    mixing: str = "cutmix"
    mix_alpha: float = 1.0  # Beta(alpha, alpha) for the mixing ratio
    # online: teacher on every view; stored: one teacher label per region, computed once;
    # set: the soft labels the distilled set carries (one per image, e.g. from another toolkit)
    label_source: str = "online"

    def __post_init__(self) -> None:
        self.check_regions("relabel")
        for value, allowed, key in ((self.mixing, MIXING, "mixing"), (self.label_source, LABEL_SOURCES, "label_source"),
                                    (self.loss, LOSSES, "loss")):
            if value not in allowed:
                raise ValueError(f"relabel option {key}={value!r}: use one of {', '.join(allowed)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"relabel option temperature must be a positive finite number, got {self.temperature}")
        if not (math.isfinite(self.mix_alpha) and self.mix_alpha > 0):
            raise ValueError(f"relabel option mix_alpha must be a positive finite number, got {self.mix_alpha}")
        if self.loss == "mse-logits" and self.label_source == "set":
            raise ValueError("relabel option loss=mse-logits needs the teacher's logits, but label_source=set gives "
                             "probabilities; use loss=kl with label_source=set")
        if self.region_sampling == "factor-crop" and self.label_source != "online":
            raise ValueError(f"relabel option region_sampling=factor-crop draws whole images or tiles per batch, so "
                             f"label_source={self.label_source} (one label per region) cannot follow; use label_source=online")


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at temperature T, scaled by T² (Hinton et al.)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature * temperature


def teacher_targets(teacher_logits: torch.Tensor, options: RelabelOptions) -> torch.Tensor:
    """What the loss compares the verifier with: probabilities at T (kl) or the logits (mse-logits)."""
    if options.loss == "mse-logits":
        return teacher_logits.float()
    return F.softmax(teacher_logits / options.temperature, dim=1)


def distillation_loss(student_logits: torch.Tensor, targets: torch.Tensor, options: RelabelOptions) -> torch.Tensor:
    """``loss=kl``: :func:`kd_loss`; ``loss=mse-logits``: mean squared error over batch and classes."""
    if options.loss == "mse-logits":
        return F.mse_loss(student_logits, targets)
    return kd_loss(student_logits, targets, options.temperature)


def _mix(x: torch.Tensor, options: RelabelOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix a batch with a permutation of itself; the ratio is drawn on the CPU (no host sync)."""
    lam = float(torch.distributions.Beta(options.mix_alpha, options.mix_alpha).sample())
    perm = torch.randperm(x.shape[0], device=x.device)
    if options.mixing == "mixup":
        return lam * x + (1 - lam) * x[perm], perm, torch.tensor(lam)
    height, width = x.shape[-2:]
    top, bottom, left, right = box = cutmix_box(height, width, 1 - lam)
    kept = 1 - (bottom - top) * (right - left) / (height * width)
    return paste_box(x, perm, box), perm, torch.tensor(kept)


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())


class RelabelEvaluator(Evaluator):
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
        regions = region_count(distilled, mode)
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
        loss = f"T={options.temperature:g}" if options.loss == "kl" else "mse-logits"
        if mode == "factor-crop":
            mode_text = f"factor-crop {options.factor_fraction:g}"
        else:
            mode_text = mode
        return {
            "labels": f"soft ({options.label_source}, {loss}, {options.mixing}, regions={mode_text})",
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
        sampler = options.sampler(distilled, device)
        augment = build_augmentation(region_augmentation(context.budget.augmentation, sampler.mode), dataset.image_size)
        teacher = context.teacher.eval()
        stored = None
        if options.label_source == "stored":
            stored = self._stored_targets(teacher, sampler, dataset.image_size, options)
        elif options.label_source == "set":
            stored = self._set_labels(distilled, sampler.mode, options.temperature).to(device)
        model = context.verifier_arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)

        def compute_loss(batch: torch.Tensor, net: nn.Module) -> torch.Tensor:
            views = augment(sampler.gather(batch))
            targets = None if stored is None else stored[batch.to(device, non_blocking=True)]
            if options.mixing != "none":
                views, perm, kept = _mix(views, options)
                if targets is not None:
                    kept = kept.to(device)
                    targets = kept * targets + (1 - kept) * targets[perm]
            if targets is None:
                with torch.no_grad():
                    targets = teacher_targets(teacher(views), options)
            return distillation_loss(net(views), targets, options)

        fit(model, sampler.num_samples, context.budget, compute_loss, device, context.progress,
            epoch_size=len(distilled.images), cluster=context.cluster, index_device=sampler.index_device)
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
    def _stored_targets(teacher: nn.Module, sampler, size: int, options: RelabelOptions) -> torch.Tensor:
        """One target per region, computed once in chunks (probabilities at T, or logits)."""
        def resized(views: torch.Tensor) -> torch.Tensor:
            if views.shape[-1] == size:
                return views
            return F.interpolate(views, size=(size, size), mode="bilinear", align_corners=False)

        return torch.cat([teacher_targets(teacher(resized(chunk)), options) for chunk in sampler.all_samples()])
