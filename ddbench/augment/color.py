"""DSA's colour ops as Kornia augmentations (Zhao & Bilen 2021, VICO-UoE/DatasetCondensation).

Kornia's own ``RandomBrightness`` / ``RandomSaturation`` / ``RandomContrast`` clamp to ``[0, 1]``, work
in HSV or scale about zero, which is not DSA. These subclasses of
:class:`kornia.augmentation.IntensityAugmentationBase2D` implement DSA's formulas exactly, on
normalised tensors, with no clamping:

- brightness: ``x + b``, ``b = u - 0.5``;
- saturation: ``(x - m) * s + m``, ``m`` the per-pixel mean over channels, ``s = 2 u``;
- contrast: ``(x - m) * c + m``, ``m`` the per-sample mean over ``C, H, W``, ``c = u + 0.5``;

with ``u ~ U[0, 1)`` drawn once per sample (one value shared by all channels). The factor itself is
the Kornia parameter (``params["brightness"]``, ``params["saturation"]``, ``params["contrast"]``,
shape ``(B,)``), drawn by :class:`DSAFactorGenerator` apart from ``apply_transform``, so a draw can be
replayed with ``aug(x, params=params)`` and composes with Kornia's geometric augmentations.

Randomness follows Kornia's convention: torch's global RNG on the augmentation's RNG device (CPU
unless moved with ``set_rng_device_and_dtype``); ``apply_transform`` moves the factors to the input's
device with a non-blocking copy, so nothing waits for the GPU.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from kornia.augmentation.random_generator import RandomGeneratorBase
from torch import Tensor

__all__ = ["DSABrightness", "DSAContrast", "DSAFactorGenerator", "DSASaturation", "to_device"]


def to_device(t: Tensor, device: torch.device, dtype: Optional[torch.dtype] = None) -> Tensor:
    """Move ``t`` to ``device`` (and ``dtype``) without making the host wait for queued GPU work.

    A blocking copy from pageable CPU memory to CUDA ends in a stream synchronisation; a
    non-blocking one stages the (tiny) parameter tensor and returns. The dtype cast is done first,
    on the source device.
    """
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if t.device == device:
        return t
    non_blocking = t.device.type == "cpu" and device.type == "cuda" and not t.is_pinned()
    return t.to(device, non_blocking=non_blocking)


class DSAFactorGenerator(RandomGeneratorBase):
    """Kornia parameter generator for one per-sample factor ``offset + scale * u``, ``u ~ U[0, 1)``.

    This is DSA's ``torch.rand(B)`` draw followed by its affine map. ``same_on_batch`` draws one
    ``u`` and repeats it over the batch.
    """

    def __init__(self, name: str, offset: float, scale: float) -> None:
        super().__init__()
        self.name = name
        self.offset = float(offset)
        self.scale = float(scale)

    def __repr__(self) -> str:
        return f"{self.name}={self.offset} + {self.scale} * U[0, 1)"

    def make_samplers(self, device: torch.device, dtype: torch.dtype) -> None:
        # Nothing to pre-build: ``forward`` calls ``torch.rand`` on ``self.device`` directly.
        pass

    def forward(self, batch_shape: Tuple[int, ...], same_on_batch: bool = False) -> Dict[str, Tensor]:
        batch_size = int(batch_shape[0])
        u = torch.rand(1 if same_on_batch else batch_size, device=self.device, dtype=self.dtype)
        if same_on_batch:
            u = u.repeat(batch_size)
        return {self.name: u * self.scale + self.offset}


class _DSAColour(IntensityAugmentationBase2D):
    """Shared plumbing: one factor per sample, no clamping, ``p = 1`` by default (DSA always applies)."""

    _name: str = ""
    _offset: float = 0.0
    _scale: float = 1.0

    def __init__(self, same_on_batch: bool = False, p: float = 1.0, keepdim: bool = False) -> None:
        super().__init__(p=p, same_on_batch=same_on_batch, keepdim=keepdim)
        self._param_generator = DSAFactorGenerator(self._name, self._offset, self._scale)

    def _factor(self, input: Tensor, params: Dict[str, Tensor]) -> Tensor:
        return to_device(params[self._name], input.device, input.dtype).view(-1, 1, 1, 1)


class DSABrightness(_DSAColour):
    """DSA brightness: ``x + b`` with ``b ~ U[-0.5, 0.5)`` per sample (``params["brightness"]``)."""

    _name, _offset, _scale = "brightness", -0.5, 1.0

    def apply_transform(
        self, input: Tensor, params: Dict[str, Tensor], flags: Dict[str, Any], transform: Optional[Tensor] = None
    ) -> Tensor:
        return input + self._factor(input, params)


class DSASaturation(_DSAColour):
    """DSA saturation: ``(x - m) * s + m``, ``m = x.mean(channels)``, ``s ~ U[0, 2)`` (``params["saturation"]``)."""

    _name, _offset, _scale = "saturation", 0.0, 2.0

    def apply_transform(
        self, input: Tensor, params: Dict[str, Tensor], flags: Dict[str, Any], transform: Optional[Tensor] = None
    ) -> Tensor:
        mean = input.mean(dim=1, keepdim=True)
        return (input - mean) * self._factor(input, params) + mean


class DSAContrast(_DSAColour):
    """DSA contrast: ``(x - m) * c + m``, ``m = x.mean((C, H, W))``, ``c ~ U[0.5, 1.5)`` (``params["contrast"]``)."""

    _name, _offset, _scale = "contrast", 0.5, 1.0

    def apply_transform(
        self, input: Tensor, params: Dict[str, Tensor], flags: Dict[str, Any], transform: Optional[Tensor] = None
    ) -> Tensor:
        mean = input.mean(dim=(1, 2, 3), keepdim=True)
        return (input - mean) * self._factor(input, params) + mean
