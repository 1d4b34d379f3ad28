"""Sets from and for other tools: an ImageFolder export evaluated with ``ddbench eval`` gives the
accuracy of the set itself; the DD-Ranking export has the tensors that layout needs; foreign
tensor files load with their soft labels, and bad ones are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddbench.artifacts import save_distilled
from ddbench.contracts import DistilledSet
from ddbench.io import ArtifactError
from ddbench.set_formats import load_foreign_set, normalize
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


def test_ddranking_export_has_the_layout_compute_metrics_expects(tmp_path, eight_bit_set, digits):
    path, distilled = eight_bit_set
    observer = tmp_path / "cache"
    trained = run_cli("observer", "train", "--observer-epochs", "1", "--cache-dir", str(observer))
    assert trained.returncode == 0, trained.stderr
    exported = run_cli("export", str(path), "--format", "ddranking", "--out", str(tmp_path / "dd"),
                       "--observer-epochs", "1", "--cache-dir", str(observer))
    assert exported.returncode == 0, exported.stderr
    images = torch.load(tmp_path / "dd" / "images.pt", weights_only=True)
    soft = torch.load(tmp_path / "dd" / "labels.pt", weights_only=True)
    hard = torch.load(tmp_path / "dd" / "hard_labels.pt", weights_only=True)
    assert images.dtype == torch.float32 and tuple(images.shape) == (20, 1, 16, 16)
    assert soft.dtype == torch.float32 and tuple(soft.shape) == (20, 10)  # one logit row per image (mode 'S')
    assert hard.dtype == torch.int64 and torch.equal(hard, torch.arange(10).repeat_interleave(2))  # class-major, IPC each
    assert torch.equal(images, distilled.images)  # normalised, as DD-Ranking's tensors are
    meta = json.loads((tmp_path / "dd" / "meta.json").read_text())
    assert meta["ipc"] == 2 and meta["dataset"] == "digits" and meta["normalization"]["mean"] == list(digits.normalization.mean)
    back, read = load_foreign_set(tmp_path / "dd", digits)
    assert read == {"layout": "ddranking", "pixels": "normalized", "soft_labels": "logits"}
    assert torch.allclose(back.stored_soft_labels, torch.softmax(soft, dim=1))
    evaluated = run_cli("eval", str(tmp_path / "dd"), "--dataset", "digits", "--eval-option", "label_source=set",
                        "--eval-option", "region_sampling=whole", "--cache-dir", str(observer), "--out",
                        str(tmp_path / "eval"), *FAST)
    assert evaluated.returncode == 0, evaluated.stderr


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
