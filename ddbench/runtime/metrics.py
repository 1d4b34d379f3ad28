"""Test accuracy of a classifier over an image source, batched, one host sync at the end."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ddbench.data.base import ImageSource
from ddbench.data.batches import BatchReader


@torch.no_grad()
def accuracy(model: nn.Module, source: ImageSource, device: torch.device, batch_size: int = 500,
             cluster: Any = None) -> float:
    """Top-1 accuracy in percent of ``model`` (put in eval mode) on every image of ``source``.

    ``cluster`` (several ranks holding the same model): each rank tests every world-size-th
    batch and the counts are summed, so every rank returns the accuracy on the whole source.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    labels = source.labels
    rank, world = (cluster.rank, cluster.world_size) if cluster is not None and cluster.active else (0, 1)
    mine = torch.cat([batch for number, batch in enumerate(torch.arange(len(source)).split(batch_size))
                      if number % world == rank] or [torch.zeros(0, dtype=torch.int64)])
    for index, images in BatchReader(source, device)(mine, batch_size):
        predictions = model(images).argmax(dim=1)
        correct += (predictions == labels[index].to(device, non_blocking=True)).sum()
    model.train(was_training)
    total = correct.item() if world == 1 else int(cluster.sum(correct.view(1)).item())
    return 100.0 * total / max(1, len(source))
