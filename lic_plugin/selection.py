"""Stage 1 of LIC (Section 2.1, Algorithm 1): select key samples, then group them for squeezing.

Per class c, a seeded random subset T'_c of ``subset_size`` training images is scored by the
observer with the loss-based importance score (Eq. 1)

    s_i = -CE(observer(x_i), y_i)

(observer in eval mode, no gradients), and the top ``N x IPC`` (highest score = lowest loss) are
kept, best first (``diversity=clusters``: the best of each of ``N x IPC`` feature-space
clusters of the subset; ``medoids``: the member nearest each cluster's mean, :func:`rank_diverse`). With ``crops=K`` each subset image is scored on K
random square crops (:func:`random_square_boxes`, :func:`crop_resized`; RDED's patches) and its
best-scored crop stands for it. ``group_ranks`` then decides which N kept images share a distilled image.

Every function is pure (tensors and an observer in, tensors out) so that each is unit-testable.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ddbench.api import FeatureReader, read_features

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
    labels = _label_tensor(labels, images)
    scores = []
    with eval_mode(observer):
        for start in range(0, len(images), batch_size):
            logits = observer(images[start:start + batch_size]).float()
            scores.append(-F.cross_entropy(logits, labels[start:start + batch_size], reduction="none"))
    return torch.cat(scores) if scores else images.new_zeros(0)


@torch.no_grad()
def score_and_embed(observer: nn.Module, layer: str, images: torch.Tensor, labels: torch.Tensor | int,
                    batch_size: int = SCORE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`score_images` and :func:`embed_images` from one forward pass per batch (what
    ``diversity=clusters`` needs): scores on the images' device, vectors on the CPU, copied there
    once after the last batch, so the device never waits on the host between batches."""
    labels = _label_tensor(labels, images)
    reader = FeatureReader(observer, layer)
    scores, vectors = [], []
    with eval_mode(observer):
        for start in range(0, len(images), batch_size):
            features, logits = reader.with_output(images[start:start + batch_size])
            scores.append(-F.cross_entropy(logits.float(), labels[start:start + batch_size], reduction="none"))
            vectors.append(_unit_mean(features))
    if not scores:
        return images.new_zeros(0), images.new_zeros(0, 0).cpu()
    return torch.cat(scores), torch.cat(vectors).cpu()


def _label_tensor(labels: torch.Tensor | int, images: torch.Tensor) -> torch.Tensor:
    if isinstance(labels, int):
        return torch.full((len(images),), labels, dtype=torch.int64, device=images.device)
    return labels.to(images.device)


def _unit_mean(features: torch.Tensor) -> torch.Tensor:
    """Features averaged over their spatial positions, scaled to unit length (float32, on the
    features' device: callers copy to the CPU once, after the last batch)."""
    features = features.float()
    if features.dim() > 2:
        features = features.flatten(2).mean(dim=2)
    return F.normalize(features, dim=1)


def random_square_boxes(images: int, crops: int, min_scale: float, height: int, width: int,
                        generator: torch.Generator) -> torch.Tensor:
    """``[images, crops, 4]`` boxes ``(left, top, width, height)`` as fractions of the image: square
    in pixels, covering a fraction of the image's area drawn uniformly from ``[min_scale, 1]``
    (torchvision's ``RandomResizedCrop`` with aspect ratio 1, as RDED crops), at a uniform
    position. Drawn on the CPU ``generator``."""
    area = min_scale + (1.0 - min_scale) * torch.rand(images, crops, generator=generator)
    side = (area * height * width).sqrt().clamp(max=min(height, width))
    box_w, box_h = side / width, side / height
    left = (1.0 - box_w) * torch.rand(images, crops, generator=generator)
    top = (1.0 - box_h) * torch.rand(images, crops, generator=generator)
    return torch.stack([left, top, box_w, box_h], dim=-1)


def crop_resized(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (``[B, 4]`` fractions, :func:`random_square_boxes`) resized to the image's
    full size (bilinear, batched, on the images' device)."""
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    left, top, box_w, box_h = boxes.unbind(dim=1)
    theta = torch.zeros(len(images), 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = box_w, 2 * left + box_w - 1
    theta[:, 1, 1], theta[:, 1, 2] = box_h, 2 * top + box_h - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False).to(images.dtype)


def rank_kept(scores: torch.Tensor, count: int, selection: bool = True,
              generator: torch.Generator | None = None, skip: int = 0) -> torch.Tensor:
    """Positions (into ``scores``) of the ``count`` kept images, in rank order (CPU int64).

    ``selection=True``: the highest scores, best first (a stable sort, so ties keep subset order).
    ``selection=False`` (the ablation): ``count`` positions drawn at random from the CPU
    ``generator``; their draw order is their rank. ``skip``: with selection, the ``skip``
    highest scores are passed over first (a score band; fewer when the subset is too small).
    """
    if selection:
        return score_band(scores, count, skip)[:count]
    check_keepable(scores, count)
    return torch.randperm(len(scores), generator=generator)[:count]


def check_keepable(scores: torch.Tensor, count: int) -> None:
    if count > len(scores):
        raise ValueError(f"cannot keep {count} images out of {len(scores)} scored")


def score_band(scores: torch.Tensor, count: int, skip: int = 0) -> torch.Tensor:
    """Positions (CPU int64) of the scored images that selection may keep, highest score first (a
    stable sort): all but the ``skip`` highest, fewer skipped where ``count`` would not be left."""
    check_keepable(scores, count)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    return order[max(0, min(skip, len(scores) - count)):]


def embed_images(observer: nn.Module, layer: str, images: torch.Tensor, batch_size: int = SCORE_BATCH) -> torch.Tensor:
    """One vector per image for diversity: the observer's ``layer`` output averaged over its
    spatial positions and scaled to unit length (CPU float32). Eval mode, no gradients."""
    vectors = []
    with torch.no_grad(), eval_mode(observer):
        for start in range(0, len(images), batch_size):
            vectors.append(_unit_mean(read_features(observer, layer, images[start:start + batch_size])))
    return torch.cat(vectors).cpu() if vectors else images.new_zeros(0, 0).cpu()


KMEANS_ITERATIONS = 20


def kmeans_assign(vectors: torch.Tensor, clusters: int, generator: torch.Generator,
                  iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Cluster of each row of ``vectors`` (CPU) after Lloyd's k-means with a k-means++ start
    drawn from the CPU ``generator`` (so one seed gives one clustering)."""
    first = int(torch.randint(len(vectors), (1,), generator=generator))
    centres = [vectors[first]]
    nearest = torch.cdist(vectors, vectors[first:first + 1]).squeeze(1).square()
    for _ in range(1, clusters):
        weights = nearest if float(nearest.sum()) > 0 else torch.ones_like(nearest)
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(vectors[pick])
        nearest = torch.minimum(nearest, (vectors - vectors[pick]).square().sum(dim=1))
    centres = torch.stack(centres)
    assignment = torch.cdist(vectors, centres).argmin(dim=1)
    for _ in range(iterations):
        members = F.one_hot(assignment, clusters).float()  # [n, k]
        counts = members.sum(dim=0)
        sums = members.T @ vectors
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        assignment = torch.cdist(vectors, centres).argmin(dim=1)
    return assignment


CLUSTER_PICKS = ("score", "centre")  # each cluster's highest-scored member, or the one nearest its mean


def rank_diverse(scores: torch.Tensor, vectors: torch.Tensor, count: int, generator: torch.Generator,
                 skip: int = 0, pick: str = "score") -> torch.Tensor:
    """Selection with coverage: the candidates (all scored images but the ``skip`` highest) are
    split into ``count`` k-means clusters in feature space and each cluster gives one image:
    ``pick="score"`` (``diversity=clusters``) its highest-scored member, ``pick="centre"``
    (``diversity=medoids``) the member nearest the cluster's mean, the k-means coreset's
    representative (ties to the higher score). A cluster left empty is made up by the best
    candidate not yet kept. Positions into ``scores`` in rank order (highest score first)."""
    if pick not in CLUSTER_PICKS:
        raise ValueError(f"cluster pick {pick!r}: use one of {', '.join(CLUSTER_PICKS)}")
    scores = scores.detach().cpu()
    candidates = score_band(scores, count, skip)
    members_vectors = vectors[candidates]
    assignment = kmeans_assign(members_vectors, count, generator)
    kept: list[int] = []
    for cluster in range(count):
        members = (assignment == cluster).nonzero().flatten()  # in score order: the first is the best
        if not len(members):
            continue
        if pick == "centre":
            mine = members_vectors[members]
            distance = (mine - mine.mean(dim=0, keepdim=True)).square().sum(dim=1)
            members = members[torch.argmin(distance)].view(1)  # argmin takes the first of ties
        kept.append(int(candidates[members[0]]))
    chosen = set(kept)
    kept += [int(c) for c in candidates if int(c) not in chosen][:count - len(kept)]
    kept_tensor = torch.tensor(kept, dtype=torch.int64)
    return kept_tensor[torch.sort(scores[kept_tensor], descending=True, stable=True).indices]


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
