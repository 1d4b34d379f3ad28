"""Test accuracy of a classifier over an image source, batched, one host sync at the end."""

from __future__ import annotations

import torch
from torch import nn

from ddbench.data.base import ImageSource


@torch.no_grad()
def accuracy(model: nn.Module, source: ImageSource, device: torch.device, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent of ``model`` (put in eval mode) on every image of ``source``."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    labels = source.labels
    for start in range(0, len(source), batch_size):
        index = torch.arange(start, min(start + batch_size, len(source)))
        images = source.load(index).to(device, non_blocking=True)
        predictions = model(images).argmax(dim=1)
        correct += (predictions == labels[index].to(device, non_blocking=True)).sum()
    model.train(was_training)
    return 100.0 * correct.item() / max(1, len(source))
