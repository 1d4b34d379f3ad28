"""The verifier training loop every evaluator shares: optimiser, schedule, epochs, steps.

The loop never reads a value back to the host while training, so it runs at full speed on
a GPU; a non-finite loss is caught once per epoch from a flag kept on the device.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn

from ddbench.settings.budget import EvalBudget


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def make_optimizer(budget: EvalBudget, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if budget.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=budget.lr, weight_decay=budget.weight_decay)
    if budget.optimizer == "adam":
        return torch.optim.Adam(params, lr=budget.lr, weight_decay=budget.weight_decay)
    if budget.optimizer == "sgd":
        return torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=budget.weight_decay)
    raise ValueError(f"unknown optimizer {budget.optimizer!r}; use adamw, adam or sgd")


def make_scheduler(budget: EvalBudget, optimizer: torch.optim.Optimizer):
    """A per-epoch schedule."""
    if budget.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=budget.milestone_epochs(), gamma=budget.gamma)
    if budget.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=budget.epochs)
    if budget.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    raise ValueError(f"unknown scheduler {budget.scheduler!r}; use multistep, cosine or constant")


def compiled(model: nn.Module, backend: str) -> nn.Module:
    """``model`` through ``torch.compile`` (opt-in: ``backend`` "on" = torch's default, or a
    backend name), or ``model`` itself for "off". The compiled module shares the parameters."""
    if backend == "off":
        return model
    return torch.compile(model, backend="inductor" if backend == "on" else backend)


def precision_context(precision: str, device: torch.device):
    """A factory of the forward passes' autocast context: bfloat16 for ``precision="bf16"``
    (CUDA), else nothing. A budget's ``auto`` must be resolved first (``resolve_for``)."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def total_steps(budget: EvalBudget, epoch_size: int) -> int:
    return budget.epochs * budget.steps_per_epoch(epoch_size)


class SampleStream:
    """Indices into a pool of ``num_samples``, drawn as consecutive random permutations, so
    every sample is seen once before any is seen twice, whatever the epoch size. ``generator``:
    draw from it instead of the global generator (data-parallel ranks share one order)."""

    def __init__(self, num_samples: int, device: torch.device, generator: torch.Generator | None = None):
        self.num_samples = num_samples
        self.device = device
        self.generator = generator
        self.buffer = torch.empty(0, dtype=torch.int64, device=device)

    def take(self, count: int) -> torch.Tensor:
        while self.buffer.numel() < count:
            order = torch.randperm(self.num_samples, device=self.device, generator=self.generator)
            self.buffer = torch.cat([self.buffer, order])
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken


def fit(
    model: nn.Module,
    num_samples: int,
    budget: EvalBudget,
    compute_loss: Callable[[torch.Tensor, nn.Module], torch.Tensor],
    device: torch.device,
    progress: Callable[[int], None] = lambda n: None,
    what: str = "verifier",
    epoch_size: int | None = None,
    cluster: Any = None,
    index_device: torch.device | None = None,
) -> None:
    """Train ``model`` for ``budget.epochs`` epochs.

    ``num_samples`` is the size of the pool batches are drawn from (e.g. the tiles of a
    squeezed set); an epoch is ``epoch_size`` samples (default: the pool), so methods at the
    same IPC get the same number of steps whatever their region sampling.
    ``compute_loss(batch_indices, net)`` returns the loss of one mini-batch (indices on
    ``device``) computed with ``net``, which is ``model`` or its DistributedDataParallel wrapper.
    ``progress`` is advanced once per step. ``index_device``: where batch indices are drawn
    (default ``device``; a set kept in host memory is indexed on the CPU, so gathering a batch
    never waits for the GPU).

    ``cluster`` (a :class:`ddbench.runtime.distributed.Cluster` of several ranks): the ranks train one
    model with DistributedDataParallel; every rank draws the same batch order (a generator
    seeded from ``torch.initial_seed()``) and takes its share of each batch, so the global
    batch is ``budget.batch_size``.
    """
    if budget.channels_last == "on":
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(budget, model)
    scheduler = make_scheduler(budget, optimizer)
    autocast = precision_context(budget.precision, device)
    model.train()
    net, rank, world = model, 0, 1
    generator = None
    index_device = index_device or device
    if cluster is not None and cluster.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        rank, world = cluster.rank, cluster.world_size
        generator = torch.Generator(device=index_device).manual_seed(torch.initial_seed())
    net = compiled(net, budget.compile)  # after DDP, as torch's DDP + compile guide does
    finite = torch.ones((), dtype=torch.bool, device=device)
    stream = SampleStream(num_samples, index_device, generator)
    epoch_size = epoch_size or num_samples
    for epoch in range(budget.epochs):
        order = stream.take(epoch_size)
        steps = 0
        for batch in order.split(budget.batch_size):
            if len(batch) < world:  # too small to give every rank a share: every rank skips it alike
                continue
            with autocast():
                loss = compute_loss(batch[rank::world], net).float()
            finite &= torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        scheduler.step()
        progress(steps)
        if not bool(finite):  # one host sync per epoch
            raise NonFiniteLossError(f"{what} training loss became NaN or infinite in epoch {epoch + 1}")
