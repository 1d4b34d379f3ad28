"""DM's loop state: the real images it draws from each iteration (:class:`RealPool`) and the
state a stopped run goes on from (:class:`RunState`)."""

from __future__ import annotations

import time

import torch

from ddbench.api import UNIT_SECONDS, DistillTask

# On CUDA the real images stay on the device when they take at most this much (CIFAR-10's 50,000
# at 32 px: 0.6 GiB), loaded at the first draw, so an iteration gathers its draw there: no host
# work, no copy, no wait. A larger pool (ImageNet) is loaded each iteration through pinned
# memory; on the CPU each iteration loads its draw. Every way gives the same images.
RESIDENT_BYTES = 1 << 30


class RealPool:
    """Every class's training images, drawn by position within the class's pool."""

    def __init__(self, task: DistillTask, pools: dict[int, torch.Tensor]) -> None:
        self.task = task
        self.pools = list(pools.values())
        channels, height, width = task.image_shape
        pool_bytes = sum(len(pool) for pool in self.pools) * channels * height * width * 4
        self.resident = task.device.type == "cuda" and pool_bytes <= RESIDENT_BYTES
        self.where = f"resident on {task.device.type}" if self.resident else "loaded each iteration"
        self.images: torch.Tensor | None = None
        self.offsets = [0, *torch.tensor([len(pool) for pool in self.pools]).cumsum(0)[:-1].tolist()]

    def draw(self, positions: list[torch.Tensor]) -> list[torch.Tensor]:
        """The images at ``positions`` (one tensor of positions per class, in class order)."""
        sizes = [len(chosen) for chosen in positions]
        if self.resident:
            if self.images is None:
                self.images = self.task.load_train(torch.cat(self.pools))
            rows = torch.cat([offset + chosen for offset, chosen in zip(self.offsets, positions)])
            return list(self.images[rows.to(self.images.device, non_blocking=True)].split(sizes))
        indices = torch.cat([pool[chosen] for pool, chosen in zip(self.pools, positions)])
        if self.task.device.type != "cuda":
            return list(self.task.load_train(indices).split(sizes))
        images = self.task.dataset.train.load(indices).pin_memory()  # copied without waiting for the GPU
        return list(images.to(self.task.device, non_blocking=True).split(sizes))


# A long run saves its state (images, momentum, where the random draws are, the loss trace) in the
# run folder every CHECKPOINT_SECONDS; the same command after a stop goes on from there and ends
# with the images an unstopped run gives (bit for bit on the CPU).
CHECKPOINT_SECONDS = 60.0
STATE_PART = "dm-state"


class RunState:
    """The iteration a DM run has reached, saved to and restored from the task's parts."""

    def __init__(self, task: DistillTask, synthetic: torch.Tensor, optimizer: torch.optim.Optimizer,
                 draws: torch.Generator, trace: torch.Tensor) -> None:
        self.task, self.synthetic, self.optimizer, self.draws, self.trace = task, synthetic, optimizer, draws, trace
        self.started = time.perf_counter()
        self.saved_at = self.started
        self.earlier_seconds = 0.0  # what the stopped runs before this one spent

    def restore(self) -> int:
        """The iterations already done (0 for a new run), with the images, momentum, draws and trace as they were."""
        saved = self.task.resume_part(STATE_PART)
        if saved is None:
            return 0
        tensors, metadata = saved
        done = int(metadata["iterations_done"])
        if tensors["synthetic"].shape != self.synthetic.shape or done > len(self.trace):
            raise ValueError(f"dm: the saved state ({STATE_PART}) holds {tuple(tensors['synthetic'].shape)} images "
                             f"after {done} iterations, this run makes {tuple(self.synthetic.shape)} in {len(self.trace)}; "
                             f"delete the run folder's partial/ to start again")
        with torch.no_grad():
            self.synthetic.copy_(tensors["synthetic"])
            self.trace[:done] = tensors["trace"].to(self.trace.device)
        if "momentum" in tensors:
            self.optimizer.state[self.synthetic]["momentum_buffer"] = tensors["momentum"].to(self.synthetic.device)
        self.draws.set_state(tensors["generator"])
        self.earlier_seconds = float(metadata.get(UNIT_SECONDS, 0.0))
        return done

    def save_if_due(self, done: int) -> None:
        """Save the state after ``done`` iterations when the last save is CHECKPOINT_SECONDS old."""
        now = time.perf_counter()
        if now - self.saved_at < CHECKPOINT_SECONDS:
            return
        tensors = {"synthetic": self.synthetic.detach(), "generator": self.draws.get_state(), "trace": self.trace[:done]}
        momentum = self.optimizer.state.get(self.synthetic, {}).get("momentum_buffer")
        if momentum is not None:
            tensors["momentum"] = momentum
        # the time every run so far spent to get here: a resumed run counts it towards the distillation's
        self.task.save_part(STATE_PART, tensors, {"iterations_done": done},
                            seconds=self.earlier_seconds + now - self.started)
        self.saved_at = now
