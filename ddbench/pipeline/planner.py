"""``ddbench run ... --plan SHAPE``: what a run will cost, before it runs, from shapes alone.

For a dataset given by its shape (a preset such as ``imagenet-1k``, or
``classes=1000,train=1281167,test=50000,size=224,channels=3``) no data is read: every stage
of the run (decoding, observer training, each method's distillation, each evaluation seed)
is listed with the forward and backward passes it takes (one pass = one image through the
network) and its peak memory. Memory comes from one probe forward of each network at the
given size (the outputs of every layer, kept for the backward pass) and the parameters with
their optimiser state; a method contributes its own stages through an optional
``plan_stages(options, shape)`` (LIC and SRe2L have one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PRESETS = {
    "imagenet-1k": {"classes": 1000, "train": 1281167, "test": 50000, "size": 224, "channels": 3},
    "tiny-imagenet": {"classes": 200, "train": 100000, "test": 10000, "size": 64, "channels": 3},
    "cifar100": {"classes": 100, "train": 50000, "test": 10000, "size": 32, "channels": 3},
    "cifar10": {"classes": 10, "train": 50000, "test": 10000, "size": 32, "channels": 3},
}


@dataclass(frozen=True)
class PlanShape:
    classes: int
    train: int
    test: int
    size: int
    channels: int

    @property
    def image(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


def parse_shape(text: str) -> PlanShape:
    """A preset name or ``key=value`` pairs (classes, train, test, size, channels)."""
    if text in PRESETS:
        return PlanShape(**PRESETS[text])
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, raw = part.partition("=")
        if key not in PlanShape.__dataclass_fields__ or not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"--plan {text!r}: use a preset ({', '.join(PRESETS)}) or classes=N,train=N,test=N,size=N,"
                             f"channels=N with positive integers")
        values[key] = int(raw)
    missing = sorted(set(PlanShape.__dataclass_fields__) - set(values))
    if missing:
        raise ValueError(f"--plan {text!r}: missing {', '.join(missing)}")
    return PlanShape(**values)


def layer_output_bytes(model: nn.Module, image: tuple[int, int, int], stop_at: str | None = None,
                       largest: bool = False) -> int:
    """Bytes of every leaf layer's output for ONE image (what a backward pass keeps), by a probe
    forward on the CPU; ``stop_at``: the forward stops after that named layer; ``largest``: the
    largest single output instead (what a forward without gradients holds at a time)."""
    from ddbench.models.features import layer_output_sizes

    sizes = layer_output_sizes(model.eval(), torch.zeros(1, *image), stop_at=stop_at)
    return max(sizes, default=0) if largest else sum(sizes)


def inference_memory(model: nn.Module, image: tuple[int, int, int], batch: int) -> int:
    """Weights, plus a batch's largest layer input and output alive at once."""
    return parameter_bytes(model) + 2 * batch * layer_output_bytes(model, image, largest=True)


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def training_memory(model: nn.Module, image: tuple[int, int, int], batch: int) -> int:
    """Weights, gradients and two optimiser moments, plus the batch's activations kept and their gradients."""
    return 4 * parameter_bytes(model) + 2 * batch * layer_output_bytes(model, image) + batch * 4 * math.prod(image)


def stage(name: str, forward: int, backward: int, memory: int, note: str = "") -> dict[str, Any]:
    return {"stage": name, "forward_passes": int(forward), "backward_passes": int(backward), "peak_memory_bytes": int(memory),
            "note": note}


def estimate_run(config: Any, plan: Any, shape: PlanShape) -> list[dict[str, Any]]:
    """Every stage of ``ddbench run`` for ``config`` (methods resolved in ``plan``) on ``shape``."""
    from ddbench.evaluators.regions import DEVICE_SET_BYTES
    from ddbench.observer import default_recipe
    from ddbench.settings.observer_fields import recipe_overrides

    image = shape.image
    observer = plan.observer_arch.build(shape.channels, shape.classes, shape.size)
    verifier = plan.verifier_arch.build(shape.channels, shape.classes, shape.size)
    recipe = default_recipe(config.dataset, **recipe_overrides(config))
    pixels = shape.train * math.prod(image)
    budget = int(getattr(config, "data_memory_gib", 2.0) * 2**30)
    stages = [stage("decode training images", 0, 0, pixels if pixels <= budget else 0,
                    f"{shape.train} images held as 8-bit pixels ({pixels / 2**30:.1f} GiB)" if pixels <= budget else
                    f"{pixels / 2**30:.1f} GiB of pixels > --data-memory-gib: streamed, decoded every epoch"),
              stage(f"observer {plan.observer_arch.name}: {recipe.epochs} epochs", recipe.epochs * shape.train,
                    recipe.epochs * shape.train, training_memory(observer, image, recipe.batch_size),
                    f"batch {recipe.batch_size}; skipped when cached"),
              stage("observer test accuracy", shape.test, 0, inference_memory(observer, image, 500), "batch 500")]
    images = config.ipc * shape.classes
    for name, distiller in plan.distillers.items():
        rows = distiller.plan_stages(plan.method_options[name], {"shape": shape, "ipc": config.ipc, "observer": observer,
                                                                 "arch": plan.observer_arch, "dataset": config.dataset})
        if rows is None:
            stages.append(stage(f"{name}: distill", 0, 0, 0, "the method declares no estimate (plan_stages)"))
        else:
            stages.extend({**row, "stage": f"{name}: {row['stage']}"} for row in rows)
    budget_ = config.budget
    steps = budget_.epochs * budget_.steps_per_epoch(images)
    batch = min(budget_.batch_size, images)
    set_bytes = images * 4 * math.prod(image)
    soft = plan.evaluator.name != "train"
    memory = training_memory(verifier, image, batch) + (inference_memory(observer, image, batch) if soft else 0)
    memory += set_bytes if set_bytes <= DEVICE_SET_BYTES else 0
    stages.append(stage(f"evaluate ({plan.evaluator.name}), per method and seed: {steps} steps", steps * batch * (2 if soft else 1),
                        steps * batch, memory,
                        f"batch {batch}; + {shape.test} test passes; the set ({set_bytes / 2**20:.0f} MiB) "
                        + ("on the device" if set_bytes <= DEVICE_SET_BYTES else "in host memory, batches copied")))
    return stages


def plan_table(stages: list[dict[str, Any]], title: str):
    from rich.table import Table

    from ddbench.reporting.console import format_bytes

    table = Table(title=title)
    for column, justify in (("stage", "left"), ("forward passes", "right"), ("backward passes", "right"),
                            ("peak memory", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    for row in stages:
        table.add_row(row["stage"], f"{row['forward_passes']:,}", f"{row['backward_passes']:,}",
                      format_bytes(row["peak_memory_bytes"]) if row["peak_memory_bytes"] else "-", row["note"])
    return table
