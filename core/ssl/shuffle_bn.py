"""MoCo v2's shuffle-BN: a key never shares BatchNorm statistics with its own query.

Why: with BatchNorm in train mode, a query and its key computed over the same batch can be told apart from the
queue's negatives by their shared batch statistics, a shortcut the MoCo paper (He et al. 2020, section 3.3) closes
by shuffling the keys across GPUs before the key encoder and unshuffling after. Here:

- on one device, BatchNorm normalises ``splits`` sub-batches separately (:class:`SplitBatchNorm2d`, sample ``i`` in
  sub-batch ``i % splits``: one kernel for all of them) and the keys go through the key network in a shuffled
  order, so a key's sub-batch is a random draw of other images, not its query's;
- under torchrun, each rank's BatchNorm is its own (no SyncBatchNorm for MoCo) and the key images are shuffled
  across ranks, as in facebookresearch/moco's ``_batch_shuffle_ddp``.

The permutation is a pure function of (seed, step), the same on every rank without a broadcast, so a resumed run
draws the same one. Keys are unshuffled before the loss and the queue, so nothing downstream sees the order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Gather = Callable[[Tensor], Tensor]  # a tensor of this rank -> the same of every rank, concatenated (rank-major)


class _SplitBatchNorm:
    """Train-mode BatchNorm over ``splits`` strided sub-batches; eval mode (and ``splits == 1``) is plain BatchNorm.
    Same parameters and buffers as the class it extends, so checkpoints and exported encoders load anywhere."""

    splits: int = 1

    def forward(self, x: Tensor) -> Tensor:
        g = self.splits
        if not self.training or g == 1:
            return super().forward(x)  # type: ignore[misc]
        n, c = x.shape[0], x.shape[1]
        if n % g:
            raise ValueError(f"model.moco_bn_splits: a batch of {n} does not split into {g} equal sub-batches")
        factor = self.momentum if self.momentum is not None else 0.0  # as nn.BatchNorm does
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average (never in our encoders: it reads the count)
                factor = 1.0 / float(self.num_batches_tracked)
        # (n, c, ...) -> (n/g, g*c, ...): channel block k holds samples k, k+g, k+2g, ...; one batch_norm call then
        # gives each sub-batch its own statistics
        grouped = x.reshape(n // g, g * c, *x.shape[2:])
        stats = (self.running_mean.repeat(g), self.running_var.repeat(g)) if self.running_mean is not None \
            else (None, None)
        affine = (self.weight.repeat(g), self.bias.repeat(g)) if self.weight is not None else (None, None)
        out = F.batch_norm(grouped, *stats, *affine, True, factor, self.eps)
        if stats[0] is not None:
            with torch.no_grad():  # running statistics: the mean over the sub-batches
                self.running_mean.copy_(stats[0].view(g, c).mean(0))
                self.running_var.copy_(stats[1].view(g, c).mean(0))
        out = out.reshape(x.shape)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out


class SplitBatchNorm2d(_SplitBatchNorm, nn.BatchNorm2d):
    pass


class SplitBatchNorm1d(_SplitBatchNorm, nn.BatchNorm1d):
    pass


_SPLIT = {nn.BatchNorm2d: SplitBatchNorm2d, nn.BatchNorm1d: SplitBatchNorm1d}


def split_batchnorm(module: nn.Module, splits: int) -> nn.Module:
    """Every BatchNorm1d/2d of ``module`` (in place) normalising ``splits`` sub-batches in train mode."""
    for name, child in module.named_children():
        kind = _SPLIT.get(type(child))
        if kind is not None:
            new = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            for mine, theirs in zip(new.parameters(), child.parameters()):
                mine.requires_grad_(theirs.requires_grad)  # a frozen key network stays frozen
            ref = next(iter(child.state_dict().values()), None)
            if ref is not None:
                new = new.to(ref.device)
            new.splits = splits
            setattr(module, name, new)
        elif isinstance(child, (SplitBatchNorm1d, SplitBatchNorm2d)):
            child.splits = splits
        else:
            split_batchnorm(child, splits)
    return module


def bn_splits(batch: int, world: int, explicit: int | None) -> int:
    """BatchNorm sub-batches per device: as set, else 1 per rank under torchrun (the ranks are the split, as in the
    MoCo paper's 8 GPUs) and on one device the most of 2-8 that leaves equal sub-batches of at least 32 images
    where the batch allows, of at least 2 where it does not."""
    if explicit is not None:
        splits = explicit
    elif world > 1:
        return 1
    else:
        splits = min(8, max(2, batch // 32))
        while splits > 2 and batch % splits:
            splits -= 1
    if batch % splits or batch // splits < 2 or (world == 1 and splits < 2):
        raise ValueError(f"model.moco_bn_splits: a MoCo batch of {batch} image(s) per device cannot be split into "
                         f"{splits} equal sub-batches of at least 2 for shuffle-BN; set train.batch_size to a "
                         "multiple of it (at least 4), another model.moco_bn_splits, or model.moco_shuffle_bn=false")
    return splits


def key_permutation(batch: int, seed: int, step: int) -> Tensor:
    """The step's key order over the global batch: the same on every rank and after a resume."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 97 + 3_333_333)
    return torch.randperm(batch, generator=gen)


@dataclass
class KeyShuffle:
    """Computes a step's keys in a shuffled order (across ranks when ``gather`` is given) and returns them in the
    batch's order."""

    seed: int
    rank: int = 0
    world: int = 1
    gather: Gather | None = None

    @torch.no_grad()
    def keys(self, key_net: Callable[[Tensor], Tensor], x_k: Tensor, step: int) -> Tensor:
        b = x_k.shape[0]
        perm = key_permutation(b * self.world, self.seed, step)
        perm = (perm.pin_memory() if x_k.is_cuda else perm).to(x_k.device, non_blocking=True)
        back = torch.argsort(perm)
        if self.gather is None:
            return key_net(x_k[perm])[back]
        mine = slice(self.rank * b, (self.rank + 1) * b)
        shuffled = self.gather(x_k)[perm[mine]]  # this rank's share of the shuffled global batch
        return self.gather(key_net(shuffled))[back][mine]


def bn_note(shuffle: bool, splits: int, world: int, batch: int) -> str:
    """What the run card says about MoCo's BatchNorm."""
    if not shuffle:
        return "off: keys share BatchNorm statistics with their queries' batch"
    if world > 1:
        return f"shuffle across {world} ranks, BatchNorm per rank" + (f" in {splits} sub-batches" if splits > 1 else "")
    return f"split-batch {splits} x {batch // splits}, keys shuffled"


__all__ = ["SplitBatchNorm1d", "SplitBatchNorm2d", "split_batchnorm", "bn_splits", "key_permutation", "KeyShuffle",
           "bn_note"]
