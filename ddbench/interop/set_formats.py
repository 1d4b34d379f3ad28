"""Distilled sets in other tools' layouts: read them for ``ddbench eval``, write ours for them.

Read (``load_foreign_set``):

- an image folder: ``<dir>/<class>/<image>.png|jpg|...``, the class folders named by the
  dataset's class names or by their indices (``0`` .. ``K-1``); pixels decoded to [0, 1] and
  normalised with the dataset's statistics;
- a DD-Ranking folder: ``<dir>/images.pt`` (float [N, C, H, W], normalised with DD-Ranking's
  statistics, converted to ours: :mod:`ddbench.interop.ddranking_format`) and ``<dir>/labels.pt``
  (soft labels: teacher logits [N, K]), optionally ``hard_labels.pt``; without it the images
  are class-major with the same count per class, as DD-Ranking assumes;
- a tensor file, ``.safetensors`` or ``.pt`` (``weights_only`` loading): ``images``
  (float [N, C, H, W]) and ``labels`` (int64 [N]), optionally ``soft_labels`` (probabilities
  [N, K]) or ``soft_logits`` (logits [N, K]).

Tensor files' images are taken as normalised with the dataset's statistics (what MTT and
ddbench save) unless ``pixels="unit"`` says they are in [0, 1].

Write: ``export_imagefolder`` (8-bit PNGs per class) here, and DD-Ranking's layout in
:mod:`ddbench.interop.ddranking_format`; each export is written to a temporary folder renamed into
place, so nothing half-written is left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import torch
from torch import nn

from ddbench.contracts import DistilledSet, Normalization
from ddbench.data.base import Dataset, denormalize, normalize
from ddbench.store.io import TORCH_SUFFIXES, ArtifactError, load_tensors, load_torch_file, write_folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
PIXEL_RANGES = ("normalized", "unit")


def to_pixels(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Normalised images back to 8-bit pixels (uint8), clamped to the valid range."""
    return (denormalize(images.float(), normalization).clamp(0, 1) * 255).round().to(torch.uint8)


def _fits(images: torch.Tensor, labels: torch.Tensor, dataset: Dataset, where: Path) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != dataset.image_shape:
        raise ArtifactError(f"{where}: images of shape {list(images.shape)}, but {dataset.name} needs "
                            f"[N, {', '.join(map(str, dataset.image_shape))}]; pass the --dataset and --image-size it was made for")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ArtifactError(f"{where}: {len(images)} images but labels of shape {list(labels.shape)}")


def _soft(tensors: dict[str, torch.Tensor], dataset: Dataset, where: Path) -> tuple[str, torch.Tensor | None, str]:
    """(``soft_labels`` kind, probabilities or None, what they were) from optional soft targets."""
    for key, kind in (("soft_labels", "probabilities"), ("soft_logits", "logits")):
        if key in tensors:
            soft = tensors[key].float()
            if soft.ndim != 2 or soft.shape[1] != dataset.num_classes:
                raise ArtifactError(f"{where}: {key} of shape {list(soft.shape)}, expected [N, {dataset.num_classes}]")
            probabilities = soft if kind == "probabilities" else torch.softmax(soft, dim=1)
            return "stored", probabilities, kind
    return "observer", None, "none"


def _class_index(name: str, dataset: Dataset, where: Path) -> int:
    if name in dataset.class_names:
        return list(dataset.class_names).index(name)
    if name.isdigit() and int(name) < dataset.num_classes:
        return int(name)
    raise ArtifactError(f"{where}: class folder {name!r} is neither a {dataset.name} class name "
                        f"({', '.join(dataset.class_names)}) nor an index below {dataset.num_classes}")


def _load_imagefolder(folder: Path, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    mode = "L" if dataset.channels == 1 else "RGB"
    images, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = _class_index(class_dir.name, dataset, folder)
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
            try:
                with Image.open(path) as picture:
                    array = torch.from_numpy(numpy.asarray(picture.convert(mode)).copy())
            except OSError as exc:
                raise ArtifactError(f"{path}: not a readable image ({exc})") from None
            images.append((array.view(*array.shape[:2], -1).permute(2, 0, 1).float() / 255.0))
            labels.append(label)
    if not images:
        raise ArtifactError(f"{folder}: no images in class folders (expected {folder}/<class>/<image>.png)")
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ArtifactError(f"{folder}: images of different shapes {sorted(shapes)}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def load_foreign_set(path: Path, dataset: Dataset, pixels: str = "normalized") -> tuple[DistilledSet, dict[str, Any]]:
    """A distilled set another tool wrote (see the module docstring) and what was read."""
    if pixels not in PIXEL_RANGES:
        raise ValueError(f"pixels={pixels!r}: use one of {', '.join(PIXEL_RANGES)}")
    path = Path(path)
    if path.is_dir() and (path / "images.pt").exists():
        from ddbench.interop.ddranking_format import read_ddranking

        tensors, layout, pixels = read_ddranking(path, dataset), "ddranking", "normalized"
    elif path.is_dir():
        images, labels = _load_imagefolder(path, dataset)
        tensors, layout, pixels = {"images": images, "labels": labels}, "imagefolder", "unit"
    elif path.suffix in TORCH_SUFFIXES:
        tensors, layout = load_torch_file(path), "torch"
        if not isinstance(tensors, dict):
            raise ArtifactError(f"{path}: expected a dict with 'images' and 'labels' tensors")
    else:
        tensors, _ = load_tensors(path)
        layout = "safetensors"
    if not all(isinstance(tensors.get(key), torch.Tensor) for key in ("images", "labels")):
        raise ArtifactError(f"{path}: needs tensors 'images' [N, C, H, W] and 'labels' [N] (has {', '.join(sorted(tensors))})")
    raw_labels = tensors["labels"]
    if raw_labels.is_floating_point() and not bool((raw_labels == raw_labels.round()).all()):
        raise ArtifactError(f"{path}: 'labels' holds fractional values (class indices are integers); store soft "
                            f"labels as 'soft_labels' (probabilities) or 'soft_logits' [N, K] beside integer 'labels'")
    images, labels = tensors["images"].float(), raw_labels.long()
    if pixels == "unit":
        images = normalize(images.float(), dataset.normalization)
    _fits(images, labels, dataset, path)
    soft_kind, probabilities, soft_what = _soft(tensors, dataset, path)
    distilled = DistilledSet(images=images.contiguous(), labels=labels, method=path.stem, soft_labels=soft_kind,
                             stored_soft_labels=probabilities)
    return distilled, {"layout": layout, "pixels": pixels, "soft_labels": soft_what}


def export_imagefolder(distilled: DistilledSet, normalization: Normalization, class_names, target: Path) -> Path:
    """One 8-bit PNG per distilled image under ``target/<class name>/``."""
    from PIL import Image

    pixels = to_pixels(distilled.images, normalization)

    def write(folder: Path) -> None:
        counters: dict[int, int] = {}
        for image, label in zip(pixels, distilled.labels.tolist()):
            index = counters.get(label, 0)
            counters[label] = index + 1
            array = image.permute(1, 2, 0).numpy()
            picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
            (folder / class_names[label]).mkdir(exist_ok=True)
            picture.save(folder / class_names[label] / f"{index:05d}.png")

    return write_folder(target, write)


@torch.no_grad()
def teacher_logits(teacher: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    teacher.eval()
    return torch.cat([teacher(chunk.to(device)).float().cpu() for chunk in images.split(batch_size)])
