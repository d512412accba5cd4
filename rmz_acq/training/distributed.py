"""Training on several processes with torch DistributedDataParallel.

``torchrun --nproc-per-node N -m rmz_acq train ...`` (or multi-node torchrun)
starts N copies of the trainer with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; `Ranks.from_environment` reads them, `start` joins the
process group (gloo on CPUs, NCCL on GPUs).  Each rank simulates its own
share of the volumes and draws its own batches (seeds from ``--seed`` and
the rank), DDP averages the gradients, and rank 0 alone validates and
writes checkpoints, the log and the weights.  Without torchrun nothing
changes: one process, world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import RmzError

__all__ = ["Ranks", "any_rank", "start", "stop"]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the trainers."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> Ranks:
        """What torchrun set (world size 1 when it did not run us)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise RmzError(f"RANK, WORLD_SIZE or LOCAL_RANK is not a number ({exc})") from None
        if world < 1 or not 0 <= rank < world:
            raise RmzError(f"RANK {rank} does not fit WORLD_SIZE {world}")
        return cls(rank, world, local)


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (its own GPU on CUDA)."""
    if not ranks.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
        # the CPU is shared: each rank gets its part of the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, _local_world())))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def _local_world() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """Whether ``flag`` is true on any rank (all ranks must call it together)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def stop(ranks: Ranks) -> None:
    """Leave the process group (after the last collective)."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
