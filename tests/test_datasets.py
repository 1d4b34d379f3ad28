"""The built-in datasets: digits, idx/CIFAR files and image folders made in tmp_path, errors.

Only digits (embedded in scikit-learn) and one Fashion-MNIST test use real data; the latter
skips when ``../shared/data/FashionMNIST/raw`` is absent.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ddbench.contracts import DataOptions, DatasetSpec
from ddbench.data.base import denormalize, load_all
from ddbench.data.errors import DataFileError, DataRootError
from ddbench.default_plugins import datasets as dataset_plugin

# torchvision 0.29 deprecates write_png / write_jpeg (used here to make test images)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

SPECS: dict[str, DatasetSpec] = {}
dataset_plugin.register_datasets(register=lambda spec: SPECS.__setitem__(spec.name, spec))

REAL_DATA_ROOT = Path(os.environ.get("DDBENCH_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load(name: str, root: Path | str | None = None, image_size: int | None = None):
    return SPECS[name].load(DataOptions(root=None if root is None else str(root), image_size=image_size))


def test_registered_names_and_needs_root():
    assert list(SPECS) == ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"]
    assert [n for n, s in SPECS.items() if not s.needs_root] == ["digits"]
    assert all(s.description for s in SPECS.values())


# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_digits_shapes_and_classes(digits):
    assert digits.image_shape == (1, 16, 16)
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert digits.source == "sklearn"
    assert digits.train.load(torch.arange(5)).shape == (5, 1, 16, 16)
    assert load("digits", image_size=8).train.load(torch.arange(2)).shape == (2, 1, 8, 8)


def test_digits_split_is_fixed_and_stratified(digits):
    assert (len(digits.train), len(digits.test)) == (1437, 360)
    again = load("digits")
    assert torch.equal(again.train.labels, digits.train.labels)
    assert torch.equal(again.test.labels, digits.test.labels)
    assert torch.equal(again.train.pixels, digits.train.pixels)
    assert set(digits.train.labels.tolist()) == set(range(10)) == set(digits.test.labels.tolist())


def test_frozen_digits_split_is_scikit_learns_split_and_pixels():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ddbench.data import digits as digits_module
    from ddbench.data.digits_split import TEST_INDICES, TRAIN_INDICES

    reference = load_digits()
    train_idx, test_idx = train_test_split(np.arange(len(reference.target)), test_size=digits_module.TEST_FRACTION,
                                           random_state=digits_module.SPLIT_SEED, stratify=reference.target)
    assert TRAIN_INDICES == tuple(train_idx.tolist()) and TEST_INDICES == tuple(test_idx.tolist())
    pixels, labels = digits_module.digits_pixels()
    assert torch.equal(pixels, torch.from_numpy(reference.images).float().div(16.0).unsqueeze(1))
    assert torch.equal(labels, torch.from_numpy(reference.target).long())


def test_digits_read_through_scikit_learn_where_its_data_file_moved(digits, monkeypatch):
    from ddbench.data import digits as digits_module

    monkeypatch.setattr(digits_module, "_shipped_data_file", lambda: None)
    train_pixels, train_labels, test_pixels, test_labels = digits_module.split_pixels()
    assert torch.equal(train_pixels, digits.train.pixels) and torch.equal(test_pixels, digits.test.pixels)
    assert torch.equal(train_labels, digits.train.labels) and torch.equal(test_labels, digits.test.labels)


def test_loading_the_digits_imports_no_scikit_learn():
    import subprocess
    import sys

    code = ("import sys; from ddbench.contracts import DataOptions; from ddbench.data.digits import load_digits; "
            "data = load_digits(DataOptions()); assert len(data.train) == 1437; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"scikit-learn modules imported: {done.stdout.strip()}"


def test_digits_normalization_constants():
    from ddbench.data.digits import NORMALIZATION, split_pixels

    train_pixels = split_pixels()[0]
    assert train_pixels.shape[1:] == (1, 8, 8) and 0.0 <= train_pixels.min() and train_pixels.max() <= 1.0
    assert train_pixels.mean().item() == pytest.approx(NORMALIZATION.mean[0], abs=1e-3)
    assert train_pixels.std().item() == pytest.approx(NORMALIZATION.std[0], abs=1e-3)


# ----------------------------------------------------------------------------- MNIST-style idx files


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">4i", 2051, n, h, w) + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, n) + labels.astype(np.uint8).tobytes())


def make_idx_root(root: Path, folder: str, n_train: int = 12, n_test: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(root / folder / "raw", prefix, images, labels)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize(("name", "folder", "first_class"), [("mnist", "MNIST", "0 - zero"), ("fashion-mnist", "FashionMNIST", "T-shirt/top")])
def test_fake_idx_round_trip(tmp_path, name, folder, first_class):
    data = make_idx_root(tmp_path, folder)
    ds = load(name, tmp_path)
    assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10 and ds.class_names[0] == first_class
    for source, (images, labels) in ((ds.train, data["train"]), (ds.test, data["t10k"])):
        assert torch.equal(source.labels, torch.from_numpy(labels.astype(np.int64)))
        pixels01 = denormalize(load_all(source), ds.normalization)
        assert pixels01.shape == (len(labels), 1, 28, 28)
        torch.testing.assert_close(pixels01, torch.from_numpy(images).float().unsqueeze(1) / 255.0, atol=1e-5, rtol=0)


def test_fake_idx_image_size_override(tmp_path):
    make_idx_root(tmp_path, "FashionMNIST")
    ds = load("fashion-mnist", tmp_path, image_size=32)
    assert ds.image_shape == (1, 32, 32)
    assert ds.train.load(torch.tensor([0, 3])).shape == (2, 1, 32, 32)


def test_train_indices_by_class_matches_label_positions(tmp_path):
    make_idx_root(tmp_path, "MNIST", n_train=40)
    ds = load("mnist", tmp_path)
    by_class = ds.train_indices_by_class()
    assert sorted(by_class) == list(range(10))
    for c, idx in by_class.items():
        assert idx.tolist() == torch.nonzero(ds.train.labels == c).flatten().tolist()


# ----------------------------------------------------------------------------- CIFAR pickles


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)  # numpy arrays pickle via _reconstruct, as in the official files


def make_cifar_root(root: Path, hundred: bool, n: int = 3, seed: int = 0):
    """Official-shaped batches; returns (train images [N,3,32,32], train labels, test images, test labels, classes)."""
    rng = np.random.default_rng(seed)
    num_classes = 100 if hundred else 10
    label_key = b"fine_labels" if hundred else b"labels"
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    train_names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    splits = {}
    for split, names in (("train", train_names), ("test", ["test"] if hundred else ["test_batch"])):
        images, labels = [], []
        for name in names:
            batch = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
            batch_labels = rng.integers(0, num_classes, size=n).tolist()
            batch_dict = {b"batch_label": b"fake", b"data": batch.reshape(n, 3072), label_key: batch_labels, b"filenames": [b"x.png"] * n}
            if hundred:
                batch_dict[b"coarse_labels"] = [0] * n
            dump(folder / name, batch_dict)
            images.append(batch)
            labels.extend(batch_labels)
        splits[split] = (np.concatenate(images), labels)
    classes = [f"class_{i:03d}" for i in range(num_classes)]
    if hundred:
        dump(folder / "meta", {b"fine_label_names": classes, b"coarse_label_names": ["c"] * 20})
    else:
        dump(folder / "batches.meta", {b"label_names": [c.encode() for c in classes], b"num_vis": 3072})
    return (*splits["train"], *splits["test"], classes)


@pytest.mark.parametrize(("name", "hundred"), [("cifar10", False), ("cifar100", True)])
def test_fake_cifar(tmp_path, name, hundred):
    train_x, train_y, test_x, test_y, classes = make_cifar_root(tmp_path, hundred)
    ds = load(name, tmp_path)
    assert ds.image_shape == (3, 32, 32) and ds.class_names == tuple(classes)
    assert ds.train.labels.tolist() == train_y and ds.test.labels.tolist() == test_y
    assert torch.equal(ds.train.pixels, torch.from_numpy(train_x))
    assert torch.equal(ds.test.pixels, torch.from_numpy(test_x))
    # channel order: the first 1024 bytes of a row are the red plane, row-major
    flat = train_x.reshape(len(train_x), 3072)
    assert np.array_equal(ds.train.pixels[0, 0].numpy().ravel(), flat[0, :1024])
    assert np.array_equal(ds.train.pixels[0, 2].numpy().ravel(), flat[0, 2048:])
    pixels01 = denormalize(ds.test.load(torch.arange(len(test_y))), ds.normalization)
    torch.testing.assert_close(pixels01, torch.from_numpy(test_x).float() / 255.0, atol=1e-5, rtol=0)
    assert load(name, tmp_path, image_size=16).train.load(torch.tensor([1])).shape == (1, 3, 16, 16)


CALLS: list[object] = []


def _record_call(*args: object) -> None:
    CALLS.append(args)


class _GetCwd:
    def __reduce__(self):
        return (os.getcwd, ())


class _Recorder:
    def __reduce__(self):
        return (_record_call, ("executed",))


@pytest.mark.parametrize(("payload", "global_name"), [(_GetCwd(), f"{os.getcwd.__module__}.getcwd"), (_Recorder(), "_record_call")])
def test_cifar_pickle_with_forbidden_global_is_refused(tmp_path, payload, global_name):
    make_cifar_root(tmp_path, hundred=False, n=2)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    dump(batch, {b"data": payload, b"labels": [0]})
    CALLS.clear()
    with pytest.raises(pickle.UnpicklingError) as info:
        load("cifar10", tmp_path)
    assert global_name in str(info.value) and str(batch) in str(info.value)
    assert CALLS == []


def test_restricted_unpickler_refuses_other_numpy_globals(tmp_path):
    from ddbench.data.torchvision_sets import restricted_load

    path = tmp_path / "batch"
    dump(path, {b"x": np.int64(3)})  # a numpy scalar needs numpy.core.multiarray.scalar: not allowed
    with pytest.raises(pickle.UnpicklingError, match="scalar"):
        restricted_load(str(path))


# ----------------------------------------------------------------------------- image folders


def solid(height: int, width: int, colour: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, height, width).contiguous()


COLOURS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cat": (0, 0, 255)}


def make_imagefolder(root: Path, classes=("cat", "ant"), test_split: str = "val") -> None:
    from torchvision.io import write_png

    for split, count in (("train", 3), (test_split, 2)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = (40, 50) if i % 2 == 0 else (70, 60)
                write_png(solid(h, w, COLOURS[name]), str(folder / f"{name}_{i}.png"))


def test_imagefolder_classes_labels_and_shapes(tmp_path):
    make_imagefolder(tmp_path)
    ds = load("imagefolder", tmp_path, image_size=24)
    assert ds.class_names == ("ant", "cat") and ds.image_shape == (3, 24, 24)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test.labels.tolist() == [0, 0, 1, 1]
    images = denormalize(load_all(ds.train), ds.normalization)
    assert images.shape == (6, 3, 24, 24)
    for image, label in zip(images, ds.train.labels.tolist()):
        expected = torch.tensor(COLOURS[ds.class_names[label]], dtype=torch.float32).view(3, 1, 1) / 255
        torch.testing.assert_close(image, expected.expand_as(image), atol=1e-5, rtol=0)
    assert load("imagefolder", tmp_path).image_shape == (3, 64, 64)  # the default size
    assert load("imagefolder", tmp_path).test.load(torch.tensor([3])).shape == (1, 3, 64, 64)


def test_imagefolder_test_split_and_unknown_class(tmp_path):
    make_imagefolder(tmp_path, test_split="test")
    assert len(load("imagefolder", tmp_path).test) == 4
    from torchvision.io import write_png

    stray = tmp_path / "test" / "bee" / "bee_0.png"
    stray.parent.mkdir()
    write_png(solid(8, 8, COLOURS["bee"]), str(stray))
    with pytest.raises(DataFileError, match="bee_0.png"):
        load("imagefolder", tmp_path)


def test_imagefolder_decodes_lazily(tmp_path):
    make_imagefolder(tmp_path)
    corrupt = tmp_path / "train" / "cat" / "cat_9.png"
    corrupt.write_bytes(b"this is not a png")
    ds = load("imagefolder", tmp_path, image_size=16)  # nothing decoded yet: no error
    bad = ds.train.paths.index(str(corrupt))
    good = [i for i in range(len(ds.train)) if i != bad]
    assert ds.train.load(torch.tensor(good)).shape == (len(good), 3, 16, 16)
    with pytest.raises(DataFileError, match="cat_9.png"):
        ds.train.load(torch.tensor([bad]))


def test_tiny_imagenet_layout(tmp_path):
    from torchvision.io import write_jpeg

    wnids = ["n02", "n01"]
    for wnid, colour in zip(wnids, [(255, 0, 0), (0, 0, 255)]):
        images = tmp_path / "train" / wnid / "images"
        images.mkdir(parents=True)
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        for i in range(2):
            write_jpeg(solid(64, 64, colour), str(images / f"{wnid}_{i}.JPEG"))
    val = tmp_path / "val" / "images"
    val.mkdir(parents=True)
    rows = []
    for i, wnid in enumerate(["n01", "n02", "n01"]):
        write_jpeg(solid(64, 64, (9, 9, 9)), str(val / f"val_{i}.JPEG"))
        rows.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "test" / "images").mkdir(parents=True)  # Tiny-ImageNet's unlabelled test split: ignored

    ds = load("imagefolder", tmp_path)
    assert ds.class_names == ("n01", "n02") and ds.image_shape == (3, 64, 64)
    assert ds.train.labels.tolist() == [0, 0, 1, 1] and ds.test.labels.tolist() == [0, 1, 0]
    assert ds.test.load(torch.arange(3)).shape == (3, 3, 64, 64)

    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataFileError, match="val_0.JPEG"):
        load("imagefolder", tmp_path)


def test_resize_shorter_side_then_center_crop():
    from ddbench.data.imagefolder import resize_and_crop

    image = torch.zeros(3, 20, 40)
    image[:, :, :10] = 1.0  # left quarter: cropped away
    image[:, :, 30:] = 1.0  # right quarter: cropped away
    assert torch.equal(resize_and_crop(image, 20), torch.zeros(3, 20, 20))
    assert resize_and_crop(torch.rand(3, 70, 60), 32).shape == (3, 32, 32)
    assert resize_and_crop(torch.rand(3, 10, 12), 32).shape == (3, 32, 32)


# ----------------------------------------------------------------------------- missing roots


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"])
def test_missing_root_names_path_and_flag(tmp_path, name):
    for root in (tmp_path / "does-not-exist", tmp_path):  # absent, then present but empty
        with pytest.raises(DataRootError) as info:
            load(name, root)
        assert str(root) in str(info.value) and "--data-root" in str(info.value)
        assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataRootError, match="--data-root"):
        load(name, None)


def test_cifar_missing_one_batch_is_named(tmp_path):
    make_cifar_root(tmp_path, hundred=False, n=1)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataRootError, match="data_batch_4"):
        load("cifar10", tmp_path)


# ----------------------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(
    not (REAL_DATA_ROOT / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file(),
    reason=f"real Fashion-MNIST not found under {REAL_DATA_ROOT}/FashionMNIST/raw (set DDBENCH_DATA_ROOT)",
)
def test_real_fashion_mnist():
    ds = load("fashion-mnist", REAL_DATA_ROOT)
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.image_shape == (1, 28, 28) and ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert ds.train.load(torch.arange(4)).shape == (4, 1, 28, 28)


def test_smallest_class_size_counts_the_full_training_split():
    """What LIC's N follows: the smallest class of the whole training split, so a validation run
    resolves as the run it stands for."""
    from ddbench.contracts import Normalization
    from ddbench.data.base import Dataset, TensorSource

    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 9)
    pixels, norm = torch.rand(len(labels), 1, 8, 8), Normalization((0.5,), (0.25,))
    uneven = Dataset("uneven", TensorSource(pixels, labels, norm, 8), TensorSource(pixels[:3], labels[:3], norm, 8),
                     ("a", "b", "c"), 1, 8, norm, source="test")
    assert uneven.smallest_class_size() == 7
    held = uneven.with_validation_split(2, seed=0)
    assert min(len(pool) for pool in held.train_indices_by_class().values()) == 5 and held.smallest_class_size() == 7
