"""The data of every pretraining step, one step ahead of it.

Why a part of its own: the trainer's step must find its batch ready and branch on nothing it would have to read
back from the device. A loader thread reads each step's tiles and draws every augmentation choice on the host
(``PreparedBatch``); on a GPU it also copies the tiles and makes the views on a side CUDA stream, which the step's
stream waits on by an event. Data order and augmentation of step *s* depend only on (seed, s, rank), so a resumed
run sees the same batches.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..config import PretrainConfig
from ..data import TwoViewAugment
from .batch_order import BatchOrder
from .feed import PreparedBatch


class StepFeed:
    def __init__(self, cfg: PretrainConfig, dataset, augment: TwoViewAugment, order: BatchOrder, rank: int,
                 device: torch.device, layout: Callable[[torch.Tensor], torch.Tensor],
                 total_steps: Callable[[], int]) -> None:
        self.cfg, self.dataset, self.augment, self.order = cfg, dataset, augment, order
        self.rank, self.device, self.layout, self.total_steps = rank, device, layout, total_steps
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-loader")
        self.pending: tuple[int, Future] | None = None
        self.side_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def batch_indices(self, step: int) -> list[int]:
        """This rank's dataset indices for a step: a pure function of (seed, epoch, position)."""
        return self.order.rank_batch(step, self.rank)

    def start(self, step: int) -> None:
        """Have the loader prepare ``step`` (the first of a ``fit``) unless it is at it already."""
        if step < self.total_steps() and (self.pending is None or self.pending[0] != step):
            self.pending = (step, self.loader.submit(self.prepare, step))

    def prepare(self, step: int) -> PreparedBatch:
        """A step's tiles, ids and every random augmentation choice, made on the host, so the step itself reads
        nothing to decide a branch. Two generators of (seed, step, rank): the training views', and the support
        views' own (the two views stay those of any run with this seed)."""
        idx = self.batch_indices(step)
        images = self.dataset.get_images(idx)
        b, _, h, w = images.shape
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 97 + self.rank)
        params = self.augment.sample(b, h, w, gen)
        support = None
        lc = self.cfg.loss
        if lc.name == "false" and lc.detector == "support":
            sgen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 97 + self.rank + 7_777_777)
            support = [self.augment.sample(b, h, w, sgen) for _ in range((lc.support_views + 1) // 2)]
        batch = PreparedBatch(idx, images, torch.as_tensor(idx, dtype=torch.long), params, support)
        if self.side_stream is None:  # the CPU: views made in the step (feed.py says why)
            return batch
        with torch.cuda.device(self.device), torch.cuda.stream(self.side_stream):
            return self.augmented(batch.pinned()).made_on(self.side_stream)

    def augmented(self, batch: PreparedBatch) -> PreparedBatch:
        """The batch with its two views (and support views) made from its tiles and augmentation choices."""
        images = batch.images.to(self.device, non_blocking=True)
        ids = batch.ids.to(self.device, non_blocking=True)
        views, view_ids = self.augment.apply(images, ids, batch.params)
        return batch.with_views(self.layout(views), view_ids, self._support_views(images, ids, batch))

    def _support_views(self, images: torch.Tensor, ids: torch.Tensor, batch: PreparedBatch) -> torch.Tensor | None:
        """FNC's support set: ``loss.support_views`` more views of each image."""
        if batch.support is None:
            return None
        made = [self.augment.apply(images, ids, params)[0] for params in batch.support]
        return self.layout(torch.cat(made)[: self.cfg.loss.support_views * len(batch.idx)])

    def batch(self, step: int) -> PreparedBatch:
        """This step's batch with its views, ready for the step's stream; the next step's is prepared meanwhile."""
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self.prepare(step)
        if step + 1 < self.total_steps():
            self.pending = (step + 1, self.loader.submit(self.prepare, step + 1))
        else:
            self.pending = None
        if batch.views is None:
            batch = self.augmented(batch)
        if batch.ready is not None:  # made on the loader's side stream
            batch.use_on(torch.cuda.current_stream(self.device))
        return batch


__all__ = ["StepFeed"]
