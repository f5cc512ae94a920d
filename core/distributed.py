"""Where this process stands in a torchrun launch (rank, world size, local GPU): one process unless launched so.

Why a module of its own, beside ``device``: both trainers (pretraining and fine-tuning), the launcher's tests and
anything that rebuilds a run's batches ask the same question; the answer (``DistEnv``) is plain data, and
``init_distributed`` the only place that joins a group. ``agree`` and ``mean_over_ranks`` are what a training loop
needs from the other ranks (a stop seen by one, the loss of the whole batch); the losses gather embeddings over ranks
with the helpers at the end (with gradient, or of unequal lengths).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


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


def leave_distributed(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ a training loop
def agree(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank when it is true on any: a stop signalled to the first rank stops all before the same step,
    so none is left waiting in a collective."""
    if not env.active:
        return flag
    seen = torch.tensor([int(flag)], device=device)
    dist.all_reduce(seen)
    return bool(seen.item())


def mean_over_ranks(value: Tensor, env: DistEnv) -> Tensor:
    """The mean of a (detached) scalar over the ranks: the loss of the whole batch, not of this rank's share."""
    if env.active:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= env.world
    return value


def from_first(value: object, env: DistEnv) -> object:
    """The first rank's value on every rank (e.g. the run folder it made)."""
    if not env.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    """Wait for every rank (e.g. while the first validates and writes the checkpoints)."""
    if env.active:
        dist.barrier()


# ------------------------------------------------------------------------------------------------ gathering
def use_distributed(flag: bool | None) -> bool:
    available = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if flag is None:
        return available
    if flag and not available:
        return False  # one process is a world of one: gathering is the identity
    return flag


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather along dim 0 with gradient (rank order); equal sizes on every rank."""
    return _GatherWithGrad.apply(x)


def gather_equal(x: Tensor) -> Tensor:
    """All-gather along dim 0 without gradient, every rank holding the same shape: no size exchange, so the host
    never waits for one (rank order)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    """All-gather tensors of different lengths along dim 0 (rank order)."""
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)], dim=0)
