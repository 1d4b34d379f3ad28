"""Training-time augmentation of the verifier, from the budget's ``augmentation`` string:
'+'-joined parts applied in order, each with per-sample random parameters.

- ``flip``: random horizontal flip (p = 0.5).
- ``crop``: random resized crop back to full size (scale 0.5-1, ratio 3/4-4/3), as in RDED/SRe2L relabel.
- ``dsa``: DSA, one family per call (Zhao & Bilen 2021), per-sample parameters.
- ``none``: nothing.
"""

from __future__ import annotations

from typing import Callable

import torch

from ddbench.settings.budget import PARTS, parse_augmentation  # noqa: F401  (re-exported)

Augmentation = Callable[[torch.Tensor], torch.Tensor]
def _flip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def build_augmentation(spec: str, image_size: int) -> Augmentation:
    """The augmentation ``spec`` names, as one callable on a batch."""
    steps: list[Augmentation] = []
    for part in parse_augmentation(spec):
        if part == "flip":
            steps.append(_flip)
        elif part == "crop":
            import kornia.augmentation as K

            steps.append(K.RandomResizedCrop((image_size, image_size), scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)))
        elif part == "dsa":
            from ddbench.augment.dsa import DSA

            steps.append(DSA())

    def augment(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return augment
