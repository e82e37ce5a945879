"""Agreement across the ranks of a torch.distributed job.

A command must never be applied by rank 0 alone: the other ranks would
wait for it in their next collective and the job would hang. So at every
step boundary each rank contributes a few integer flags (rank 0: it has
queued commands; any rank: the signals it caught), one `all_reduce(MAX)`
combines them, and when rank 0 has commands it broadcasts them (in order,
with the settings they apply to) so that every rank applies the same
commands at the same step.

The maximum is pipelined: the all_reduce begun at one agreement is waited
for at the next one, so its latency hides behind training steps; what any
rank flagged before agreement N is applied by every rank at agreement N+1.
Ranks agree at every step boundary when a step takes AGREE_EVERY_SECS or
more (step_boundary.py), else every few steps, at steps each agreement
announces for the one after (so the ranks never disagree on where they are).

A single process (torch.distributed not initialised, or a world of one)
never touches torch.distributed.
"""

from __future__ import annotations

import os
from typing import Any


def _dist():
    """torch.distributed when it is initialised, else None (torch not even
    imported if it was not already)."""
    import sys

    if "torch" not in sys.modules:
        return None
    try:
        import torch.distributed as dist
    except ImportError:  # a torch built without distributed support
        return None
    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process."""
    dist = _dist()
    if dist is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world_size > 1:
            raise RuntimeError(
                f"this process is one of {world_size} (WORLD_SIZE) but torch.distributed is "
                "not initialised: call torch.distributed.init_process_group() before "
                "trainui.Run(...), so that every rank applies commands at the same step"
            )
        return 0, 1, 0
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return rank, dist.get_world_size(), local_rank


class Agreement:
    """The collectives of the step boundary. They run on a gloo group of
    their own when one can be made (CPU tensors: no device sync, and never
    interleaved with the training's own collectives), else on the default
    group on the device its backend needs (CPU for gloo, the current CUDA
    device for nccl). Made on every rank at the same point (Run())."""

    def __init__(self) -> None:
        dist = _dist()
        if dist is None:
            raise RuntimeError("torch.distributed is not initialised")
        import torch

        self._dist = dist
        self._torch = torch
        self.rank = dist.get_rank()
        try:
            self.group = dist.new_group(backend="gloo")
            self.device = torch.device("cpu")
        except (RuntimeError, ValueError):
            self.group = None
            backend = str(dist.get_backend()).lower()
            if "nccl" in backend and torch.cuda.is_available():
                self.device = torch.device("cuda", torch.cuda.current_device())
            else:
                self.device = torch.device("cpu")

    def max(self, flags: list[int]) -> list[int]:
        """The element-wise maximum of every rank's `flags`."""
        return self.result(self.start(flags))

    def start(self, flags: list[int]) -> tuple[Any, Any]:
        """Begins the element-wise maximum of `flags` without waiting."""
        tensor = self._torch.tensor(flags, dtype=self._torch.int64, device=self.device)
        work = self._dist.all_reduce(
            tensor, op=self._dist.ReduceOp.MAX, group=self.group, async_op=True
        )
        return tensor, work

    def result(self, pending: tuple[Any, Any], timeout: float | None = None) -> list[int]:
        """The maximum `start` began (waits for it)."""
        tensor, work = pending
        if timeout is None:
            work.wait()
        else:
            from datetime import timedelta

            work.wait(timeout=timedelta(seconds=timeout))
        return tensor.tolist()

    def from_rank0(self, value: Any | None) -> Any:
        """Rank 0's `value`, on every rank."""
        box = [value if self.rank == 0 else None]
        if self.device.type == "cuda":
            self._dist.broadcast_object_list(box, src=0, group=self.group, device=self.device)
        else:
            self._dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]
