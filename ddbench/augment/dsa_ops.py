"""DSA's own transformations where Kornia's differ from DSA's (crop, scale, cutout) and the
families' constants, as Zhao & Bilen (2021) define them; composed by :mod:`ddbench.augment.dsa`."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from kornia.augmentation import IntensityAugmentationBase2D, RandomAffine, RandomHorizontalFlip
from kornia.augmentation.random_generator import RandomGeneratorBase
from torch import Tensor

from ddbench.augment.color import DSABrightness, DSAContrast, DSASaturation, to_device


# DSA's ParamDiffAug defaults.
FLIP_P = 0.5


SCALE_RATIO = 1.2


ROTATE_DEGREES = 15.0


CROP_RATIO = 0.125


CUTOUT_RATIO = 0.5


def _half_up(size: int, ratio: float) -> int:
    """DSA's ``int(size * ratio + 0.5)``."""
    return int(size * ratio + 0.5)


class _RatioGenerator(RandomGeneratorBase):
    """A parameter generator sized by a fraction of the image side; draws with ``torch.randint``."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = float(ratio)

    def __repr__(self) -> str:
        return f"ratio={self.ratio}"

    def make_samplers(self, device: torch.device, dtype: torch.dtype) -> None:
        pass


class DSACropGenerator(_RatioGenerator):
    """Affine parameters of a DSA crop: integer ``(dx, dy)``, no rotation, scale or shear."""

    def __init__(self, ratio: float = CROP_RATIO) -> None:
        super().__init__(ratio)

    def forward(self, batch_shape: Tuple[int, ...], same_on_batch: bool = False) -> Dict[str, Tensor]:
        batch, height, width = int(batch_shape[0]), int(batch_shape[-2]), int(batch_shape[-1])
        n = 1 if same_on_batch else batch
        shift_h, shift_w = _half_up(height, self.ratio), _half_up(width, self.ratio)
        dy = torch.randint(-shift_h, shift_h + 1, (n,), device=self.device)
        dx = torch.randint(-shift_w, shift_w + 1, (n,), device=self.device)
        translations = torch.stack([dx, dy], dim=-1).to(self.dtype).repeat(batch // n, 1)
        center = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], device=self.device, dtype=self.dtype)
        zeros = torch.zeros(batch, device=self.device, dtype=self.dtype)
        return {
            "translations": translations,
            "center": center.expand(batch, 2),
            "scale": torch.ones(batch, 2, device=self.device, dtype=self.dtype),
            "angle": zeros,
            "shear_x": zeros,
            "shear_y": zeros,
        }


class DSACrop(RandomAffine):
    """DSA crop: integer translation up to ``int(ratio * H + 0.5)`` rows / ``int(ratio * W + 0.5)`` columns.

    A ``RandomAffine`` with zero padding, ``align_corners=True`` and nearest resampling (exact for
    integer shifts); only the parameter generator differs.
    """

    def __init__(self, ratio: float = CROP_RATIO, same_on_batch: bool = False, p: float = 1.0) -> None:
        super().__init__(
            degrees=0.0,
            resample="nearest",
            padding_mode="zeros",
            align_corners=True,
            same_on_batch=same_on_batch,
            p=p,
        )
        self._param_generator = DSACropGenerator(ratio)


class DSAScale(RandomAffine):
    """DSA scale: ``sx, sy ~ U[1/ratio, ratio]`` independently; Kornia's ``params["scale"] = (1/sx, 1/sy)``.

    DSA samples the input at ``sx * (output coordinate)`` about the centre; Kornia's scale zooms the
    content, so it is the reciprocal. Bilinear, zero padding, ``align_corners=True``.
    """

    def __init__(self, ratio: float = SCALE_RATIO, same_on_batch: bool = False, p: float = 1.0) -> None:
        lo, hi = 1.0 / ratio, float(ratio)
        super().__init__(
            degrees=0.0,
            scale=(lo, hi, lo, hi),
            resample="bilinear",
            padding_mode="zeros",
            align_corners=True,
            same_on_batch=same_on_batch,
            p=p,
        )

    def generate_parameters(self, batch_shape: Tuple[int, ...]) -> Dict[str, Tensor]:
        params = super().generate_parameters(batch_shape)
        params["scale"] = 1.0 / params["scale"]
        return params


class DSACutoutGenerator(_RatioGenerator):
    """Integer square centres, DSA's ``randint(0, H + (1 - size_h % 2))`` (and likewise for W)."""

    def __init__(self, ratio: float = CUTOUT_RATIO) -> None:
        super().__init__(ratio)

    def forward(self, batch_shape: Tuple[int, ...], same_on_batch: bool = False) -> Dict[str, Tensor]:
        batch, height, width = int(batch_shape[0]), int(batch_shape[-2]), int(batch_shape[-1])
        n = 1 if same_on_batch else batch
        size_h, size_w = _half_up(height, self.ratio), _half_up(width, self.ratio)
        cy = torch.randint(0, height + (1 - size_h % 2), (n,), device=self.device)
        cx = torch.randint(0, width + (1 - size_w % 2), (n,), device=self.device)
        return {"center_y": cy.repeat(batch // n), "center_x": cx.repeat(batch // n)}


class DSACutout(IntensityAugmentationBase2D):
    """DSA cutout: ``x * mask``, the mask zero on rows ``[cy - s_h//2, cy - s_h//2 + s_h)`` x the same for columns.

    ``s_h = int(ratio * H + 0.5)``; the part of the square outside the image is clipped.
    Parameters ``center_y``, ``center_x``: integer tensors of shape ``(B,)``.
    """

    def __init__(self, ratio: float = CUTOUT_RATIO, same_on_batch: bool = False, p: float = 1.0) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch)
        self.ratio = float(ratio)
        self._param_generator = DSACutoutGenerator(ratio)

    def apply_transform(
        self, input: Tensor, params: Dict[str, Tensor], flags: Dict[str, Any], transform: Optional[Tensor] = None
    ) -> Tensor:
        _, _, height, width = input.shape
        size_h, size_w = _half_up(height, self.ratio), _half_up(width, self.ratio)
        top = to_device(params["center_y"], input.device).view(-1, 1) - size_h // 2
        left = to_device(params["center_x"], input.device).view(-1, 1) - size_w // 2
        rows = torch.arange(height, device=input.device).view(1, -1)
        cols = torch.arange(width, device=input.device).view(1, -1)
        in_rows = (rows >= top) & (rows < top + size_h)  # (B, H)
        in_cols = (cols >= left) & (cols < left + size_w)  # (B, W)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
        return input * keep.unsqueeze(1).to(input.dtype)


def make_op(name: str) -> "torch.nn.Module":
    """The Kornia module behind one op of a DSA family (see :data:`ddbench.augment.dsa.FAMILY_OPS`)."""
    if name == "brightness":
        return DSABrightness()
    if name == "saturation":
        return DSASaturation()
    if name == "contrast":
        return DSAContrast()
    if name == "crop":
        return DSACrop(CROP_RATIO)
    if name == "cutout":
        return DSACutout(CUTOUT_RATIO)
    if name == "flip":
        return RandomHorizontalFlip(p=FLIP_P)
    if name == "scale":
        return DSAScale(SCALE_RATIO)
    if name == "rotate":
        return RandomAffine(
            degrees=ROTATE_DEGREES,
            resample="bilinear",
            padding_mode="zeros",
            align_corners=True,
            p=1.0,
        )
    raise KeyError(name)
