"""``dm``: Distribution Matching (Zhao & Bilen, WACV 2023, "Dataset Condensation with Distribution
Matching"), written from the paper through the public plugin API only.

Synthetic images start as real images of their class (seeded) and are optimised so that, for
a freshly initialised random network drawn every iteration, the mean embedding (the input of
the network's last linear layer) of each class's synthetic images matches that of a batch of
its real images, both under the same DSA transform:

    L = sum_c || mean_i psi(g(x_real_c,i)) - mean_j psi(g(s_c,j)) ||^2

with one SGD step (momentum 0.5) on the synthetic pixels per iteration. No observer is used
for distillation (its relabelling is the evaluator's business): DM runs under the ``train``
evaluator (hard labels, its own protocol) and under ``relabel``.

Defaults are the paper's: 20,000 iterations, image lr 1.0, 256 real images per class per
iteration, DSA ``color_crop_cutout_flip_scale_rotate``, and the ConvNet with instance norm as
the embedding network (``network = ""``: the observer's architecture, or its instance-norm twin
when the observer uses BatchNorm, e.g. ``convnet3-bn`` -> ``convnet3``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from baselines.dm_state import RealPool, RunState
from ddbench.api import (
    DSA, DistilledSet, Distiller, DistillTask, NonFiniteLossError, get_architecture, hookimpl, parse_strategy,
    registered_names, unit_generator,
)

DM_STRATEGY = "color_crop_cutout_flip_scale_rotate"
MOMENTUM = 0.5


@dataclass
class DMOptions:
    """Options of ``dm``.

    - ``iterations``: optimisation steps of the synthetic images (paper: 20000).
    - ``lr``: SGD learning rate of the synthetic pixels, momentum 0.5 (paper: 1.0).
    - ``batch_real``: real images per class drawn each iteration (paper: 256).
    - ``network``: embedding architecture drawn fresh every iteration ("": the observer's, or its instance-norm twin).
    - ``dsa_strategy``: DSA families applied to real and synthetic images alike (paper: color_crop_cutout_flip_scale_rotate).
    - ``init``: ``real`` (random real images of the class, the paper's) or ``noise``.
    """

    iterations: int = 20000
    lr: float = 1.0
    batch_real: int = 256
    network: str = ""
    dsa_strategy: str = DM_STRATEGY
    init: str = "real"

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"dm option iterations={self.iterations}: must be 0 or more")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"dm option lr={self.lr}: must be a positive finite number")
        if self.batch_real < 1:
            raise ValueError(f"dm option batch_real={self.batch_real}: must be at least 1")
        if self.init not in ("real", "noise"):
            raise ValueError(f"dm option init={self.init!r}: use real or noise")
        try:
            parse_strategy(self.dsa_strategy)
        except ValueError as exc:
            raise ValueError(f"dm option dsa_strategy={self.dsa_strategy!r}: {exc}") from None


def embedding_network(options: DMOptions, observer_arch) -> str:
    """The embedding architecture's name (see ``network``)."""
    if options.network:
        return options.network
    name = observer_arch.name
    if name.endswith("-bn") and name[:-3] in registered_names("architectures"):
        return name[:-3]
    return name


def embed(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The input of the network's last linear layer (its embedding), flattened: ``[B, D]``."""
    last = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured = []
    handle = last.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    try:
        network(images)
    finally:
        handle.remove()
    return captured[0].flatten(1)


# On CUDA a pass over a few hundred small images is mostly launch overhead, so the classes go
# through together, in passes no larger than the reference's CIFAR-10 pass (10 classes x 256
# images at 32 x 32). On the CPU larger passes are slower, not faster, so each class has its own
# (`benchmarks/test_dm_matching.py`, 10 classes x 64 digits at 16 px, two threads: 0.43 s a class per
# pass, 0.58 s all in one).
CUDA_PIXELS_PER_PASS = 10 * 256 * 32 * 32


def couples_samples(network: torch.nn.Module) -> bool:
    """True when a training-mode forward pass mixes the samples of its batch (BatchNorm statistics)."""
    return any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in network.modules())


def images_per_pass(network: torch.nn.Module, image_side: tuple[int, int], device: torch.device) -> int | None:
    """How many real images one forward pass takes (whole classes, at least one; ``None``: all).

    A network that couples samples sees every class in one pass, as the reference code runs
    BatchNorm networks; for any other the split changes only speed and memory."""
    if couples_samples(network):
        return None
    if device.type == "cuda":
        return max(1, CUDA_PIXELS_PER_PASS // (image_side[0] * image_side[1]))
    return 1


def class_means(embeddings: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Mean of each consecutive block of ``sizes`` rows: ``[len(sizes), D]``."""
    return torch.stack([block.mean(0) for block in embeddings.split(sizes)])


def embed_classes(network: torch.nn.Module, images: list[torch.Tensor], per_pass: int | None) -> torch.Tensor:
    """Embeddings of every class's images, the classes in order, in passes of whole classes of at
    most ``per_pass`` images (a class larger than that has a pass of its own; ``None``: one pass)."""
    if per_pass is None:
        return embed(network, torch.cat(images))
    passes, group, count = [], [], 0
    for block in images:
        if group and count + len(block) > per_pass:
            passes.append(embed(network, torch.cat(group)))
            group, count = [], 0
        group.append(block)
        count += len(block)
    passes.append(embed(network, torch.cat(group)))
    return torch.cat(passes)


def matching_loss(network: torch.nn.Module, real: list[torch.Tensor], synthetic: list[torch.Tensor],
                  per_pass: int | None | str = "auto") -> torch.Tensor:
    """Sum over classes of the squared distance between mean embeddings of real and synthetic.

    ``per_pass``: images per forward pass, for the real and then the synthetic images (see
    :func:`embed_classes`); ``"auto"``: :func:`images_per_pass` for this network and device."""
    if per_pass == "auto":
        per_pass = images_per_pass(network, tuple(synthetic[0].shape[-2:]), synthetic[0].device)
    with torch.no_grad():
        target = class_means(embed_classes(network, real, per_pass), [len(block) for block in real])
    mean_synthetic = class_means(embed_classes(network, synthetic, per_pass), [len(block) for block in synthetic])
    return (mean_synthetic - target).pow(2).sum()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Global RNG seeded for a network's initialisation, restored afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class DMDistiller(Distiller):
    """DM: synthetic images whose mean embeddings under random networks match the real class's."""

    name = "dm"
    options_class = DMOptions
    # 2: a BatchNorm network sees every class in one pass (statistics across classes, as the reference);
    # 3: on CUDA the embedding networks are initialised on the device, from CUDA's generator (the CPU's sets are unchanged)
    revision = 3

    def total_work(self, task: DistillTask) -> int:
        options: DMOptions = task.options if task.options is not None else DMOptions()
        return max(1, options.iterations)

    def distill(self, task: DistillTask) -> DistilledSet:
        options: DMOptions = task.options if task.options is not None else DMOptions()
        device = task.device
        arch = get_architecture(embedding_network(options, task.observer_arch))
        channels, height, width = task.image_shape
        pools = task.train_indices_by_class()
        generator = unit_generator(task.seed, "dm-init")
        if options.init == "real":
            picks = []
            for label, pool in pools.items():
                if len(pool) < task.ipc:
                    raise ValueError(f"dm needs {task.ipc} training images of class {label} to start from, it has "
                                     f"{len(pool)}; lower --ipc")
                picks.append(pool[torch.randperm(len(pool), generator=generator)[:task.ipc]])
            start = task.load_train(torch.cat(picks)).float()
        else:
            start = torch.randn(task.num_classes * task.ipc, channels, height, width, generator=generator).to(device)
        synthetic = start.detach().clone().requires_grad_(True)
        optimizer = torch.optim.SGD([synthetic], lr=options.lr, momentum=MOMENTUM)
        dsa = DSA(options.dsa_strategy)
        real_pool = RealPool(task, pools)
        draws = unit_generator(task.seed, "dm-steps")
        trace = torch.zeros(options.iterations, device=device)
        state = RunState(task, synthetic, optimizer, draws, trace)
        first = state.restore()
        if first:
            task.progress_resumed(first)  # the iterations a stopped run did
        for it in range(first, options.iterations):
            with seeded(int(torch.randint(0, 2**31 - 1, (1,), generator=draws)), device), torch.device(device):
                network = arch.build(channels, task.num_classes, height)  # on the device: no copy, no host wait
            network.train()
            for parameter in network.parameters():
                parameter.requires_grad_(False)
            positions, params = [], []
            for pool in pools.values():  # every draw of the iteration first, in class order
                positions.append(torch.randperm(len(pool), generator=draws)[:options.batch_real])
                params.append(dsa.draw((1, channels, height, width), draws, siamese=True, device=device))
            with torch.no_grad():
                real = dsa.apply_each(real_pool.draw(positions), params)
            syn = dsa.apply_each([synthetic[label * task.ipc:(label + 1) * task.ipc] for label in pools], params)
            loss = matching_loss(network, real, syn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            trace[it] = loss.detach()
            task.progress(1)
            state.save_if_due(it + 1)
        finite = bool(torch.isfinite(trace).all()) if options.iterations else True  # one read at the end
        if not finite:
            raise NonFiniteLossError(f"dm: the matching loss became NaN or infinite; lower dm.lr (now {options.lr})")
        points = sorted({0, options.iterations - 1, *range(0, options.iterations, max(1, options.iterations // 10))}) \
            if options.iterations else []
        return DistilledSet(
            images=synthetic.detach().cpu().float(),
            labels=torch.arange(task.num_classes, dtype=torch.int64).repeat_interleave(task.ipc),
            method=self.name, soft_labels="observer",
            options={"network": arch.name},
            extras={"loss_trace": {"iterations": points, "loss": trace[points].tolist() if points else []},
                    "real_images": real_pool.where},
        )


@hookimpl
def register_distillers(register):
    register(DMDistiller())
