"""scikit-learn's handwritten digits: 1,797 real 8x8 grayscale images, 10 classes, no download.

The split is fixed: ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``,
1,437 train / 360 test images, every class in both, frozen in :mod:`ddbench.data.digits_split`
so that loading needs no scikit-learn import. Pixels (0..16) are scaled to [0, 1] and, by
default, upsampled to 16x16 when loaded (``DataOptions.image_size`` overrides).
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


def split_pixels() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed split as float [N, 1, 8, 8] pixels in [0, 1] and int64 labels.

    Returns ``(train_pixels, train_labels, test_pixels, test_labels)``, in the order of
    :mod:`ddbench.data.digits_split`.
    """
    from ddbench.data.digits_split import TEST_INDICES, TRAIN_INDICES

    pixels, labels = digits_pixels()
    train_idx, test_idx = torch.tensor(TRAIN_INDICES), torch.tensor(TEST_INDICES)
    return pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx]


def digits_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float [1797, 1, 8, 8] pixels in [0, 1] and int64 labels, in
    scikit-learn's order: read from the data file scikit-learn ships (``datasets/data/digits.csv.gz``:
    64 pixel columns, then the label) without importing scikit-learn, or, where an installed
    version keeps it elsewhere, through ``sklearn.datasets.load_digits`` (the same file)."""
    data_file = _shipped_data_file()
    if data_file is not None:
        import numpy as np

        table = np.loadtxt(data_file, delimiter=",")
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        images, target = digits.images, digits.target
    return torch.from_numpy(images).float().div(16.0).unsqueeze(1), torch.from_numpy(target).long()


def _shipped_data_file() -> Path | None:
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the embedded digits come with scikit-learn, which is not installed: "
                                  "pip install scikit-learn (a dependency of ddbench)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def load_digits(options: DataOptions) -> Dataset:
    """The digits dataset (``options.root`` and ``options.download`` are not used)."""
    size = options.image_size or DEFAULT_IMAGE_SIZE
    train_x, train_y, test_x, test_y = split_pixels()
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
