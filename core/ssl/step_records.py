"""A pretraining run's per-step records, kept on the device between logged steps and read in one go (issue 28).

Why: reading a step's loss or its flagged pairs makes the host wait for the GPU to finish that step, so the next
step cannot be queued behind it. The trainer hands every step's loss, statistics and padded pair slots to
:class:`StepRecords` without reading them; at a logged step, a checkpoint, a stop or the end, :meth:`drain` reads
all buffered steps at once (one copy per field), checks the losses, and builds the ``fns.jsonl`` rows in step
order, exactly as a run that logs every step writes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .contrastive_info import STATS, ContrastiveInfo

_FLOAT_FIELDS = ("distance", "cos", "cos_pos")


@dataclass
class Drained:
    """What a drain read: per buffered step (in order) its number, mean loss over the ranks and statistics, and the
    flagged pairs of all of them as ``fns.jsonl`` rows."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def first_non_finite(self) -> tuple[int, float] | None:
        return next(((s, v) for s, v in zip(self.steps, self.losses) if not math.isfinite(v)), None)


class StepRecords:
    """The buffer. ``rows_per_rank``: loss rows of one rank (SimCLR: view 0 of each image, then view 1; MoCo: the
    queries, whose candidates are queue slots of unknown view)."""

    def __init__(self, rows_per_rank: int, moco: bool, world: int = 1) -> None:
        self.rows_per_rank, self.moco, self.world = rows_per_rank, moco, world
        self._steps: list[int] = []
        self._losses: list[Tensor] = []
        self._stats: list[Tensor] = []
        self._pairs: list[dict[str, Tensor]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, loss: Tensor, info: ContrastiveInfo, row_ids: Tensor,
            candidate_ids: Tensor | None = None) -> None:
        """One step, read nothing. ``row_ids``: the data set id of every loss row of every rank (rank-major);
        ``candidate_ids``: MoCo's queue ids as the loss saw them."""
        pairs, valid, stats = info.device_view()
        self._steps.append(step)
        self._losses.append(loss.detach().float().reshape(()))
        self._stats.append(stats.detach().float())
        if valid.numel():
            cands = candidate_ids if self.moco else row_ids
            self._pairs.append({**{k: v.detach() for k, v in pairs.items()}, "valid": valid,
                                "anchor_index": row_ids[pairs["anchor"]], "candidate_index": cands[pairs["candidate"]],
                                "step": torch.full_like(pairs["anchor"], step)})

    def drain(self, distributed: bool = False) -> Drained:
        """Every buffered step read at once (the only host reads of the loop), then the buffer is empty. Under
        torchrun the losses are averaged over the ranks here, once for all these steps."""
        if not self._steps:
            return Drained()
        losses = torch.stack(self._losses)
        if distributed:
            dist.all_reduce(losses)
            losses /= self.world
        out = Drained(steps=list(self._steps), losses=losses.cpu().tolist(),
                      stats=[dict(zip(STATS, row)) for row in torch.stack(self._stats).cpu().tolist()])
        if self._pairs:
            cols = {k: torch.cat([p[k] for p in self._pairs]) for k in self._pairs[0]}
            keep = cols.pop("valid")
            host = {k: v[keep].cpu().tolist() for k, v in cols.items()}
            out.records = self._rows(host)
        self._steps, self._losses, self._stats, self._pairs = [], [], [], []
        return out

    def _rows(self, host: dict[str, list]) -> list[dict[str, Any]]:
        """``fns.jsonl`` rows: global row r is local row r % rows_per_rank of rank r // rows_per_rank, whose first
        half holds view 0 of each image and the second half view 1."""
        half = max(self.rows_per_rank // 2, 1)

        def view(row: int) -> int:
            return (row % self.rows_per_rank) // half

        out = []
        for i, a in enumerate(host["anchor"]):
            c = host["candidate"][i]
            out.append({
                "step": host["step"][i], "anchor_index": host["anchor_index"][i],
                "anchor_view": 0 if self.moco else view(a), "candidate_index": host["candidate_index"][i],
                "candidate_view": None if self.moco else view(c),
                **{k: host[k][i] for k in _FLOAT_FIELDS},
                "calibrated": host["calibrated"][i], "mirrored": host["mirrored"][i],
            })
        return out


__all__ = ["StepRecords", "Drained"]
