"""Data augmentation for distillation and evaluation: DSA (Zhao & Bilen 2021) on Kornia.

Names are loaded lazily so that importing :mod:`ddbench.augment` does not import torch or kornia.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_STRATEGY", "DSA", "DSAParams", "parse_strategy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ddbench.augment import dsa

        return getattr(dsa, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
