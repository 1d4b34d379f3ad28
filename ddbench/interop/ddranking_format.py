"""DD-Ranking's folder layout (NUS-HPC-AI-Lab/DD-Ranking, checked against ddranking 0.2.0):
write our sets for it and read its sets back, converting the pixel normalisation on the way.

DD-Ranking takes a set as tensors: ``images.pt`` (float [N, 3, H, W], normalised with *its*
statistics for the dataset, class-major with IPC images per class when no hard labels are
given), ``labels.pt`` (soft labels: teacher logits [N, K], its mode ``S``) and optionally the
hard labels. Its datasets and statistics (``ddranking/utils/data.py`` in 0.2.0):

| DD-Ranking name | classes | default size | mean / std | lines |
| --- | --- | --- | --- | --- |
| CIFAR10 | 10 | 32 | (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010) | 58-63 |
| CIFAR100 | 100 | 32 | the same as CIFAR10 | 81-86 |
| TinyImageNet | 200 | 64 | ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) | 104-109 |
| ImageNette, ImageWoof, ImageMeow, ImageSquawk, ImageFruit, ImageYellow | 10 | 128 | ImageNet's | 125-133 |
| ImageNet1K | 1000 | 224 | ImageNet's | 158-164 |

ddbench normalises CIFAR-10 with std (0.2470, 0.2435, 0.2616) and CIFAR-100 with its own
statistics, so a set is converted (through [0, 1] pixels) both ways; a dataset DD-Ranking does
not have (digits, MNIST, Fashion-MNIST: one channel) is refused rather than written in a form
it cannot read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddbench.contracts import DistilledSet, Normalization
from ddbench.data.base import denormalize, normalize
from ddbench.store.io import ArtifactError, load_torch_file

DDRANKING_VERSION = "0.2.0"
DDRANKING_FORMAT = "ddbench-ddranking-export/2"
CIFAR_STATS = Normalization(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
IMAGENET_STATS = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
IMAGENET_SUBSETS = ("ImageNette", "ImageWoof", "ImageMeow", "ImageSquawk", "ImageFruit", "ImageYellow")


@dataclass(frozen=True)
class DDRankingDataset:
    name: str
    num_classes: int
    image_size: int
    normalization: Normalization


DDRANKING_DATASETS = {
    "CIFAR10": DDRankingDataset("CIFAR10", 10, 32, CIFAR_STATS),
    "CIFAR100": DDRankingDataset("CIFAR100", 100, 32, CIFAR_STATS),
    "TinyImageNet": DDRankingDataset("TinyImageNet", 200, 64, IMAGENET_STATS),
    **{name: DDRankingDataset(name, 10, 128, IMAGENET_STATS) for name in IMAGENET_SUBSETS},
    "ImageNet1K": DDRankingDataset("ImageNet1K", 1000, 224, IMAGENET_STATS),
}
AUTOMATIC = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}  # ours -> theirs, without asking
SUPPORTED = (f"DD-Ranking {DDRANKING_VERSION} takes 3-channel sets of {', '.join(DDRANKING_DATASETS)} "
             f"(ddbench's cifar10 and cifar100, or imagefolder data named with --ddranking-dataset)")


def ddranking_dataset(dataset: Any, requested: str | None = None) -> DDRankingDataset:
    """DD-Ranking's dataset for ours: automatic for CIFAR, ``requested`` for image folders
    (Tiny-ImageNet, ImageNet subsets, ImageNet-1K); anything it cannot take is refused."""
    if dataset.channels != 3:
        raise ArtifactError(f"DD-Ranking cannot take {dataset.name} ({dataset.channels}-channel images): {SUPPORTED}")
    name = requested or AUTOMATIC.get(dataset.name)
    if name is None:
        raise ArtifactError(f"which DD-Ranking dataset is this {dataset.name} data? pass --ddranking-dataset "
                            f"({', '.join(n for n in DDRANKING_DATASETS if n not in AUTOMATIC.values())}); {SUPPORTED}")
    if name not in DDRANKING_DATASETS:
        raise ArtifactError(f"--ddranking-dataset {name!r}: DD-Ranking has no such dataset; {SUPPORTED}")
    target = DDRANKING_DATASETS[name]
    if AUTOMATIC.get(dataset.name, name) != name:
        raise ArtifactError(f"{dataset.name} is DD-Ranking's {AUTOMATIC[dataset.name]}, not {name}")
    if target.num_classes != dataset.num_classes:
        raise ArtifactError(f"DD-Ranking's {name} has {target.num_classes} classes, this {dataset.name} data has "
                            f"{dataset.num_classes}: DD-Ranking cannot evaluate it; {SUPPORTED}")
    return target


def renormalize(images: torch.Tensor, source: Normalization, target: Normalization) -> torch.Tensor:
    """Images normalised with ``source`` statistics, normalised with ``target``'s instead."""
    return normalize(denormalize(images.float(), source), target)


def export_ddranking(distilled: DistilledSet, logits: torch.Tensor, dataset: Any, target: Path, meta: dict[str, Any],
                     requested: str | None = None) -> tuple[Path, DDRankingDataset]:
    """Write ``images.pt`` (float32 [N, 3, H, W], normalised with DD-Ranking's statistics,
    class-major), ``labels.pt`` (float32 [N, K] teacher logits: mode ``S``), ``hard_labels.pt``
    (int64 [N]) and ``meta.json`` into the new folder ``target``."""
    from ddbench.store.io import write_folder

    theirs = ddranking_dataset(dataset, requested)
    order = torch.argsort(distilled.labels, stable=True)  # class-major, as DD-Ranking builds its hard labels
    counts = torch.bincount(distilled.labels, minlength=dataset.num_classes).tolist()
    if len(set(counts)) != 1:
        raise ArtifactError(f"DD-Ranking needs the same number of images per class, got {counts}")
    images = renormalize(distilled.images[order], dataset.normalization, theirs.normalization).contiguous()
    size = list(dataset.image_shape[1:])
    record = {"format": DDRANKING_FORMAT, "ddranking_version": DDRANKING_VERSION, "dataset": theirs.name,
              "ipc": counts[0], "num_classes": theirs.num_classes, "im_size": size,
              "normalization": {"mean": list(theirs.normalization.mean), "std": list(theirs.normalization.std)},
              "im_size_note": ("DD-Ranking's default size for this dataset" if size == [theirs.image_size] * 2 else
                               f"not DD-Ranking's default {theirs.image_size}: set im_size: {size} in its config"),
              **meta}

    def write(folder: Path) -> None:
        torch.save(images, folder / "images.pt")
        torch.save(logits[order].float().contiguous(), folder / "labels.pt")
        torch.save(distilled.labels[order].long().contiguous(), folder / "hard_labels.pt")
        (folder / "meta.json").write_text(json.dumps(record, indent=2) + "\n")

    return write_folder(target, write), theirs


def read_ddranking(path: Path, dataset: Any) -> dict[str, torch.Tensor]:
    """``images`` (normalised with ddbench's statistics), ``labels``, and ``soft_logits`` when
    ``labels.pt`` is there, from a DD-Ranking folder. The folder's pixels are taken as
    normalised with the statistics its ``meta.json`` records (our exports), else with
    DD-Ranking's for the dataset."""
    meta_path = path / "meta.json"
    meta = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{meta_path}: unreadable ({exc}); fix or remove it") from None
    recorded = meta.get("normalization") if meta.get("format") == DDRANKING_FORMAT else None
    if recorded:
        theirs = Normalization(tuple(recorded["mean"]), tuple(recorded["std"]))
    elif dataset.name in AUTOMATIC or (dataset.name == "imagefolder" and dataset.channels == 3):
        theirs = DDRANKING_DATASETS[AUTOMATIC.get(dataset.name, "ImageNet1K")].normalization
    else:
        raise ArtifactError(f"{path}: a DD-Ranking folder for {dataset.name}, a dataset DD-Ranking does not have, so its "
                            f"normalisation is unknown; {SUPPORTED}. Save the set as a tensor file and pass --pixels")
    images = load_torch_file(path / "images.pt")
    if not isinstance(images, torch.Tensor):
        raise ArtifactError(f"{path / 'images.pt'}: expected a tensor [N, C, H, W]")
    tensors = {"images": renormalize(images, theirs, dataset.normalization)}
    if (path / "labels.pt").exists():
        tensors["soft_logits"] = load_torch_file(path / "labels.pt")
    if (path / "hard_labels.pt").exists():
        tensors["labels"] = load_torch_file(path / "hard_labels.pt")
    else:
        count = len(images)
        if count % dataset.num_classes:
            raise ArtifactError(f"{path}: {count} images do not split evenly over {dataset.num_classes} classes; "
                                f"add hard_labels.pt")
        tensors["labels"] = torch.arange(dataset.num_classes).repeat_interleave(count // dataset.num_classes)
    return tensors
