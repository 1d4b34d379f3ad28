"""Stage 1 of LIC (Section 2.1, Algorithm 1): select key samples, then group them for squeezing.

Per class c, a seeded random subset T'_c of ``subset_size`` training images is scored by the
observer with the loss-based importance score (Eq. 1)

    s_i = -CE(observer(x_i), y_i)

(observer in eval mode, no gradients), and the top ``N x IPC`` (highest score = lowest loss) are
kept, best first. ``group_ranks`` then decides which N kept images share a distilled image.

Every function is pure (tensors and an observer in, tensors out) so that each is unit-testable.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

SCORE_BATCH = 256  # images per scoring forward pass


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; its previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def draw_subset(pool: torch.Tensor, subset_size: int, generator: torch.Generator) -> torch.Tensor:
    """T'_c: ``subset_size`` indices of ``pool`` drawn uniformly without replacement (all of
    ``pool``, in random order, when it is smaller). One ``randperm`` on the CPU ``generator``."""
    order = torch.randperm(len(pool), generator=generator)[:subset_size]
    return pool[order]


@torch.no_grad()
def score_images(observer: nn.Module, images: torch.Tensor, labels: torch.Tensor | int,
                 batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """Eq. 1: ``s_i = -CE(observer(x_i), y_i)`` for every image, in eval mode, batched.

    ``labels`` is one class index for all images or a tensor of them. The scores stay on the
    images' device (float32); nothing here waits for the device.
    """
    if isinstance(labels, int):
        labels = torch.full((len(images),), labels, dtype=torch.int64, device=images.device)
    labels = labels.to(images.device)
    scores = []
    with eval_mode(observer):
        for start in range(0, len(images), batch_size):
            logits = observer(images[start:start + batch_size]).float()
            scores.append(-F.cross_entropy(logits, labels[start:start + batch_size], reduction="none"))
    if not scores:
        return images.new_zeros(0)
    return torch.cat(scores)


def rank_kept(scores: torch.Tensor, count: int, selection: bool = True,
              generator: torch.Generator | None = None, skip: int = 0) -> torch.Tensor:
    """Positions (into ``scores``) of the ``count`` kept images, in rank order (CPU int64).

    ``selection=True``: the highest scores, best first (a stable sort, so ties keep subset order).
    ``selection=False`` (the ablation): ``count`` positions drawn at random from the CPU
    ``generator``; their draw order is their rank. ``skip``: with selection, the ``skip``
    highest scores are passed over first (a score band; fewer when the subset is too small).
    """
    if count > len(scores):
        raise ValueError(f"cannot keep {count} images out of {len(scores)} scored")
    if selection:
        skip = max(0, min(skip, len(scores) - count))
        return torch.sort(scores.detach().cpu(), descending=True, stable=True).indices[skip:skip + count]
    return torch.randperm(len(scores), generator=generator)[:count]


def group_ranks(ranked: torch.Tensor, ipc: int, n: int, grouping: str = "spread") -> torch.Tensor:
    """``[N * IPC, ...]`` items in rank order -> ``[IPC, N, ...]``: row i lists the N items of
    distilled image i, in row-major tile order.

    ``spread`` (RDED): image i holds ranks i, IPC + i, 2 IPC + i, ..., so the best images are
    spread across the distilled images. ``consecutive``: image i holds ranks iN .. iN + N - 1.
    """
    if len(ranked) != n * ipc:
        raise ValueError(f"grouping needs N * IPC = {n} * {ipc} = {n * ipc} ranked items, got {len(ranked)}")
    rest = ranked.shape[1:]
    if grouping == "spread":
        return ranked.reshape(n, ipc, *rest).transpose(0, 1).contiguous()
    if grouping == "consecutive":
        return ranked.reshape(ipc, n, *rest).contiguous()
    raise ValueError(f"unknown grouping {grouping!r}; use spread or consecutive")
