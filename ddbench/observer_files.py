"""Observer checkpoints on disk: the metadata written with them, the checks on loading (dataset,
architecture, class map, shape, training split), and reading ddbench and torch files safely."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ddbench.contracts import ArchitectureSpec
from ddbench.data.base import Dataset
from ddbench.data.identity import check_unseen, describe_record
from ddbench.store.io import TORCH_SUFFIXES, ArtifactError, load_tensors, load_torch_file, save_tensors
from ddbench.runtime.metrics import accuracy


FORMAT = "ddbench-observer/1"
TORCH_STATE_DICT = "torch-state-dict"  # the format recorded for an observer read from a .pt/.pth state dict


class ObserverMismatchError(ValueError):
    """A checkpoint made for another dataset, class map, architecture or image shape."""


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def training_run(device: torch.device) -> dict:
    """Where an observer was trained. Training repeats bit for bit on the same device with the same
    number of CPU threads, not across them (the threads split floating-point sums differently), so
    a retrained observer matches a cached one only where these match."""
    run = {"device": device.type, "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        run["gpu"] = torch.cuda.get_device_name(device)
    return run


def observer_metadata(dataset: Dataset, arch: ArchitectureSpec, recipe: dict, seed: int, test_accuracy: float,
                      trained_with: dict | None = None) -> dict:
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
        **({"trained_with": trained_with} if trained_with is not None else {}),
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
    meta = {"format": TORCH_STATE_DICT, "architecture": arch.name, "class_names": list(dataset.class_names),
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
