"""torch.distributed under ``torchrun``: the process group from torchrun's environment, which
rank owns which unit of work, and the few collectives the runner needs.

``torchrun --nproc-per-node K -m ddbench run ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; ``init_from_environment`` joins the group with
``nccl`` when the run uses CUDA and ``gloo`` otherwise. Without those variables (a plain
``ddbench run``) everything here is a no-op for a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

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
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend, timeout=timeout)
    return Cluster(rank, world_size, local_rank, backend)


def shutdown() -> None:
    """Leave the process group if this process joined one (at the end of a command)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
