"""torch.distributed under ``torchrun``: the process group from torchrun's environment, which
rank owns which unit of work, the few collectives the runner needs, and how the ranks share
work (``main_first``, ``evaluate_distributed``) and check they see the same files.

``torchrun --nproc-per-node K -m ddbench run ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; ``init_from_environment`` joins the group with
``nccl`` when the run uses CUDA and ``gloo`` otherwise. Without those variables (a plain
``ddbench run``) everything here is a no-op for a world of one.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from ddbench.store.artifacts import file_digest


class DistributedError(ValueError):
    """A run whose ranks cannot work together (another rank failed, folders not shared...)."""


TIMEOUT_ENV = "DDBENCH_DIST_TIMEOUT"  # seconds a rank waits at a barrier (another rank may be training the observer)
DEFAULT_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True)
class Cluster:
    """This process's place among the ranks of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, unit: int) -> bool:
        """Units are dealt round-robin: unit i belongs to rank i mod world size."""
        return unit % self.world_size == self.rank

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_ok(self, failed: bool = False) -> bool:
        """A barrier that also tells every rank whether any rank failed before reaching it
        (so a rank that raised does not leave the others waiting for it)."""
        if not self.active:
            return not failed
        return int(self.sum(torch.tensor([1.0 if failed else 0.0])).item()) == 0

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the ranks (float64 on the CPU afterwards)."""
        if not self.active:
            return values.double().cpu()
        import torch.distributed as dist

        buffer = values.double().to(self._device())
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return buffer.cpu()

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        buffer = torch.tensor([value], dtype=torch.int64, device=self._device())
        dist.broadcast(buffer, src=0)
        return int(buffer.item())


SINGLE = Cluster()


def init_from_environment(use_cuda: bool) -> Cluster:
    """Join torchrun's process group if this process was launched by it (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # DistributedDataParallel imports torch.distributed.nn, whose functions take
        # ``group=group.WORLD`` as a default argument: imported while a group exists, ten defaults
        # hold the default group for good, so destroy_process_group cannot free it and its gloo
        # threads live into interpreter shutdown (where a rank aborted: "terminate called without
        # an active exception"). Imported first, the defaults are None (the default group).
        importlib.import_module("torch.distributed.nn")

        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend, timeout=timeout)
    return Cluster(rank, world_size, local_rank, backend)


def shutdown(together: bool = False) -> None:
    """Leave the process group if this process joined one (at the end of a command).
    ``together`` (the command finished on this rank): wait at a barrier first, so no rank tears
    down its connections while a peer still has collectives in flight; after an error the
    ranks leave at once (a barrier could wait on a rank that has stopped)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def resolve_dist_eval(mode: str, seeds: int, world_size: int) -> str:
    """``auto``: seeds over ranks when there are at least as many seeds as ranks (no
    communication while training), else every rank trains each seed together (DDP)."""
    if mode != "auto":
        return mode
    return "seeds" if seeds >= world_size else "ddp"


def evaluate_distributed(cluster: Cluster, seeds: list[int], evaluate_seed, mode: str, method: str) -> dict[int, dict]:
    """The records of ``seeds`` evaluated by the ranks together; the same dict on every rank."""
    if resolve_dist_eval(mode, len(seeds), cluster.world_size) == "ddp":
        records = {}
        for seed in seeds:
            records[seed] = main_first(cluster, lambda: evaluate_seed(seed, cluster), f"evaluation seed {seed}",
                                       everyone_first=True)
        return records
    # seeds over ranks: seed i on rank i mod world size; the numbers travel as one tensor sum
    values = torch.zeros(len(seeds), 3, dtype=torch.float64)  # accuracy, seconds, failed
    error = None
    for position, seed in enumerate(seeds):
        if cluster.owns(position):
            try:
                record = evaluate_seed(seed)
            except Exception as exc:  # reported after the others have finished theirs
                error, values[position, 2] = exc, 1.0
                break
            values[position, 0], values[position, 1] = record["accuracy"], record["eval_seconds"]
    summed = cluster.sum(values)
    if error is not None:
        raise error
    if bool((summed[:, 2] > 0).any()):
        raise DistributedError("evaluation failed on another rank; see its output")
    return {seed: {"unit": "eval", "method": method, "seed": seed, "accuracy": float(summed[i, 0]), "eval_seconds": float(summed[i, 1]),
                   "rank": i % cluster.world_size}
            for i, seed in enumerate(seeds)}


def main_first(cluster: Cluster, action, what: str, everyone_first: bool = False):
    """``action()`` on rank 0 and then, once it succeeded, on the other ranks (which find rank 0's
    files on disk); ``everyone_first``: on every rank at once. A failure on any rank raises on
    every rank, so none waits at a barrier for one that has stopped."""
    if not cluster.active:
        return action()
    if everyone_first or cluster.is_main:
        try:
            result = action()
        except BaseException:
            cluster.all_ok(failed=True)
            raise
        if not cluster.all_ok():
            raise DistributedError(f"{what} failed on another rank; see its output")
        return result
    if not cluster.all_ok():
        raise DistributedError(f"{what} failed on rank 0; see its output")
    return action()


def check_shared_folder(cluster: Cluster, folder: Path) -> None:
    """Every rank must see the run folder rank 0 writes (one filesystem across nodes)."""
    token = cluster.broadcast_int(int.from_bytes(os.urandom(7), "little") if cluster.is_main else 0)
    marker = folder / f".rank-check-{token}"
    if cluster.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text("ddbench")
    cluster.barrier()
    seen = marker.exists()
    ok = cluster.all_ok(failed=not seen)
    cluster.barrier()
    if cluster.is_main:
        marker.unlink(missing_ok=True)
    if not ok:
        raise DistributedError(f"--out {folder} is not visible to every rank: under torchrun across nodes, put --out and "
                       f"--cache-dir on a filesystem every node mounts")


def check_same_file(cluster: Cluster, path: Path, what: str, flag: str) -> None:
    """Every rank must hold the same ``path`` (compared by digest)."""
    digest = int(file_digest(path)[:14], 16)
    same = cluster.broadcast_int(digest) == digest
    if not cluster.all_ok(failed=not same):
        raise DistributedError(f"{what} differs between ranks ({path}); put {flag} on a filesystem every node mounts")
