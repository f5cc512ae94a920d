"""Where this process stands in a torchrun launch (rank, world size, local GPU): one process unless launched so.

Why a module of its own: the trainer, the launcher's tests and anything that rebuilds a run's batches ask the same
question; the answer (``DistEnv``) is plain data, and ``init_distributed`` the only place that joins a group.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the process group when launched by torchrun; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistEnv(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)
