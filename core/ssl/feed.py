"""What the trainer's loader thread prepares one step ahead: tiles, ids and every augmentation choice.

Why a type of its own: the step must find everything it branches on already decided on the host (the crop's
pyramid levels, which views blur), so it queues device work without reading a tensor back. On a GPU the loader
thread also pins the tiles, copies them and makes the views on a side CUDA stream, so copy and augmentation overlap
the step before (``ready`` is the event the step's stream waits on). On the CPU the views are made in the step: on
2 cores the step alone keeps both busy, and views made beside it measured no faster (session 43; session 44 again
with the loader thread held to one thread, 0.928 of the bare loop against 0.93-0.96). ``bench/train.py`` prints
their share of the step. Their 28 ms include about 9 of contention with the loader thread's Python (the next
batch's memmap index and augmentation choices: each small op of the views needs the GIL); the next batch started
during the backward pass instead made the views 22 ms, but the step no faster (0.962 and 0.955 of the bare loop
against 0.957 and 0.951, session 45): the same work on the same 2 cores.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


def _pin(params: dict) -> dict:
    return {k: v.pin_memory() if isinstance(v, Tensor) else v for k, v in params.items()}


@dataclass
class PreparedBatch:
    idx: list[int]             # this rank's data set indices
    images: Tensor             # (B, C, H, W) uint8 tiles
    ids: Tensor                # (B,) long, the indices as a tensor
    params: dict               # TwoViewAugment.sample of the two training views
    support: list[dict] | None  # TwoViewAugment.sample of the support views (detector ``support``), or None
    views: Tensor | None = None          # (2B, C, S, S) the two views, once made
    view_ids: Tensor | None = None       # (2B,) the data set id of each view
    support_views: Tensor | None = None  # (S*B, C, S, S) the support views, once made (detector ``support``)
    ready: torch.cuda.Event | None = None  # recorded on the side stream that made the views (GPU only)

    def with_views(self, views: Tensor, view_ids: Tensor, support_views: Tensor | None) -> "PreparedBatch":
        return replace(self, views=views, view_ids=view_ids, support_views=support_views)

    def made_on(self, stream: torch.cuda.Stream) -> "PreparedBatch":
        """The views were queued on ``stream`` (the loader's side stream): mark when they are ready."""
        ready = torch.cuda.Event()
        ready.record(stream)
        return replace(self, ready=ready)

    def use_on(self, stream: torch.cuda.Stream) -> None:
        """Let ``stream`` (the step's) wait for the views, without the host waiting; and tell the allocator they
        are used there, so their memory is not handed back to the side stream while the step still reads it."""
        if self.ready is None:
            return
        stream.wait_event(self.ready)
        for t in (self.views, self.view_ids, self.support_views):
            if t is not None:
                t.record_stream(stream)

    def pinned(self) -> "PreparedBatch":
        """The same in page-locked memory: its copies to the GPU run asynchronously."""
        return PreparedBatch(self.idx, self.images.pin_memory(), self.ids.pin_memory(), _pin(self.params),
                             None if self.support is None else [_pin(p) for p in self.support])


__all__ = ["PreparedBatch"]
