"""Image folders of any resolution (Tiny-ImageNet, ImageNet subsets), decoded on demand.

Accepted layouts under ``root``:

- ``train/<class>/**/<image>`` and a labelled test split in ``val/<class>/**/<image>``
  or ``test/<class>/**/<image>`` (``val`` wins when both exist);
- Tiny-ImageNet's own: ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with
  ``val/val_annotations.txt`` ("filename<TAB>wnid<TAB>..." per line).

Classes are the sorted train folder names. Images are decoded when first loaded (RGB), the
shorter side resized to ``image_size``, center-cropped to a square, rounded to 8-bit pixels,
and normalised with ImageNet's statistics when loaded. ``image_size`` defaults to 64,
Tiny-ImageNet's native size. A split that fits the memory budget at that size is decoded at
most once per process, and once per machine with a cache folder (:mod:`ddbench.data.decoded`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F

from ddbench.contracts import DataOptions, Normalization
from ddbench.data.base import Dataset, normalize
from ddbench.data.decoded import DEFAULT_MEMORY_BUDGET_GIB, DecodedPixels, default_workers
from ddbench.data.errors import DataFileError, DataRootError
from ddbench.store.io import atomic_write_text

DEFAULT_IMAGE_SIZE = 64
IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
TINY_ANNOTATIONS = os.path.join("val", "val_annotations.txt")

_FIX = "pass --data-root pointing at a folder with train/<class>/ images and val/<class>/ or test/<class>/ images (imagefolder cannot download)"


def resize_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Float [C, H, W]: resize so the shorter side is ``size`` (bilinear), then center-crop to a square."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = F.interpolate(
            image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1
        )[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top : top + size, left : left + size]


@dataclass
class ImageFolderSource:
    """A split of image files: labels in memory, pixels decoded on first use (and kept as uint8
    when the split fits ``memory_budget_bytes``; see :mod:`ddbench.data.decoded`)."""

    paths: list[str]
    labels: torch.Tensor
    normalization: Normalization
    image_size: int
    memory_budget_bytes: int = int(DEFAULT_MEMORY_BUDGET_GIB * 2**30)
    workers: int = 0
    cache_root: str | None = None  # where decoded splits are saved for later runs; None keeps them in memory only
    _pixels: DecodedPixels | None = field(default=None, init=False, repr=False)
    _content_digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} files but {len(self.labels)} labels")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self, progress=lambda n: None) -> str:
        """A digest of every file's path (relative to the folders' common root) and bytes, the
        labels and the working size: editing, adding, removing or relabelling a file changes it;
        moving or copying the folder does not, so a copy staged to a node's scratch disk finds
        the observers, decoded pixels and results of the last copy. With a cache folder the
        digest is remembered under the files' sizes and modification times, and the files are
        read again only when those change; ``progress(n)`` is told of each file read."""
        import hashlib

        if self._content_digest is not None:
            return self._content_digest
        memo = self._fingerprint_memo
        if memo is not None and memo.is_file():
            remembered = memo.read_text().strip()
            if len(remembered) == 64 and all(c in "0123456789abcdef" for c in remembered):
                self._content_digest = remembered
                return remembered
        content = hashlib.sha256(f"{self._digest_header()}:content".encode())
        for name, path in zip(self._relative_names, self.paths):
            with open(path, "rb") as file:
                data = file.read()
            content.update(f"{name}\0{len(data)}\n".encode())
            content.update(data)
            progress(1)
        self._content_digest = content.hexdigest()
        if memo is not None:
            atomic_write_text(memo, self._content_digest + "\n")
        return self._content_digest

    def fingerprint_pending(self) -> int:
        """Files a :meth:`fingerprint` would read now (none once it has run on this source, or
        when the cache folder remembers it)."""
        if self._content_digest is not None:
            return 0
        memo = self._fingerprint_memo
        return 0 if memo is not None and memo.is_file() else len(self.paths)

    def _digest_header(self) -> str:
        from ddbench.data.identity import tensor_digest

        return f"image-folder:{self.image_size}:{tensor_digest(self.labels)}"

    @cached_property
    def _relative_names(self) -> list[str]:
        root = os.path.commonpath(self.paths) if self.paths else ""
        return [os.path.relpath(path, root) for path in self.paths]

    @cached_property
    def _fingerprint_memo(self) -> Path | None:
        """Where the content digest of the files as they are now listed (names, sizes,
        modification times) is remembered; None without a cache folder. Listed once per
        source: :meth:`fingerprint_pending` and :meth:`fingerprint` share one pass of ``stat``."""
        if not self.cache_root:
            return None
        import hashlib

        listing = hashlib.sha256(f"{self._digest_header()}:listing".encode())
        for name, path in zip(self._relative_names, self.paths):
            stat = os.stat(path)
            listing.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return Path(self.cache_root) / "identity" / f"{listing.hexdigest()[:32]}.sha256"

    def decode_file(self, path: str) -> torch.Tensor:
        """One file as uint8 [3, S, S] (resized and cropped in float, rounded to 8 bits); a
        DataFileError naming the file if it cannot be read."""
        from torchvision.io import ImageReadMode, decode_image

        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its image codecs in favour of torchcodec
                warnings.filterwarnings("ignore", message=".*image decoding and encoding", category=DeprecationWarning)
                pixels = decode_image(path, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError, OSError) as err:
            raise DataFileError(f"could not decode image {path}: {err}; replace or delete the file") from err
        if pixels.ndim == 4:  # an animated GIF: keep the first frame
            pixels = pixels[0]
        resized = resize_and_crop(pixels.float() / 255.0, self.image_size)
        return (resized * 255.0).round().clamp(0, 255).to(torch.uint8)

    def decode_index(self, index: int) -> torch.Tensor:
        return self.decode_file(self.paths[index])

    @property
    def pixels(self) -> DecodedPixels:
        if self._pixels is None:
            from ddbench.data.identity import source_digest

            cache_file = None
            if self.cache_root:
                cache_file = Path(self.cache_root) / "decoded" / f"{source_digest(self)[:24]}-{self.image_size}px.u8"
            self._pixels = DecodedPixels(self.decode_index, len(self.paths), (3, self.image_size, self.image_size),
                                         self.memory_budget_bytes, workers=self.workers, cache_file=cache_file)
        return self._pixels

    @property
    def streamed(self) -> bool:
        """True when the split is over the memory budget: every load decodes its files (see
        :class:`ddbench.data.batches.BatchReader`, which then decodes in worker processes)."""
        return not self.pixels.held

    def decode_threads(self, count: int) -> None:
        """Threads a streamed load decodes on (a DataLoader worker uses one)."""
        self.pixels.workers = count

    def pending(self) -> int:
        """Images a :meth:`fill` would decode now."""
        return self.pixels.pending()

    def fill(self, progress=lambda n: None) -> None:
        """Decode every image of the split now, in worker processes (when it fits the budget)."""
        self.pixels.fill(progress)

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        batch = self.pixels.get(torch.as_tensor(indices))
        return normalize(batch.float() / 255.0, self.normalization)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder: str) -> list[str]:
    """Every image file below ``folder``, sorted by path (recursive, hidden files skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(os.path.join(dirpath, f) for f in filenames if _is_image(f))
    return sorted(found)


def _class_folders(split_dir: str) -> list[str]:
    return sorted(d for d in os.listdir(split_dir) if not d.startswith(".") and os.path.isdir(os.path.join(split_dir, d)))


def _scan_class_split(split_dir: str, class_to_idx: dict[str, int] | None) -> tuple[list[str], list[int], list[str]]:
    """Files and labels of ``split_dir/<class>/...``; with ``class_to_idx`` unknown classes are errors."""
    classes = _class_folders(split_dir)
    mapping = class_to_idx if class_to_idx is not None else {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for name in classes:
        files = _images_under(os.path.join(split_dir, name))
        if files and name not in mapping:
            raise DataFileError(f"{files[0]} is in class folder {name!r}, which is not a train class; remove it or add train/{name}/")
        paths.extend(files)
        labels.extend([mapping[name]] * len(files))
    return paths, labels, classes


def _scan_tiny_val(root: str, class_to_idx: dict[str, int]) -> tuple[list[str], list[int]]:
    """Tiny-ImageNet's ``val/images`` labelled by ``val/val_annotations.txt``."""
    annotations = os.path.join(root, TINY_ANNOTATIONS)
    paths, labels = [], []
    with open(annotations, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise DataFileError(f"{annotations} line {line_no}: expected 'filename<TAB>wnid', got {line.strip()!r}")
            path = os.path.join(root, "val", "images", fields[0])
            if fields[1] not in class_to_idx:
                raise DataFileError(f"{path}: class {fields[1]!r} ({annotations} line {line_no}) is not a train class")
            if not os.path.isfile(path):
                raise DataFileError(f"{path} is listed in {annotations} line {line_no} but does not exist")
            paths.append(path)
            labels.append(class_to_idx[fields[1]])
    return paths, labels


def load_imagefolder(options: DataOptions) -> Dataset:
    """An image-folder dataset from ``options.root`` (see the module docstring for layouts)."""
    if options.root is None:
        raise DataRootError(None, "a folder with train/<class>/ images", _FIX)
    root = os.path.expanduser(str(options.root))
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise DataRootError(root, "a train/ folder with one sub-folder per class", _FIX)
    size = options.image_size or DEFAULT_IMAGE_SIZE

    train_paths, train_labels, classes = _scan_class_split(train_dir, None)
    if not train_paths:
        raise DataRootError(train_dir, "image files (.jpg, .jpeg, .png, .gif, .webp) in its class sub-folders", _FIX)
    empty = [name for index, name in enumerate(classes) if index not in set(train_labels)]
    if empty:
        raise DataFileError(f"train class folder(s) {', '.join(repr(n) for n in empty)} in {train_dir} hold no image "
                            f"files; add images to them or remove the folder(s)")
    class_to_idx = {c: i for i, c in enumerate(classes)}

    if os.path.isfile(os.path.join(root, TINY_ANNOTATIONS)):
        test_paths, test_labels = _scan_tiny_val(root, class_to_idx)
        test_dir = os.path.join(root, TINY_ANNOTATIONS)
    else:
        test_paths, test_labels = [], []
        for split in ("val", "test"):
            split_dir = os.path.join(root, split)
            if os.path.isdir(split_dir):
                test_paths, test_labels, _ = _scan_class_split(split_dir, class_to_idx)
                test_dir = split_dir
                if test_paths:
                    break
    if not test_paths:
        raise DataRootError(
            root, f"a labelled test split: val/<class>/ or test/<class>/ images, or {TINY_ANNOTATIONS}", _FIX
        )
    untested = [name for index, name in enumerate(classes) if index not in set(test_labels)]
    if untested:
        raise DataFileError(f"class(es) {', '.join(repr(n) for n in untested)} of {train_dir} have no test images in "
                            f"{test_dir}: accuracy would silently leave them "
                            f"out; add their test images (val/<class>/ or test/<class>/) or remove the train folder(s)")

    norm = IMAGENET_NORMALIZATION
    memory = {"memory_budget_bytes": int(options.memory_budget_gib * 2**30),
              "workers": default_workers() if options.workers is None else options.workers,
              "cache_root": options.cache_dir}
    return Dataset(
        name="imagefolder",
        train=ImageFolderSource(train_paths, torch.tensor(train_labels), norm, size, **memory),
        test=ImageFolderSource(test_paths, torch.tensor(test_labels), norm, size, **memory),
        class_names=tuple(classes),
        channels=3,
        image_size=size,
        normalization=norm,
        source=root,
    )
