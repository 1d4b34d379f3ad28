"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk layout.

MNIST-style sets are read by torchvision itself (it parses the idx files; no pickle).
CIFAR batches are pickles, so they are never given to the default unpickler: torchvision
only downloads and md5-checks the archive (with ``--download``), and the batches are read
here by :class:`RestrictedUnpickler`, which builds numpy arrays and nothing else.

Layout under ``root`` (exactly torchvision's):
``MNIST/raw/*-ubyte``, ``FashionMNIST/raw/*-ubyte``,
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``,
``cifar-100-python/{train, test, meta}``.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Callable

import numpy as np
import torch

from ddbench.contracts import DataOptions, Normalization
from ddbench.data.base import Dataset, TensorSource
from ddbench.data.errors import DataFileError, DataRootError

MNIST_NORMALIZATION = Normalization(mean=(0.1307,), std=(0.3081,))
FASHION_MNIST_NORMALIZATION = Normalization(mean=(0.2860,), std=(0.3530,))
CIFAR10_NORMALIZATION = Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
CIFAR100_NORMALIZATION = Normalization(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))

_NO_ROOT_FIX = "pass --data-root pointing at the folder that contains {folder}, or add --download where a network is available"


def _require_root(options: DataOptions, folder: str) -> str:
    """``options.root`` as a path; a DataRootError if missing (or absent without --download)."""
    fix = _NO_ROOT_FIX.format(folder=folder)
    if options.root is None:
        raise DataRootError(None, f"a folder that contains {folder}", fix)
    root = os.path.expanduser(str(options.root))
    if not options.download and not os.path.isdir(root):
        raise DataRootError(root, f"an existing folder that contains {folder}", fix)
    return root


# ----------------------------------------------------------------------------- MNIST-style


def _load_idx_set(options: DataOptions, name: str, class_name: str, norm: Normalization) -> Dataset:
    from torchvision import datasets

    tv_class = getattr(datasets, class_name)
    folder = f"{class_name}/raw"
    root = _require_root(options, folder)
    raw = os.path.join(root, class_name, "raw")
    files = [os.path.splitext(os.path.basename(url))[0] for url, _ in tv_class.resources]
    missing = [f for f in files if not os.path.isfile(os.path.join(raw, f))]
    if missing and not options.download:
        raise DataRootError(raw, f"the idx files {', '.join(missing)}", _NO_ROOT_FIX.format(folder=folder))

    splits = []
    for train in (True, False):
        try:
            ds = tv_class(root, train=train, download=options.download)
        except RuntimeError as err:  # torchvision's "Dataset not found"
            raise DataRootError(raw, f"the idx files {', '.join(files)}", _NO_ROOT_FIX.format(folder=folder)) from err
        splits.append((ds.data.unsqueeze(1).contiguous(), ds.targets.long(), tuple(ds.classes)))
    (train_x, train_y, classes), (test_x, test_y, _) = splits
    size = options.image_size or train_x.shape[-1]
    return Dataset(
        name=name,
        train=TensorSource(train_x, train_y, norm, size),
        test=TensorSource(test_x, test_y, norm, size),
        class_names=classes,
        channels=1,
        image_size=size,
        normalization=norm,
        source=raw,
    )


def load_mnist(options: DataOptions) -> Dataset:
    """MNIST from ``<root>/MNIST/raw`` (60,000 / 10,000 images, 1x28x28)."""
    return _load_idx_set(options, "mnist", "MNIST", MNIST_NORMALIZATION)


def load_fashion_mnist(options: DataOptions) -> Dataset:
    """Fashion-MNIST from ``<root>/FashionMNIST/raw`` (60,000 / 10,000 images, 1x28x28)."""
    return _load_idx_set(options, "fashion-mnist", "FashionMNIST", FASHION_MNIST_NORMALIZATION)


# ----------------------------------------------------------------------------- CIFAR


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy needs to rebuild plain arrays.

    Anything else (a function, a class, ``os.system``...) raises ``pickle.UnpicklingError``
    naming the refused global, before it could be called.
    """

    ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        resolve = self.ALLOWED.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed in a CIFAR batch"
            )
        return resolve()


def restricted_load(path: str) -> dict[str, Any]:
    """A CIFAR batch/meta pickle as a dict with ``str`` keys, read with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as err:
            raise pickle.UnpicklingError(f"{path}: {err}") from err
        except (EOFError, ValueError, TypeError) as err:
            raise DataFileError(f"{path} is not a readable CIFAR pickle ({err}); delete it and download again") from err
    if not isinstance(obj, dict):
        raise DataFileError(f"{path} holds a {type(obj).__name__}, expected a dict like the official CIFAR batches")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_batches(paths: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in paths:
        entry = restricted_load(path)
        if "data" not in entry or label_key not in entry:
            raise DataFileError(f"{path} lacks the 'data' or {label_key!r} entry of a CIFAR batch")
        data = entry["data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataFileError(f"{path}: 'data' must be a uint8 array [n, 3072], got {getattr(data, 'shape', type(data))}")
        batch_labels = np.asarray(entry[label_key], dtype=np.int64)
        if batch_labels.shape != (len(data),):
            raise DataFileError(f"{path}: {len(data)} images but {batch_labels.shape} labels")
        images.append(data.reshape(-1, 3, 32, 32))  # each row: 1024 red, 1024 green, 1024 blue, row-major
        labels.append(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _download_cifar(tv_class: Any, root: str) -> None:
    """Fetch and md5-check the official archive with torchvision's helpers (no unpickling)."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    folder = os.path.join(root, tv_class.base_folder)
    expected = tv_class.train_list + tv_class.test_list + [[tv_class.meta["filename"], tv_class.meta["md5"]]]
    if all(check_integrity(os.path.join(folder, f), md5) for f, md5 in expected):
        return
    download_and_extract_archive(tv_class.url, root, filename=tv_class.filename, md5=tv_class.tgz_md5)
    bad = [f for f, md5 in expected if not check_integrity(os.path.join(folder, f), md5)]
    if bad:
        raise DataFileError(f"{folder}: {', '.join(bad)} failed the md5 check after download; delete the folder and retry")


def _load_cifar(options: DataOptions, name: str, class_name: str, label_key: str, norm: Normalization) -> Dataset:
    from torchvision import datasets

    tv_class = getattr(datasets, class_name)
    root = _require_root(options, tv_class.base_folder)
    if options.download:
        os.makedirs(root, exist_ok=True)
        _download_cifar(tv_class, root)
    folder = os.path.join(root, tv_class.base_folder)
    train_files = [os.path.join(folder, f) for f, _ in tv_class.train_list]
    test_files = [os.path.join(folder, f) for f, _ in tv_class.test_list]
    meta_file = os.path.join(folder, tv_class.meta["filename"])
    missing = [os.path.basename(p) for p in train_files + test_files + [meta_file] if not os.path.isfile(p)]
    if missing:
        raise DataRootError(folder, f"the CIFAR files {', '.join(missing)}", _NO_ROOT_FIX.format(folder=tv_class.base_folder))

    train_x, train_y = _read_batches(train_files, label_key)
    test_x, test_y = _read_batches(test_files, label_key)
    meta = restricted_load(meta_file)
    meta_key = tv_class.meta["key"]
    if meta_key not in meta:
        raise DataFileError(f"{meta_file} lacks {meta_key!r}")
    classes = tuple(_as_str(c) for c in meta[meta_key])
    for split, labels in (("train", train_y), ("test", test_y)):
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataFileError(f"{folder}: {split} labels outside 0..{len(classes) - 1} ({meta_file} names {len(classes)} classes)")
    size = options.image_size or 32
    return Dataset(
        name=name,
        train=TensorSource(train_x, train_y, norm, size),
        test=TensorSource(test_x, test_y, norm, size),
        class_names=classes,
        channels=3,
        image_size=size,
        normalization=norm,
        source=folder,
    )


def load_cifar10(options: DataOptions) -> Dataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (50,000 / 10,000 images, 3x32x32)."""
    return _load_cifar(options, "cifar10", "CIFAR10", "labels", CIFAR10_NORMALIZATION)


def load_cifar100(options: DataOptions) -> Dataset:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (50,000 / 10,000 images, 3x32x32)."""
    return _load_cifar(options, "cifar100", "CIFAR100", "fine_labels", CIFAR100_NORMALIZATION)
