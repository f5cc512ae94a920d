"""Which tiles each pretraining step sees: a pure function of (tiles, batch size, seed, ranks, step).

Why a module of its own: the trainer draws its batches from it, and the flag report rebuilds the very same
batches afterwards (to ask what other selectors would have picked from them), so both must share one rule.

The rule is ``torch.utils.data.DistributedSampler`` (shuffle, ``drop_last``) with ``set_epoch(epoch)``: rank r's
batch at step s is positions ``[p * b, (p + 1) * b)`` of its epoch order, with ``(epoch, p) = divmod(s, steps
per epoch)`` and b the per-rank batch. The loss sees the ranks' batches concatenated in rank order.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import DistributedSampler


class _Length(Sequence):
    """A stand-in data set for the sampler, which only asks for the length."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # pragma: no cover - the sampler never reads items
        raise IndexError(i)


class BatchOrder:
    """The tile indices of every step of a pretraining run.

    Args:
        n_tiles: tiles in the pretraining set; batch_size: images per step over all ranks; seed: the run's seed;
        world: number of data-parallel ranks.

    Example::

        >>> order = BatchOrder(n_tiles=600, batch_size=64, seed=0)
        >>> order.batch(12)          # the 64 tiles of step 12 (0-based), in the loss's row order
    """

    def __init__(self, n_tiles: int, batch_size: int, seed: int, world: int = 1) -> None:
        if world < 1 or batch_size < world:
            raise ValueError(f"batch_size {batch_size} over {world} rank(s): need at least one image per rank")
        self.n_tiles, self.seed, self.world = int(n_tiles), int(seed), int(world)
        self.local_batch = batch_size // world
        self._samplers = [DistributedSampler(_Length(self.n_tiles), num_replicas=world, rank=r, shuffle=True,
                                             seed=self.seed, drop_last=True) for r in range(world)]
        self.steps_per_epoch = len(self._samplers[0]) // self.local_batch if self.local_batch else 0
        self._epoch = -1
        self._orders: list[list[int]] = []

    def _orders_of(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            for s in self._samplers:
                s.set_epoch(epoch)
            self._orders = [list(s) for s in self._samplers]
            self._epoch = epoch
        return self._orders

    def rank_batch(self, step: int, rank: int = 0) -> list[int]:
        """Rank ``rank``'s tiles at ``step`` (0-based)."""
        if self.steps_per_epoch < 1:
            raise ValueError(f"a batch of {self.local_batch} per rank is larger than the {self.n_tiles} tiles")
        epoch, pos = divmod(int(step), self.steps_per_epoch)
        order = self._orders_of(epoch)[rank]
        return order[pos * self.local_batch:(pos + 1) * self.local_batch]

    def batch(self, step: int) -> np.ndarray:
        """All tiles of ``step`` (0-based) in rank order: row r of the loss's first view is tile ``batch[r]``."""
        return np.asarray([i for r in range(self.world) for i in self.rank_batch(step, r)], np.int64)


def batch_problem(n_tiles: int, batch_size: int, world: int = 1) -> str | None:
    """Why ``batch_size`` over ``world`` ranks cannot train on ``n_tiles`` tiles, in one line naming the field, or
    None. One rule for the trainer and the Pretrain form (which refused what four ranks would run)."""
    if batch_size // world < 2:
        return (f"train.batch_size: {batch_size} images over {world} ranks leaves fewer than 2 per rank")
    if BatchOrder(n_tiles, batch_size, 0, world).steps_per_epoch < 1:
        return (f"train.batch_size: {batch_size} is larger than the data set ({n_tiles} tiles); give at most "
                f"{n_tiles - n_tiles % world}, or more tiles (a smaller data.tile_size, fewer scenes held out)")
    return None
