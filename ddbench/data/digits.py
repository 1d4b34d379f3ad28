"""scikit-learn's handwritten digits: 1,797 real 8x8 grayscale images, 10 classes, no download.

The split is fixed: ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``,
1,437 train / 360 test images, every class in both. Pixels (0..16) are scaled to [0, 1]
and, by default, upsampled to 16x16 when loaded (``DataOptions.image_size`` overrides).
"""

from __future__ import annotations

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

    Returns ``(train_pixels, train_labels, test_pixels, test_labels)``.
    """
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
