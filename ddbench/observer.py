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
from ddbench.data.identity import check_unseen, describe_record
from ddbench.data.batches import BatchReader
from ddbench.evaluators.training import compiled, precision_context
from ddbench.io import TORCH_SUFFIXES, ArtifactError, load_tensors, load_torch_file, read_metadata, save_tensors
from ddbench.metrics import accuracy

CACHE_ENV = "DDBENCH_CACHE"
FORMAT = "ddbench-observer/1"


@dataclass(frozen=True)
class ObserverRecipe:
    """How an observer is trained: SGD with momentum and a cosine schedule."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True  # random horizontal flips (off for digits)
    version: int = 1
    precision: str = "fp32"  # fp32, or bf16: bfloat16 autocast of the forward passes (CUDA)
    channels_last: bool = False  # the channels-last memory format (CUDA)
    compile: str = "off"  # opt-in torch.compile backend (see ddbench.budget.COMPILE_BACKENDS)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"an observer recipe needs epochs >= 1 and batch_size >= 1, got {self.epochs} and "
                             f"{self.batch_size}: an untrained observer scores and labels nothing")

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        for name, default in (("precision", "fp32"), ("channels_last", False), ("compile", "off")):  # keys from before these fields hold
            if fields[name] == default:
                del fields[name]
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


# Per-dataset defaults, chosen to reach a useful observer in reasonable time on a CPU.
DEFAULT_EPOCHS = {"digits": 15, "mnist": 2, "fashion-mnist": 2, "cifar10": 30, "cifar100": 30}
NO_FLIP = {"digits", "mnist"}


def default_recipe(dataset_name: str, **overrides) -> ObserverRecipe:
    recipe = ObserverRecipe(epochs=DEFAULT_EPOCHS.get(dataset_name, 30), flip=dataset_name not in NO_FLIP)
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


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
        }


class ObserverMismatchError(ValueError):
    """A checkpoint made for another dataset, class map, architecture or image shape."""


def checkpoint_path(root: Path, dataset: Dataset, arch: ArchitectureSpec, seed: int, recipe: ObserverRecipe) -> Path:
    size = dataset.image_size
    data = str(dataset.identity()["train"])[:12]
    name = f"{dataset.name}{dataset.split_tag}-{size}px-{arch.name}-seed{seed}-{recipe.key()}-data{data}.safetensors"
    return root / "observers" / name


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


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
            with autocast():
                loss = F.cross_entropy(net(images).float(), labels[batch].to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress(1)
    return _freeze(model.to(memory_format=torch.contiguous_format))


def observer_metadata(dataset: Dataset, arch: ArchitectureSpec, recipe: dict, seed: int, test_accuracy: float) -> dict:
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "trained_on": describe_record(dataset.identity()),
        "data": dataset.identity(),
        "architecture": arch.name,
        "class_names": list(dataset.class_names),
        "image_shape": list(dataset.image_shape),
        "normalization": {"mean": list(dataset.normalization.mean), "std": list(dataset.normalization.std)},
        "recipe": recipe,
        "seed": seed,
        "test_accuracy": test_accuracy,
    }


def check_compatible(meta: dict, dataset: Dataset, arch: ArchitectureSpec, path: Path) -> None:
    """Refuse a checkpoint whose class map, shape or architecture differs from this run's."""
    problems = []
    if meta.get("class_names") != list(dataset.class_names):
        problems.append(f"its class map {meta.get('class_names')} differs from {dataset.name}'s {list(dataset.class_names)}")
    if meta.get("image_shape") != list(dataset.image_shape):
        problems.append(f"it takes images of shape {meta.get('image_shape')}, the dataset gives {list(dataset.image_shape)}")
    if meta.get("architecture") != arch.name:
        problems.append(f"it is a {meta.get('architecture')}, not a {arch.name}")
    if problems:
        raise ObserverMismatchError(f"observer checkpoint {path} does not fit this run: " + "; ".join(problems))


EXPLICIT_FIX = ("drop --observer/--teacher so ddbench trains (and caches) one without the held-out images, or pass one "
                "trained for this split (ddbench saves the split in every observer it trains), or run without --validation")


def check_cached(meta: dict, dataset: Dataset, path: Path) -> None:
    """A cache file must hold an observer of exactly this run's training images."""
    recorded = (meta.get("data") or {}).get("train")
    if recorded != dataset.identity()["train"]:
        raise ObserverMismatchError(f"observer checkpoint {path} was trained on other images than this run's "
                                    f"(data digest {str(recorded)[:12]} vs {str(dataset.identity()['train'])[:12]}); "
                                    f"delete it and run again to retrain")


def state_dict_from_torch_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights (and an optional ``class_names`` list) from a ``.pt``/``.pth`` file, loaded with
    ``weights_only=True``: a bare state_dict, or a dict holding one under ``state_dict`` or
    ``model``; a ``module.`` prefix (DataParallel) is dropped."""
    content = load_torch_file(path)
    if isinstance(content, dict):
        for key in ("state_dict", "model"):
            if isinstance(content.get(key), dict):
                content, extra = content[key], content
                break
        else:
            extra = {}
    if not isinstance(content, dict) or not content or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ArtifactError(f"{path}: expected a state_dict (names -> tensors), or a dict with one under "
                            f"'state_dict' or 'model'")
    weights = {k.removeprefix("module."): v for k, v in content.items()}
    meta = {"class_names": extra.get("class_names")} if isinstance(extra.get("class_names"), list) else {}
    return weights, meta


def load_torch_observer(path: Path, dataset: Dataset, arch: ArchitectureSpec, device: torch.device) -> tuple[nn.Module, dict]:
    """An observer from a ``torch.save`` file made elsewhere: the architecture is this run's
    ``--arch``, the class count is checked through the weights' shapes (and the class map when the
    file has ``class_names``), and the test accuracy is measured now."""
    weights, extra = state_dict_from_torch_file(path)
    if "class_names" in extra and extra["class_names"] != list(dataset.class_names):
        raise ObserverMismatchError(f"observer checkpoint {path} does not fit this run: its class map "
                                    f"{extra['class_names']} differs from {dataset.name}'s {list(dataset.class_names)}")
    model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: its weights do not fit a {arch.name} for {dataset.num_classes} classes of "
                            f"shape {list(dataset.image_shape)} (set --arch to its architecture): {exc}") from None
    check_unseen(None, dataset, f"observer {path} (a torch state dict)", EXPLICIT_FIX)
    model = _freeze(model.to(device))
    meta = {"format": "torch-state-dict", "architecture": arch.name, "class_names": list(dataset.class_names),
            "test_accuracy": accuracy(model, dataset.test, device), "recipe": {}, "seed": -1}
    return model, meta


def load_observer_checkpoint(path: Path, dataset: Dataset, arch: ArchitectureSpec, device: torch.device) -> tuple[nn.Module, dict]:
    """A ddbench observer (safetensors with metadata), or a ``.pt``/``.pth`` state dict loaded with
    ``weights_only=True``. On a validation split, one that saw (or may have seen) a held-out
    image is refused (:func:`ddbench.data.identity.check_unseen`)."""
    if Path(path).suffix in TORCH_SUFFIXES:
        return load_torch_observer(Path(path), dataset, arch, device)
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a ddbench observer checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    check_compatible(meta, dataset, arch, path)
    check_unseen(meta.get("data"), dataset, f"observer {path}", EXPLICIT_FIX)
    model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: its weights do not fit a {arch.name}: {exc}") from exc
    return _freeze(model.to(device)), meta


def save_observer(path: Path, model: nn.Module, metadata: dict) -> None:
    save_tensors(path, model.state_dict(), metadata)


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
        return Observer(model, arch, Path(checkpoint), accuracy(model, dataset.test, device), meta.get("recipe", {}),
                        meta.get("seed", -1), False, meta.get("data"), _recorded(meta))
    recipe = recipe or default_recipe(dataset.name)
    path = checkpoint_path(cache or cache_dir(), dataset, arch, seed, recipe)
    if path.exists():
        check_cached(read_metadata(path), dataset, path)
        model, meta = load_observer_checkpoint(path, dataset, arch, device)
        return Observer(model, arch, path, accuracy(model, dataset.test, device), meta["recipe"], seed, False,
                        meta.get("data"), _recorded(meta))
    steps = recipe.epochs * -(-len(dataset.train) // recipe.batch_size)
    progress = progress_factory(f"observer {arch.name}", steps) if progress_factory else (lambda n: None)
    model = train_observer(dataset, arch, recipe, seed, device, progress)
    test_accuracy = accuracy(model, dataset.test, device)
    meta = observer_metadata(dataset, arch, dataclasses.asdict(recipe), seed, test_accuracy)
    save_observer(path, model, meta)
    return Observer(model, arch, path, test_accuracy, meta["recipe"], seed, True, meta["data"])


def load_teacher(path: Path, dataset: Dataset, device: torch.device) -> Observer:
    """A soft-label teacher other than the observer: any ddbench checkpoint, its architecture
    read from the file's metadata."""
    from ddbench.registry import get_architecture

    if Path(path).suffix in TORCH_SUFFIXES:
        raise ArtifactError(f"{path}: a .pt teacher names no architecture; save it as a ddbench observer "
                            f"(ddbench observer train, or --observer for a .pt observer of --arch)")
    arch = get_architecture(str(read_metadata(path).get("architecture")))
    model, meta = load_observer_checkpoint(path, dataset, arch, device)
    return Observer(model, arch, Path(path), accuracy(model, dataset.test, device), meta.get("recipe", {}),
                    meta.get("seed", -1), False, meta.get("data"), _recorded(meta))


def _recorded(meta: dict) -> float | None:
    """The accuracy a checkpoint's header claims (a number), kept beside the re-measured one."""
    value = meta.get("test_accuracy")
    return float(value) if isinstance(value, (int, float)) else None
