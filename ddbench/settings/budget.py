"""Evaluation budgets: named, versioned presets printed beside every result.

``paper`` is the paper's Table 4 (AdamW, lr 1e-3, weight decay 1e-4, MultiStepLR, 1000
epochs; ``paper-imagenet`` has 300). Where the paper is silent (batch size, milestones) the
value is ours and the preset says so in ``notes``. ``quick`` is sized for a CPU. Any field
can be overridden (``--budget-set epochs=300``): the preset name then gains a ``*``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ddbench.settings.options import apply_overrides


# the verifier's training augmentation, as the budget names it (see ddbench.evaluators.augment)
PARTS = ("none", "flip", "crop", "dsa")


def parse_augmentation(spec: str) -> list[str]:
    parts = [part.strip() for part in spec.split("+") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise ValueError(f"unknown augmentation {spec!r}: use '+'-joined parts from {', '.join(PARTS)}")
    return [part for part in parts if part != "none"]


@dataclass(frozen=True)
class EvalBudget:
    preset: str
    version: int
    epochs: int
    batch_size: int
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "multistep"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs
    gamma: float = 0.1
    augmentation: str = "dsa"  # '+'-joined: crop, flip, dsa; or none
    test_batch_size: int = 500
    # auto: bfloat16 autocast on CUDA, float32 elsewhere, channels-last everywhere; resolved per run (see resolve_for)
    precision: str = "auto"  # auto, fp32 or bf16
    channels_last: str = "auto"  # auto, on or off
    compile: str = "off"  # opt-in torch.compile of the verifier: off, on (= inductor) or a backend name
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.channels_last not in SWITCHES:
            problems.append(f"channels_last={self.channels_last!r}: use one of {', '.join(SWITCHES)}")
        if self.compile not in COMPILE_BACKENDS:
            problems.append(f"compile={self.compile!r}: use one of {', '.join(COMPILE_BACKENDS)}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler={self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr={self.lr}: must be a positive finite number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay={self.weight_decay}: must be a finite number >= 0")
        if not all(0 < m <= 1 for m in self.milestones):
            problems.append(f"milestones={','.join(map(str, self.milestones))}: fractions of the epochs in (0, 1]")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            problems.append(f"gamma={self.gamma}: the lr factor at each milestone, in (0, 1]")
        if self.epochs < 1 or self.batch_size < 1 or self.test_batch_size < 1:
            problems.append(f"epochs, batch_size and test_batch_size must be >= 1, got {self.epochs}, {self.batch_size}, "
                            f"{self.test_batch_size}")
        try:
            parse_augmentation(self.augmentation)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise BudgetError("; ".join(problems))

    def resolve_for(self, device) -> "EvalBudget":
        """``auto`` settings made concrete for ``device`` (so they are recorded and keyed as used):
        bfloat16 autocast on CUDA (where the GPU supports it), float32 elsewhere; channels-last on
        every device (on the CPU oneDNN trains the ConvNets and MobileNet-V2 1.2-1.6x faster per step
        in it: ``benchmarks/test_channels_last.py``)."""
        cuda = getattr(device, "type", str(device)) == "cuda"
        precision, channels_last = self.precision, self.channels_last
        if precision == "auto":
            import torch

            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if channels_last == "auto":
            channels_last = "on"
        if precision == "bf16" and not cuda:
            raise BudgetError("budget precision=bf16 (bfloat16 autocast) is for CUDA devices; use precision=fp32 or auto")
        return dataclasses.replace(self, precision=precision, channels_last=channels_last)

    def milestone_epochs(self) -> list[int]:
        """The epochs after which a ``multistep`` schedule drops the lr: the milestones (fractions
        of the epochs) rounded to whole epochs, at least 1; two that round alike are one drop."""
        return sorted(set(self._rounded_milestones()))

    def _rounded_milestones(self) -> list[int]:
        return [max(1, int(round(m * self.epochs))) for m in self.milestones]

    def milestone_note(self) -> str:
        """A sentence naming where a ``multistep`` schedule's lr drops when rounding to whole
        epochs moves a milestone by more than 1 % of the training or merges two (few epochs:
        ``epochs=3`` drops once, after the second); empty otherwise."""
        if self.scheduler != "multistep":
            return ""
        drops = self.milestone_epochs()
        moved = any(abs(rounded - m * self.epochs) > 0.01 * self.epochs
                    for m, rounded in zip(self.milestones, self._rounded_milestones()))
        if not moved and len(drops) == len(set(self.milestones)):
            return ""
        where = ", ".join(map(str, drops))
        return (f"The lr drops after epoch{'s' if len(drops) > 1 else ''} {where} of {self.epochs}: milestones "
                f"{', '.join(f'{m:g}' for m in self.milestones)} rounded to whole epochs.")

    def steps_per_epoch(self, num_images: int) -> int:
        return max(1, -(-num_images // self.batch_size))

    def describe(self) -> dict[str, object]:
        described = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "notes"}
        if described["compile"] == "off":  # keys and tables from before the option stay as they were
            del described["compile"]
        return described


OPTIMIZERS = ("adamw", "adam", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")
# torch.compile backends: "on" is torch's default (inductor, needs a C++ compiler on the CPU);
# "eager" and "aot_eager" trace with Dynamo only (for checking a model compiles).
COMPILE_BACKENDS = ("off", "on", "inductor", "aot_eager", "eager", "cudagraphs")
SCHEDULERS = ("multistep", "cosine", "constant")


class BudgetError(ValueError):
    pass


PRESETS: dict[str, EvalBudget] = {
    "paper": EvalBudget(
        preset="paper", version=1, epochs=1000, batch_size=64,
        notes="Table 4b of the paper; batch size and milestones (0.5, 0.75 of the epochs) are ours.",
    ),
    "paper-imagenet": EvalBudget(
        preset="paper-imagenet", version=1, epochs=300, batch_size=64,
        notes="Table 4a of the paper (ImageNet-1K); batch size and milestones are ours.",
    ),
    "quick": EvalBudget(
        preset="quick", version=1, epochs=150, batch_size=50,
        notes="Sized for a CPU: 300 steps at 100 images. Same optimiser as the paper.",
    ),
}


def resolve_budget(name: str, overrides: list[str] | None = None) -> EvalBudget:
    """The preset called ``name`` with ``KEY=VALUE`` overrides applied."""
    if name not in PRESETS:
        raise BudgetError(f"unknown budget preset {name!r}; available: {', '.join(PRESETS)}")
    budget = PRESETS[name]
    if overrides:
        try:
            budget = apply_overrides(budget, overrides, what=f"budget {name!r}", frozen_fields=("preset", "version", "notes"))
        except ValueError as exc:
            raise BudgetError(str(exc)) from None
        if budget != PRESETS[name]:  # values equal to the preset's keep its name (a config file lists them all)
            budget = dataclasses.replace(budget, preset=f"{name}*", notes=changed_notes(PRESETS[name], budget))
    return budget


def changed_notes(preset: EvalBudget, budget: EvalBudget) -> str:
    """The preset's notes, followed by what this budget changed (the notes describe the preset's
    own values, so a table showing them beside changed values must say so)."""
    before, after = preset.describe(), budget.describe()
    changes = [f"{key} {before.get(key)} -> {value}" for key, value in after.items()
               if key != "preset" and before.get(key) != value]
    note = budget.milestone_note()
    return f"{preset.notes} Changed from the preset {preset.preset!r}: {', '.join(changes)}.{' ' + note if note else ''}"
