"""Sets from and for other tools: an ImageFolder export evaluated with ``ddbench eval`` gives the
accuracy of the set itself; the DD-Ranking export has the tensors that layout needs; foreign
tensor files load with their soft labels, and bad ones are named."""

from __future__ import annotations

import json

import pytest
import torch

from ddbench.store.artifacts import save_distilled
from ddbench.contracts import DistilledSet
from ddbench.store.io import ArtifactError
from ddbench.interop.set_formats import load_foreign_set, normalize
from tests.conftest import run_cli

FAST = ["--observer-epochs", "1", "--budget-set", "epochs=3", "--seeds", "2", "--quiet"]


@pytest.fixture
def eight_bit_set(tmp_path, digits):
    """Two real digits per class, pixels on the 8-bit grid (what a PNG can hold exactly), saved
    in ddbench's format."""
    picks = torch.cat([idx[:2] for idx in digits.train_indices_by_class().values()])
    mean = torch.tensor(digits.normalization.mean).view(1, -1, 1, 1)
    std = torch.tensor(digits.normalization.std).view(1, -1, 1, 1)
    pixels = ((digits.train.load(picks) * std + mean).clamp(0, 1) * 255).round() / 255
    distilled = DistilledSet(images=normalize(pixels, digits.normalization), labels=digits.train.labels[picks].long(),
                             method="random", soft_labels="observer")
    path = tmp_path / "set.safetensors"
    save_distilled(path, distilled, {"dataset": "digits", "class_names": list(digits.class_names),
                                     "image_shape": list(digits.image_shape), "ipc": 2})
    return path, distilled


def test_imagefolder_round_trip_gives_the_same_accuracy(tmp_path, eight_bit_set, digits):
    path, distilled = eight_bit_set
    exported = run_cli("export", str(path), "--format", "imagefolder", "--out", str(tmp_path / "folder"))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == sorted(digits.class_names)
    reread, read = load_foreign_set(tmp_path / "folder", digits)
    assert read["layout"] == "imagefolder" and torch.equal(reread.images, distilled.images)
    result = run_cli("eval", str(path), str(tmp_path / "folder"), "--dataset", "digits", "--evaluator", "train",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "eval"), *FAST)
    assert result.returncode == 0, result.stderr
    methods = json.loads((tmp_path / "eval" / "results.json").read_text())["methods"]
    assert methods["folder"]["accuracy"] == methods["set"]["accuracy"]  # same seeds, same images
    assert methods["folder"]["read"]["layout"] == "imagefolder" and methods["set"]["read"]["layout"] == "ddbench"


@pytest.fixture
def cifar_set(tmp_path):
    """A CIFAR-10 root made in the test (official file layout), its dataset, an observer, and a
    ddbench set of 2 images per class."""
    from ddbench.contracts import DataOptions
    from ddbench.host.registry import get_dataset
    from tests.test_datasets import make_cifar_root

    make_cifar_root(tmp_path / "data", hundred=False, n=4)
    dataset = get_dataset("cifar10").load(DataOptions(root=str(tmp_path / "data")))
    trained = run_cli("observer", "train", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"),
                      "--observer-epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--quiet")
    assert trained.returncode == 0, trained.stderr
    labels = torch.arange(10).repeat(2)  # interleaved, so the export must reorder class-major
    pixels = torch.rand(20, 3, 32, 32)
    distilled = DistilledSet(images=normalize(pixels, dataset.normalization), labels=labels, method="m")
    path = tmp_path / "cifar-set.safetensors"
    save_distilled(path, distilled, {"dataset": "cifar10", "class_names": list(dataset.class_names),
                                     "image_shape": [3, 32, 32], "ipc": 2})
    return path, dataset, pixels, labels


def test_ddranking_export_matches_its_documented_format(tmp_path, cifar_set):
    from ddbench.interop.ddranking_format import DDRANKING_DATASETS

    path, dataset, pixels, labels = cifar_set
    exported = run_cli("export", str(path), "--format", "ddranking", "--out", str(tmp_path / "dd"), "--data-root",
                       str(tmp_path / "data"), "--observer-epochs", "1", "--cache-dir", str(tmp_path / "cache"))
    assert exported.returncode == 0, exported.stderr
    images = torch.load(tmp_path / "dd" / "images.pt", weights_only=True)
    soft = torch.load(tmp_path / "dd" / "labels.pt", weights_only=True)
    hard = torch.load(tmp_path / "dd" / "hard_labels.pt", weights_only=True)
    # ddranking 0.2.0, ddranking/utils/data.py lines 58-63: CIFAR10 is 3 x 32 x 32, normalised with these constants
    cifar_mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    cifar_std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    assert DDRANKING_DATASETS["CIFAR10"].normalization.std == (0.2023, 0.1994, 0.2010)
    assert images.dtype == torch.float32 and tuple(images.shape) == (20, 3, 32, 32)
    assert soft.dtype == torch.float32 and tuple(soft.shape) == (20, 10)  # one logit row per image (mode 'S')
    assert hard.dtype == torch.int64 and torch.equal(hard, torch.arange(10).repeat_interleave(2))  # class-major
    order = torch.argsort(labels, stable=True)
    torch.testing.assert_close(images * cifar_std + cifar_mean, pixels[order], atol=1e-5, rtol=0)  # their pixels = ours
    assert not torch.allclose(images, normalize(pixels, dataset.normalization)[order], atol=1e-2)  # ours differ: converted
    meta = json.loads((tmp_path / "dd" / "meta.json").read_text())
    assert meta["dataset"] == "CIFAR10" and meta["ipc"] == 2 and meta["im_size"] == [32, 32]
    assert meta["normalization"]["std"] == [0.2023, 0.1994, 0.2010] and meta["ddranking_version"] == "0.2.0"
    back, read = load_foreign_set(tmp_path / "dd", dataset)
    assert read == {"layout": "ddranking", "pixels": "normalized", "soft_labels": "logits"}
    torch.testing.assert_close(back.images, normalize(pixels, dataset.normalization)[order], atol=1e-5, rtol=0)
    assert torch.allclose(back.stored_soft_labels, torch.softmax(soft, dim=1))


def test_a_folder_written_by_ddranking_is_read_with_its_statistics(tmp_path, cifar_set):
    _, dataset, pixels, _ = cifar_set
    folder = tmp_path / "theirs"
    folder.mkdir()
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
    torch.save((pixels - mean) / std, folder / "images.pt")  # class-major without hard labels, as DD-Ranking assumes
    back, _ = load_foreign_set(folder, dataset)
    torch.testing.assert_close(back.images, normalize(pixels, dataset.normalization), atol=1e-5, rtol=0)
    assert back.labels.tolist() == torch.arange(10).repeat_interleave(2).tolist()


def test_what_ddranking_cannot_read_is_refused_before_any_file_is_written(tmp_path, eight_bit_set, cifar_set, digits):
    from ddbench.interop.ddranking_format import export_ddranking

    path, _ = eight_bit_set
    refused = run_cli("export", str(path), "--format", "ddranking", "--out", str(tmp_path / "dd"))
    assert refused.returncode == 2 and not (tmp_path / "dd").exists()
    assert "DD-Ranking cannot take digits (1-channel images)" in refused.stderr and "CIFAR10" in refused.stderr
    _, dataset, pixels, labels = cifar_set
    missing_last = DistilledSet(images=torch.zeros(18, 3, 32, 32), labels=torch.arange(9).repeat_interleave(2), method="m")
    with pytest.raises(ArtifactError, match=r"same number of images per class, got \[2, 2, 2, 2, 2, 2, 2, 2, 2, 0\]"):
        export_ddranking(missing_last, torch.zeros(18, 10), dataset, tmp_path / "dd2", {})
    assert not (tmp_path / "dd2").exists()
    with pytest.raises(ArtifactError, match="has no such dataset"):
        export_ddranking(missing_last, torch.zeros(18, 10), dataset, tmp_path / "dd2", {}, requested="CIFAR11")


def test_image_folders_need_a_ddranking_name_that_fits(tmp_path):
    from ddbench.contracts import DataOptions
    from ddbench.interop.ddranking_format import ddranking_dataset
    from ddbench.host.registry import get_dataset
    from tests.test_datasets import make_imagefolder

    make_imagefolder(tmp_path)
    folder = get_dataset("imagefolder").load(DataOptions(root=str(tmp_path)))
    with pytest.raises(ArtifactError, match="pass --ddranking-dataset .*TinyImageNet"):
        ddranking_dataset(folder)
    with pytest.raises(ArtifactError, match="TinyImageNet has 200 classes, this imagefolder data has 2"):
        ddranking_dataset(folder, "TinyImageNet")


def test_tensor_files_load_and_bad_ones_are_named(tmp_path, digits):
    images, labels = torch.rand(20, 1, 16, 16), torch.arange(10).repeat_interleave(2)
    torch.save({"images": images, "labels": labels, "soft_labels": torch.full((20, 10), 0.1)}, tmp_path / "x.pt")
    loaded, read = load_foreign_set(tmp_path / "x.pt", digits, pixels="unit")
    assert torch.allclose(loaded.images, normalize(images, digits.normalization)) and loaded.soft_labels == "stored"
    assert read["soft_labels"] == "probabilities"
    torch.save({"images": torch.rand(20, 3, 32, 32), "labels": labels}, tmp_path / "cifar.pt")
    with pytest.raises(ArtifactError, match=r"cifar\.pt: images of shape \[20, 3, 32, 32\].*--dataset"):
        load_foreign_set(tmp_path / "cifar.pt", digits)
    (tmp_path / "folder" / "not-a-class").mkdir(parents=True)
    with pytest.raises(ArtifactError, match="class folder 'not-a-class'"):
        load_foreign_set(tmp_path / "folder", digits)
    result = run_cli("eval", str(tmp_path / "x.pt"), "--out", str(tmp_path / "eval"), "--quiet")
    assert result.returncode == 2 and "pass --dataset" in result.stderr
