"""Observers: a model trained on the full training set that every method in a comparison
shares (it scores, aligns, recovers from and relabels).

An observer is trained once per (training images, image size, architecture, seed, recipe)
and cached as a safetensors file whose header holds its class map, recipe, image shape,
normalisation, test accuracy and the identity of the exact images it was trained on
(:mod:`ddbench.data.identity`): the cache name holds that identity's digest, so another
folder of the same class names or another validation split never reuses it, and a run that
holds out validation images refuses an observer that saw any of them. Loading never executes
pickled code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ddbench.contracts import ArchitectureSpec
from ddbench.data.base import Dataset
from ddbench.data.batches import BatchReader
from ddbench.data.identity import describe_record
from ddbench.evaluators.training import compiled, precision_context
from ddbench.store.io import TORCH_SUFFIXES, ArtifactError, read_metadata
from ddbench.runtime.metrics import accuracy
from ddbench.settings.observer_fields import recipe_overrides
from ddbench.observer_files import (TORCH_STATE_DICT, _freeze, check_cached, load_observer_checkpoint, observer_metadata,
                                    save_observer, training_run)

CACHE_ENV = "DDBENCH_CACHE"


@dataclass(frozen=True)
class ObserverRecipe:
    """How an observer is trained: SGD with momentum and a cosine schedule."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True  # random horizontal flips (off for digits)
    shift: float = 0.0  # > 0: random shift crops of up to this fraction of the side (CIFAR's pad-4 crops: 0.125)
    low_res: float = 0.0  # > 0: this share of the training views shrunk to half the side and enlarged back
    version: int = 1
    precision: str = "fp32"  # fp32, or bf16: bfloat16 autocast of the forward passes (CUDA)
    channels_last: bool = False  # the channels-last memory format (CUDA)
    compile: str = "off"  # opt-in torch.compile backend (see ddbench.settings.budget.COMPILE_BACKENDS)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"observer epochs (--observer-epochs) and batch_size must be at least 1, got {self.epochs} "
                             f"and {self.batch_size}: an untrained observer scores and labels nothing")
        if not 0.0 <= self.shift < 0.5:
            raise ValueError(f"observer shift (--observer-shift) is a fraction of the image side in [0, 0.5), got "
                             f"{self.shift}: 0 for flips only, 0.125 for CIFAR's pad-4 crops at 32 px")
        if not 0.0 <= self.low_res <= 1.0:
            raise ValueError(f"observer low_res (--observer-low-res) is the share of training views shown at half "
                             f"resolution, in [0, 1], got {self.low_res}: 0 for none, 0.5 for half of them")

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        for name, default in (("precision", "fp32"), ("channels_last", False), ("compile", "off"), ("shift", 0.0),
                              ("low_res", 0.0)):  # keys from before these fields hold
            if fields[name] == default:
                del fields[name]
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


# Per-dataset defaults, chosen to reach a useful observer in reasonable time on a CPU.
DEFAULT_EPOCHS = {"digits": 15, "mnist": 2, "fashion-mnist": 2, "cifar10": 30, "cifar100": 30}
NO_FLIP = {"digits", "mnist"}
# Random shift crops of up to an eighth of the side (CIFAR's RandomCrop(32, padding=4), how the
# teachers of SRe2L and RDED are trained) on the colour datasets: a teacher trained on shifted
# views labels the shifted, cut and blurred views that the relabel and LIC's Eq. 8 show it. On
# tiny-imagenet-10's validation split (32 px, IPC 10) it raised LIC's lead over random real
# images; on Fashion-MNIST's (28 px grey, 2 epochs) it lowered the observer by 1.9 points and
# both methods by 0.6 to 1.4, so the grey datasets keep flips only (README, "Observers").
DEFAULT_SHIFT = 0.125
NO_SHIFT = {"digits", "mnist", "fashion-mnist"}


def default_recipe(dataset_name: str, **overrides) -> ObserverRecipe:
    recipe = ObserverRecipe(epochs=DEFAULT_EPOCHS.get(dataset_name, 30), flip=dataset_name not in NO_FLIP,
                            shift=0.0 if dataset_name in NO_SHIFT else DEFAULT_SHIFT)
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def run_recipe(dataset_name: str, device: torch.device, budget=None, **overrides) -> ObserverRecipe:
    """The recipe ``ddbench run`` trains and caches its observer with on ``device``: the dataset's
    default with ``overrides`` (recipe fields; None keeps the default), and the budget's precision,
    memory format and compile backend as resolved there (``budget`` None: the default ``quick``
    budget). Every command that finds an observer in the cache (run, eval, bench, observer train,
    export) goes through here, so they all find the same one."""
    from ddbench.settings.budget import resolve_budget

    resolved = (budget if budget is not None else resolve_budget("quick")).resolve_for(device)
    return default_recipe(dataset_name, **overrides, precision=resolved.precision,
                          channels_last=resolved.channels_last == "on", compile=resolved.compile)


def observer_for(settings, dataset: Dataset, arch: ArchitectureSpec, device: torch.device, *, budget=None,
                 use_checkpoint: bool = True, progress_factory=None) -> "Observer":
    """The observer ``settings`` (anything with the ``OBSERVER_SETTINGS`` attributes) name for
    ``arch`` on ``dataset``: their checkpoint (unless ``use_checkpoint`` is False, for another
    architecture than the one it holds) or the cached or newly trained one of their seed and
    recipe (:func:`run_recipe` under ``budget``)."""
    checkpoint = settings.observer_checkpoint if use_checkpoint else None
    return get_observer(dataset, arch, device, seed=settings.observer_seed,
                        recipe=run_recipe(dataset.name, device, budget, **recipe_overrides(settings)),
                        cache=Path(settings.cache_dir) if settings.cache_dir else None,
                        checkpoint=Path(checkpoint) if checkpoint else None, progress_factory=progress_factory)


def cache_dir(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "ddbench"


@dataclass
class Observer:
    model: nn.Module
    arch: ArchitectureSpec
    checkpoint: Path
    test_accuracy: float
    recipe: dict
    seed: int
    trained_now: bool
    data: dict | None = None  # the data identity it was trained on (None: unknown, e.g. a .pt from elsewhere)
    recorded_accuracy: float | None = None  # what a loaded checkpoint's header claims (test_accuracy is re-measured)
    trained_with: dict | None = None  # device, torch version and CPU threads of its training (None: not recorded)

    def describe(self) -> dict[str, object]:
        recorded = {} if self.recorded_accuracy is None else {"recorded_accuracy": round(self.recorded_accuracy, 2)}
        return {**recorded,
            "architecture": self.arch.name,
            "checkpoint": str(self.checkpoint),
            "test_accuracy": round(self.test_accuracy, 2),
            "seed": self.seed,
            "recipe": self.recipe,
            "trained_now": self.trained_now,
            "trained_on": describe_record(self.data),
            "data": self.data,
            **({"trained_with": self.trained_with} if self.trained_with is not None else {}),
        }


def checkpoint_path(root: Path, dataset: Dataset, arch: ArchitectureSpec, seed: int, recipe: ObserverRecipe) -> Path:
    size = dataset.image_size
    data = str(dataset.identity()["train"])[:12]
    name = f"{dataset.name}{dataset.split_tag}-{size}px-{arch.name}-seed{seed}-{recipe.key()}-data{data}.safetensors"
    return root / "observers" / name


def shift_padding(shift: float, image_shape: tuple[int, int, int]) -> int:
    """Pixels of padding for shift crops of up to ``shift`` of the smaller side of ``(C, H, W)``
    images (rounded down: 4 at 32 px and 0.125, 3 at 28 px)."""
    return int(shift * min(image_shape[1:]))


def random_shift_crops(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image padded by ``padding`` zero pixels (the normalised mean) on every side and cropped
    back to its size at a random offset (torchvision's ``RandomCrop(size, padding)``), in one
    gather for the batch; offsets are drawn on the CPU ``generator``."""
    count, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (count, 2), generator=generator).to(images.device)
    rows = (offsets[:, 0].view(-1, 1) + torch.arange(height, device=images.device)).view(count, 1, height, 1)
    cols = (offsets[:, 1].view(-1, 1) + torch.arange(width, device=images.device)).view(count, 1, 1, width)
    batch = torch.arange(count, device=images.device).view(count, 1, 1, 1)
    channels = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch, channels, rows, cols]


def random_low_res(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Each image, with probability ``share`` (drawn on the CPU ``generator``), shrunk to half its
    side and enlarged back: the view of it that one tile of a 2 x 2 squeeze (LIC's N = 4, expanded
    by F^-1) shows a teacher. The other images pass unchanged."""
    from ddbench.tiles import as_tiles

    chosen = (torch.rand(len(images), generator=generator) < share).to(images.device)
    blurred = as_tiles(images, 2)
    return torch.where(chosen.view(-1, 1, 1, 1), blurred, images)


def train_observer(
    dataset: Dataset,
    arch: ArchitectureSpec,
    recipe: ObserverRecipe,
    seed: int,
    device: torch.device,
    progress: Callable[[int], None] = lambda n: None,
) -> nn.Module:
    """Train ``arch`` on every training image of ``dataset`` (one progress unit per step)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = precision_context(recipe.precision, device)
    net = compiled(model, recipe.compile)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(dataset.train) // recipe.batch_size)
    padding = shift_padding(recipe.shift, dataset.image_shape)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps_per_epoch)
    labels = dataset.train.labels
    reader = BatchReader(dataset.train, device)  # a streamed split is decoded ahead in worker processes
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(dataset.train), generator=generator)
        for batch, images in reader(order, recipe.batch_size):
            if recipe.flip:
                flip = (torch.rand(len(batch), generator=generator) < 0.5).to(device)
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            if padding:
                images = random_shift_crops(images, padding, generator)
            if recipe.low_res:
                images = random_low_res(images, recipe.low_res, generator)
            with autocast():
                loss = F.cross_entropy(net(images).float(), labels[batch].to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress(1)
    return _freeze(model.to(memory_format=torch.contiguous_format))


def get_observer(
    dataset: Dataset,
    arch: ArchitectureSpec,
    device: torch.device,
    seed: int = 0,
    recipe: ObserverRecipe | None = None,
    cache: Path | None = None,
    checkpoint: Path | None = None,
    progress_factory=None,
) -> Observer:
    """Load the observer from ``checkpoint`` or the cache, or train and cache it.

    ``progress_factory(description, total)`` returns a progress callback (for training).
    """
    if checkpoint is not None:
        model, meta = load_observer_checkpoint(Path(checkpoint), dataset, arch, device)
        return _loaded(model, meta, arch, Path(checkpoint), dataset, device)
    recipe = recipe or default_recipe(dataset.name)
    path = checkpoint_path(cache or cache_dir(), dataset, arch, seed, recipe)
    if path.exists():
        check_cached(read_metadata(path), dataset, path)
        model, meta = load_observer_checkpoint(path, dataset, arch, device)
        return _loaded(model, meta, arch, path, dataset, device, seed=seed)
    steps = recipe.epochs * -(-len(dataset.train) // recipe.batch_size)
    progress = progress_factory(f"observer {arch.name}", steps) if progress_factory else (lambda n: None)
    model = train_observer(dataset, arch, recipe, seed, device, progress)
    test_accuracy = accuracy(model, dataset.test, device)
    meta = observer_metadata(dataset, arch, dataclasses.asdict(recipe), seed, test_accuracy, training_run(device))
    save_observer(path, model, meta)
    return Observer(model, arch, path, test_accuracy, meta["recipe"], seed, True, meta["data"], trained_with=meta["trained_with"])


def load_teacher(path: Path, dataset: Dataset, device: torch.device) -> Observer:
    """A soft-label teacher other than the observer: any ddbench checkpoint, its architecture
    read from the file's metadata."""
    from ddbench.host.registry import get_architecture

    if Path(path).suffix in TORCH_SUFFIXES:
        raise ArtifactError(f"{path}: a .pt teacher names no architecture; save it as a ddbench observer "
                            f"(ddbench observer train, or --observer for a .pt observer of --arch)")
    arch = get_architecture(str(read_metadata(path).get("architecture")))
    model, meta = load_observer_checkpoint(path, dataset, arch, device)
    return _loaded(model, meta, arch, Path(path), dataset, device)


def _loaded(model: nn.Module, meta: dict, arch: ArchitectureSpec, path: Path, dataset: Dataset, device: torch.device,
            seed: int | None = None) -> Observer:
    """An observer read from a file: accuracy measured now, the rest from its header (``seed``: the cache name's)."""
    measured, recorded = _measured(model, meta, dataset, device)
    return Observer(model, arch, path, measured, meta.get("recipe", {}), meta.get("seed", -1) if seed is None else seed,
                    False, meta.get("data"), recorded, meta.get("trained_with"))


def _measured(model: nn.Module, meta: dict, dataset: Dataset, device: torch.device) -> tuple[float, float | None]:
    """(accuracy measured now on the evaluation split, the accuracy the file's header claims).
    A torch state dict claims nothing: its loader has just measured it, so that pass is reused."""
    if meta.get("format") == TORCH_STATE_DICT:
        return float(meta["test_accuracy"]), None
    value = meta.get("test_accuracy")
    return accuracy(model, dataset.test, device), float(value) if isinstance(value, (int, float)) else None
