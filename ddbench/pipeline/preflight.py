"""Checks of the inputs against the data, before any model trains: architectures, outputs, class sizes, saved sets; the dataset loaded and decoded ahead."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ddbench.contracts import DistilledSet
from ddbench.data.base import Dataset
from ddbench.data.identity import check_unseen
from ddbench.store.artifacts import DISTILLED_FORMAT, file_digest, load_distilled
from ddbench.store.io import read_metadata
from ddbench.interop.set_formats import load_foreign_set
from ddbench.pipeline.config import Plan, RunConfig, RunError, check_setup_all, data_options


def check_architecture_fits(arch: Any, dataset: Dataset) -> None:
    """One forward pass of an untrained ``arch`` on one blank image of the dataset's shape, so
    an image size the network cannot take is refused before any training, naming both."""
    try:
        model = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).eval()
        with torch.no_grad():
            model(torch.zeros(1, *dataset.image_shape))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"architecture {arch.name!r} cannot take {dataset.image_size} px images of {dataset.name} "
                       f"({first}); use a larger --image-size or a shallower --arch") from None


def check_writable(folder: Path, what: str, flag: str) -> None:
    """``folder`` is, or can be made, a folder that takes new files: checked before any work, so
    a read-only output is not found after an hour of training. Nothing is left behind: the
    probe file is made (and removed) in the folder or, if it does not exist yet, in its nearest
    existing parent."""
    import tempfile

    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        blocker = "is a file" if existing == folder else f"is under {existing}, which is a file"
        raise RunError(f"{what} {folder} {blocker}; pass {flag} with a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ddbench-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunError(f"{what} {folder} cannot be written ({existing}: {reason}); pass {flag} with a writable "
                       f"folder") from None


def fingerprint_ahead(dataset: Dataset, ui: Any) -> None:
    """Read and hash the training and test files now, as a reported stage, where the source
    has to (image folders whose digest the cache folder does not yet remember), so that no
    later step goes silent while it identifies the data."""
    from ddbench.data.identity import source_digest

    for split, source in (("training", dataset.full_train if dataset.full_train is not None else dataset.train),
                          ("test", dataset.test)):
        pending = getattr(source, "fingerprint_pending", lambda: 0)()
        source_digest(source, ui.progress(f"hash {dataset.name} {split} files", pending) if pending else None)


def decode_ahead(dataset: Dataset, ui: Any) -> None:
    """Decode the training images now, in worker processes, where the source can (image folders
    that fit the memory budget), so no training loop waits on a decoder."""
    source = dataset.full_train if dataset.full_train is not None else dataset.train
    fill = getattr(source, "fill", None)
    pending = getattr(source, "pending", lambda: 0)()
    if fill is not None and pending:  # nothing to decode (cached, or streamed): no stage to report
        fill(ui.progress(f"decode {dataset.name} training images", pending))


def load_dataset(config: RunConfig, spec: Any, plan: Plan | None = None) -> Dataset:
    dataset = spec.load(data_options(config))
    if plan is not None:
        check_setup_all(plan, config, dataset)
        for arch in {plan.observer_arch.name: plan.observer_arch, plan.verifier_arch.name: plan.verifier_arch}.values():
            check_architecture_fits(arch, dataset)
    if config.validation_per_class:
        try:
            dataset = dataset.with_validation_split(config.validation_per_class, config.validation_seed)
        except ValueError as exc:
            raise RunError(str(exc)) from None
    smallest = min(len(v) for v in dataset.train_indices_by_class().values())
    if config.ipc > smallest:
        raise RunError(f"--ipc {config.ipc} is more than the {smallest} training images of the smallest class of {dataset.name}")
    return dataset


def check_distilled(distilled: DistilledSet, method: str, dataset: Dataset, ipc: int) -> None:
    """The host's contract check on what a distiller returned; names the method that broke it."""
    problems = []
    images, labels = distilled.images, distilled.labels
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != dataset.image_shape:
        problems.append(f"images must be a [K, {', '.join(map(str, dataset.image_shape))}] tensor, got {getattr(images, 'shape', type(images))}")
    elif images.dtype != torch.float32:
        problems.append(f"images must be float32, got {images.dtype}")
    elif not bool(torch.isfinite(images).all()):
        problems.append("images contain NaN or infinite values")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        problems.append("labels must be a 1-D int64 tensor")
    elif isinstance(images, torch.Tensor) and len(labels) != len(images):
        problems.append(f"{len(images)} images but {len(labels)} labels")
    elif len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes):
        problems.append(f"labels must lie in [0, {dataset.num_classes})")
    else:
        per_class = distilled.images_per_class(dataset.num_classes)
        if any(count != ipc for count in per_class):
            problems.append(f"expected {ipc} images per class, got {per_class}")
    if distilled.soft_labels not in ("hard", "observer", "stored"):
        problems.append(f"soft_labels must be hard, observer or stored, got {distilled.soft_labels!r}")
    if problems:
        raise RunError(f"method {method!r} returned an invalid distilled set: " + "; ".join(problems))


def check_saved_contents(distilled: DistilledSet, dataset: Dataset, path: Path) -> None:
    """A saved set holds images, every pixel finite, and labels among the dataset's classes."""
    if len(distilled.images) == 0:
        raise RunError(f"{path}: the set holds no images; pass a set with at least one image")
    if not bool(torch.isfinite(distilled.images).all()):
        raise RunError(f"{path}: the images hold NaN or infinite values (a diverged distillation?); distil it again "
                       f"or pass another set")
    labels = distilled.labels
    if isinstance(labels, torch.Tensor) and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes):
        raise RunError(f"{path}: labels run from {int(labels.min())} to {int(labels.max())}, {dataset.name} has classes "
                       f"0..{dataset.num_classes - 1}; pass the --dataset the set was distilled from, or re-export it")


def check_saved_sets_fit(config: RunConfig, dataset: Dataset) -> None:
    """Before any work: every saved set exists, can be read, fits the dataset's classes and shape."""
    for name in config.saved_sets:
        path = Path(name)
        if not path.exists():
            raise RunError(f"{path}: no such file or folder; check the path")
        try:
            if is_ddbench_set(path):
                distilled, meta = load_distilled(path)
                check_saved_fits(meta, dataset, path)
            else:
                distilled, _ = load_foreign_set(path, dataset, config.saved_pixels)
        except (ValueError, OSError) as exc:
            raise RunError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
        check_saved_contents(distilled, dataset, path)


def check_saved_fits(meta: dict[str, Any], dataset: Dataset, path: Path) -> None:
    """A saved set's class map and image shape (when it records them) must be this dataset's."""
    class_names = meta.get("class_names")
    if class_names is not None and list(class_names) != list(dataset.class_names):
        raise RunError(f"{path}: its class map {class_names} differs from {dataset.name}'s {list(dataset.class_names)}; "
                       f"pass the --dataset it was distilled from")
    shape = meta.get("image_shape")
    if shape is not None and list(shape) != list(dataset.image_shape):
        raise RunError(f"{path}: its images have shape {shape}, {dataset.name} gives {list(dataset.image_shape)}; "
                       f"set --image-size to match")


def is_ddbench_set(path: Path) -> bool:
    """A ``.safetensors`` file in ddbench's distilled-set format (else another tool's layout)."""
    if path.is_dir() or path.suffix != ".safetensors":
        return False
    return read_metadata(path).get("format") == DISTILLED_FORMAT


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents) in sorted order."""
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode() + b"\0" + file_digest(child).encode())
    return digest.hexdigest()


def check_saved_sets_unseen(paths: list[str], dataset: Dataset) -> None:
    """On a validation split, before any work: every saved set must record a training split
    that left this run's validation images out."""
    for path in map(Path, paths):
        meta = read_metadata(path) if path.exists() and is_ddbench_set(path) else None
        try:
            check_unseen(meta.get("data") if meta else None, dataset,
                         f"saved set {path}" + ("" if meta else " (another tool's layout)"), SAVED_SET_FIX)
        except ValueError as exc:
            raise RunError(str(exc)) from None


SAVED_SET_FIX = ("evaluate it on the test split (drop --validation), or distill it again with the same --validation "
                 "and --validation-seed (ddbench run records the split in every set it saves)")
