"""``sre2l``: the recover stage of SRe2L (Yin, Xing and Shen, "Squeeze, Recover and Relabel:
Dataset Condensation at ImageNet Scale From A New Perspective", NeurIPS 2023; official code
VILA-Lab/SRe2L), rewritten from the paper and the field notes.

Images start as Gaussian noise in normalised space and are optimised with Adam (betas
0.5, 0.9) under a per-iteration cosine learning rate to minimise

    CE(observer(jitter(x)), target) + r_bn * sum_l w_l (||mu_l(x) - mu_l||_2 + ||var_l(x) - var_l||_2)

where mu_l, var_l are the running statistics of the observer's l-th BatchNorm layer, the
batch statistics are those of that layer's input, and w_l is ``first_bn_multiplier`` for the
first BN layer and 1 for the others. Each iteration applies one random roll (and, for
ImageNet, one random resized crop) and one random horizontal flip to the whole batch; after
each step the images are clipped to the valid pixel range. The last iterate is kept.

A batch holds one image of every class in turn (SRe2L's layout), so the BatchNorm statistics
it matches are those of a class-balanced batch; the result is returned class-major. Each batch
("chunk") draws its noise and augmentations from its own generator
``unit_generator(seed, "sre2l-chunk", index)``, so chunks are independent units: a stopped run
resumes from its saved chunks with bit-identical images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.sre2l_config import SRE2L_DEFAULTS, resolve_config
from ddbench.api import (
    OBSERVER_MEMORY_FORMAT, ArchitectureSpec, DistilledSet, Distiller, DistillTask, hookimpl, NonFiniteLossError, registered_names, run_units, unit_generator,
)

FALLBACK_BN_ARCH = "resnet18"
CURVE_POINTS = 10  # BN loss recorded every 10% of the iterations


@dataclass
class SRe2LOptions:
    """SRe2L recover options. ``None`` takes the dataset family's official default
    (:data:`baselines.sre2l_config.SRE2L_DEFAULTS`).

    - ``lr``: Adam learning rate of the recovered images (None: the official one for the dataset).
    - ``iterations``: recover iterations per chunk (None: the official count for the dataset).
    - ``r_bn``: weight of the BatchNorm-statistics loss (None: official).
    - ``jitter``: pixels of random roll each way per iteration (None: official).
    - ``random_resized_crop``: a random resized crop per iteration (None: ImageNet only, as official).
    - ``batch_size``: images optimised together (each chunk mixes classes).
    - ``first_bn_multiplier``: extra weight of the first BatchNorm layer's loss (official: 10).
    """

    lr: float | None = None
    iterations: int | None = None
    r_bn: float | None = None
    jitter: int | None = None  # pixels of random roll, each way
    random_resized_crop: bool | None = None  # ImageNet only in the official settings
    batch_size: int = 100  # images optimised together (each chunk mixes classes)
    first_bn_multiplier: float = 10.0

    def __post_init__(self) -> None:
        import math

        for key in ("lr", "r_bn", "first_bn_multiplier"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0 and (key != "lr" or value > 0)):
                raise ValueError(f"sre2l option {key}={value}: must be a {'positive' if key == 'lr' else 'non-negative'} "
                                 f"finite number")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"sre2l option iterations={self.iterations}: must be at least 1")
        if self.jitter is not None and self.jitter < 0:
            raise ValueError(f"sre2l option jitter={self.jitter}: a number of pixels, 0 or more")
        if self.batch_size < 1:
            raise ValueError(f"sre2l option batch_size={self.batch_size}: must be at least 1")


class BNStatisticsLoss:
    """Forward hook on a ``BatchNorm2d``: distance of its input's batch statistics to its
    running statistics, ``||mean - running_mean||_2 + ||var - running_var||_2`` (biased var)."""

    def __init__(self, module: nn.BatchNorm2d) -> None:
        self.loss: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self.loss = (torch.linalg.vector_norm(mean - module.running_mean)
                     + torch.linalg.vector_norm(var - module.running_var))

    def remove(self) -> None:
        self.handle.remove()


def bn_architecture_for(arch: ArchitectureSpec) -> str:
    """A BatchNorm architecture to suggest instead of ``arch``: its ``-bn`` twin if registered."""
    twin = f"{arch.name}-bn"
    return twin if twin in registered_names("architectures") else FALLBACK_BN_ARCH


def _resized_crop_box(height: int, width: int, generator: torch.Generator,
                      scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop-style box, drawn on the CPU generator."""
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u_area, u_ratio, u_top, u_left = torch.rand(4, generator=generator).tolist()
        area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_low + (log_high - log_low) * u_ratio)
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    side = min(height, width)  # fallback: the central square
    return (height - side) // 2, (width - side) // 2, side, side


def jitter_batch(x: torch.Tensor, jitter: int, crop: bool, generator: torch.Generator) -> torch.Tensor:
    """One draw for the whole batch: optional random resized crop, roll by (dy, dx) in
    [-jitter, jitter], horizontal flip with probability 1/2. Draws happen on the CPU."""
    height, width = x.shape[-2:]
    if crop:
        top, left, h, w = _resized_crop_box(height, width, generator)
        x = F.interpolate(x[..., top:top + h, left:left + w], size=(height, width), mode="bilinear", align_corners=False)
    if jitter:
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if torch.rand(1, generator=generator).tolist()[0] < 0.5:
        x = torch.flip(x, dims=(3,))
    return x


class SRe2LDistiller(Distiller):
    """SRe2L's recover stage: images from noise by cross-entropy plus BatchNorm-statistics matching."""

    name = "sre2l"
    shardable = True  # its chunks are independent units: ranks under torchrun split them (by class-balanced chunk)
    revision = 2  # 2: one generator per chunk (1: one generator for the whole run)
    options_class = SRe2LOptions
    defaults = SRE2L_DEFAULTS

    def check_observer(self, arch: ArchitectureSpec) -> None:
        if not arch.has_batchnorm:
            raise ValueError(
                f"SRe2L matches BatchNorm running statistics and observer {arch.name!r} has no BatchNorm; "
                f"use --arch {bn_architecture_for(arch)}"
            )

    def _config(self, task: DistillTask) -> dict:
        options = task.options if task.options is not None else SRe2LOptions()
        return resolve_config(options, task.dataset.name, task.image_shape[-1])

    def default_iterations(self, task: DistillTask) -> tuple[int, str]:
        config = self._config(task)
        return config["iterations"], f"{self.name} default for this dataset ({config.get('family_reason') or 'its config'})"

    def total_work(self, task: DistillTask) -> int:
        config = self._config(task)
        return -(-task.ipc * task.num_classes // config["batch_size"]) * config["iterations"]

    def bench_reference(self, arch: str):
        """LIC's paper's Table 3 row for SRe2L (the figures LIC is compared against there)."""
        from ddbench.api import ReferenceFigure

        table = {"Conv-4": (51.68, 1.36), "ResNet-18": (191.14, 3.62), "MobileNet-V2": (114.05, 1.27)}
        paper_arch = {"convnet4": "Conv-4", "convnet4-bn": "Conv-4", "resnet18": "ResNet-18",
                      "mobilenetv2": "MobileNet-V2"}.get(arch)
        if paper_arch not in table:
            return None
        seconds, gigabytes = table[paper_arch]
        return ReferenceFigure("paper (RTX 4090)", seconds, gigabytes, note="LIC's paper, Table 3 (Tiny-ImageNet, GPU memory)",
                               extra={"architecture": paper_arch})

    def plan_stages(self, options: SRe2LOptions, spec: dict) -> list[dict]:
        """``ddbench run --plan``: recover passes and memory for a dataset given by its shape."""
        from ddbench.api import layer_output_bytes, parameter_bytes, stage

        shape = spec["shape"]
        config = resolve_config(options, spec["dataset"], shape.size)
        images = spec["ipc"] * shape.classes
        batch = min(config["batch_size"], images)
        memory = parameter_bytes(spec["observer"]) + 2 * batch * layer_output_bytes(spec["observer"], shape.image)
        return [stage(f"recover, {config['iterations']} iterations", config["iterations"] * images,
                      config["iterations"] * images, memory, f"chunks of {batch} images; {config['source']}")]

    def distill(self, task: DistillTask) -> DistilledSet:
        self.check_observer(task.observer_arch)
        config = self._config(task)
        observer = task.observer
        bn_layers = [m for m in observer.modules() if isinstance(m, nn.BatchNorm2d)]
        if not bn_layers or any(m.running_mean is None for m in bn_layers):
            raise ValueError(f"SRe2L needs BatchNorm2d layers with running statistics in the observer "
                             f"({task.observer_arch.name!r} has none); use --arch {FALLBACK_BN_ARCH}")
        device, (channels, height, width) = task.device, task.image_shape
        num_classes, ipc = task.num_classes, task.ipc
        low, high = (torch.tensor(b, dtype=torch.float32, device=device).view(1, -1, 1, 1)
                     for b in task.normalization.pixel_bounds())
        # SRe2L's layout: image j of every class, then image j + 1 ... (class-balanced chunks).
        targets = torch.arange(num_classes).repeat(ipc)

        hooks = [BNStatisticsLoss(m) for m in bn_layers]
        weights = [config["first_bn_multiplier"]] + [1.0] * (len(hooks) - 1)
        was_training = observer.training
        observer.eval()
        chunks = list(range(0, len(targets), config["batch_size"]))

        def compute(index: int) -> tuple[dict, dict]:
            # each chunk draws its noise and jitter from its own generator: chunks are independent units
            chunk_targets = targets[chunks[index]:chunks[index] + config["batch_size"]]
            generator = unit_generator(task.seed, "sre2l-chunk", index)
            noise = torch.randn(len(chunk_targets), channels, height, width, generator=generator)
            images, record = self._recover_chunk(
                observer, hooks, weights, noise.to(device), chunk_targets.to(device), low, high, config, generator, task)
            return {"images": images.float().cpu()}, {"chunk": index, "classes": sorted(set(chunk_targets.tolist())), **record}

        try:
            units = run_units(task, [f"chunk-{index:05d}" for index in range(len(chunks))], compute,
                              work=lambda index: config["iterations"])
        finally:
            for hook in hooks:
                hook.remove()
            observer.train(was_training)
        recovered = [tensors["images"] for tensors, _ in units]
        trace = [record for _, record in units]

        # [ipc, K, ...] in SRe2L's layout -> class-major [K * ipc, ...]
        images = torch.cat(recovered).view(ipc, num_classes, channels, height, width).transpose(0, 1)
        images = images.reshape(num_classes * ipc, channels, height, width).float().contiguous()
        labels = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(ipc)
        return DistilledSet(
            images=images,
            labels=labels,
            method=self.name,
            soft_labels="observer",
            tile_grid=1,
            options=dict(config),
            extras={"config": config, "loss_trace": trace, "chunk_layout": "image j of every class per chunk (SRe2L)"},
        )

    def _recover_chunk(self, observer, hooks, weights, noise, targets, low, high, config, generator, task):
        """Optimise one batch for ``iterations`` steps; returns (last iterate, loss record)."""
        iterations, lr = config["iterations"], config["lr"]
        x = noise.requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr, betas=(0.5, 0.9), eps=1e-8)
        every = max(1, iterations // CURVE_POINTS)
        curve_at = [it for it in range(iterations) if it % every == 0 or it == iterations - 1]
        curve, ends = [], []
        for it in range(iterations):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * it / iterations))
            for hook in hooks:
                hook.loss = None
            views = jitter_batch(x, config["jitter"], config["random_resized_crop"], generator)
            logits = observer(views.contiguous(memory_format=OBSERVER_MEMORY_FORMAT))
            ce = F.cross_entropy(logits, targets)
            bn = sum((w * h.loss for w, h in zip(weights, hooks) if h.loss is not None), ce.new_zeros(()))
            loss = ce + config["r_bn"] * bn
            # Gradients for the images only: the observer's weights never receive any.
            (x.grad,) = torch.autograd.grad(loss, [x])
            optimizer.step()
            with torch.no_grad():
                x.clamp_(min=low, max=high)
            if it == 0 or it == iterations - 1:
                ends.append(torch.stack([bn.detach(), ce.detach()]))
            if it in curve_at:
                curve.append(bn.detach())
            task.progress(1)
        (bn_first, ce_first), (bn_last, ce_last) = (ends[0], ends[-1]) if len(ends) > 1 else (ends[0], ends[0])
        first_last = torch.stack([bn_first, bn_last, ce_first, ce_last]).tolist()  # one read per chunk
        if not all(math.isfinite(v) for v in first_last):
            raise NonFiniteLossError(f"sre2l: the recovery loss became NaN or infinite (BN {bn_last}, CE {ce_last} at "
                                     f"the last of {iterations} iterations); lower sre2l.lr (now {lr})")
        record = dict(zip(("bn_loss_first", "bn_loss_last", "ce_first", "ce_last"), first_last))
        record.update(bn_loss_curve=torch.stack(curve).tolist(), bn_loss_curve_iterations=curve_at)
        return x.detach(), record


@hookimpl
def register_distillers(register):
    register(SRe2LDistiller())
