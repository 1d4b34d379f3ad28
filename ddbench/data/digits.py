"""scikit-learn's handwritten digits: 1,797 real 8x8 grayscale images, 10 classes, no download.

The split is fixed: ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``,
1,437 train / 360 test images, every class in both. Pixels (0..16) are scaled to [0, 1]
and, by default, upsampled to 16x16 when loaded (``DataOptions.image_size`` overrides).
With a cache folder the split is kept there (:func:`split_pixels`), so later processes do not
import scikit-learn, about 2 s of every command's start.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ddbench.contracts import DataOptions, Normalization
from ddbench.data.base import Dataset, TensorSource

DEFAULT_IMAGE_SIZE = 16
TEST_FRACTION = 0.2
SPLIT_SEED = 0

# Mean / std of the training pixels in [0, 1] at 8x8, computed with:
#   python -c "from ddbench.data.digits import split_pixels as s; x=s()[0]; print(x.mean(), x.std())"
NORMALIZATION = Normalization(mean=(0.3054,), std=(0.3761,))


SPLIT_SIZES = {"train": 1437, "test": 360}


def split_pixels(cache_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed split as float [N, 1, 8, 8] pixels in [0, 1] and int64 labels.

    Returns ``(train_pixels, train_labels, test_pixels, test_labels)``. With ``cache_dir`` the
    split is read from, or else written to, ``<cache_dir>/datasets/digits-sklearn-<version>.safetensors``
    (keyed by the installed scikit-learn, whose ``train_test_split`` draws it); a file that does
    not hold a well-formed split is computed and written again.
    """
    path = _split_file(cache_dir)
    if path is not None and path.is_file():
        cached = _read_split(path)
        if cached is not None:
            return cached
    split = _compute_split()
    if path is not None:
        from ddbench.store.io import save_tensors

        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, dict(zip(("train_pixels", "train_labels", "test_pixels", "test_labels"), split)),
                     {"dataset": "digits", "test_fraction": TEST_FRACTION, "split_seed": SPLIT_SEED})
    return split


def _compute_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().div(16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx]


def _split_file(cache_dir: str | None) -> Path | None:
    if not cache_dir:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        sklearn_version = version("scikit-learn")
    except PackageNotFoundError:  # computing the split will say that scikit-learn is missing
        return None
    return Path(cache_dir) / "datasets" / f"digits-sklearn-{sklearn_version}.safetensors"


def _read_split(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The split saved at ``path``, or None where the file is unreadable or not a well-formed split."""
    from ddbench.store.io import ArtifactError, load_tensors

    try:
        tensors, _ = load_tensors(path)
    except ArtifactError:
        return None
    split = []
    for part, count in SPLIT_SIZES.items():
        pixels, labels = tensors.get(f"{part}_pixels"), tensors.get(f"{part}_labels")
        if (pixels is None or labels is None or tuple(pixels.shape) != (count, 1, 8, 8) or pixels.dtype != torch.float32
                or tuple(labels.shape) != (count,) or labels.dtype != torch.int64
                or not bool(((pixels >= 0) & (pixels <= 1)).all()) or not bool(((labels >= 0) & (labels < 10)).all())):
            return None
        split += [pixels, labels]
    return tuple(split)


def load_digits(options: DataOptions) -> Dataset:
    """The digits dataset (``options.root`` and ``options.download`` are not used)."""
    size = options.image_size or DEFAULT_IMAGE_SIZE
    train_x, train_y, test_x, test_y = split_pixels(options.cache_dir)
    return Dataset(
        name="digits",
        train=TensorSource(train_x, train_y, NORMALIZATION, size),
        test=TensorSource(test_x, test_y, NORMALIZATION, size),
        class_names=tuple(str(i) for i in range(10)),
        channels=1,
        image_size=size,
        normalization=NORMALIZATION,
        source="sklearn",
    )
