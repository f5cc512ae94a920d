"""What a flag report counts: the batches a run trained on, rebuilt, and its flags as distinct units per step.

Why units: a detector flags rows of the loss, and one pair of tiles has many rows (SimCLR: 2 views x 2 views, and
a symmetric run's mirrored record). Whether a flag is a false negative is one fact about two tiles, so those rows
are one observation, not four: precision and its interval count each unit once per step (:func:`tile_pair_units`),
for the flags and for every reference selector alike.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

UNIT_COLUMNS = ("step", "anchor_index", "candidate_index", "calibrated", "rows")


@dataclass(frozen=True)
class StepCandidates:
    """The tiles of one step: anchors (rows of the loss) and the negatives they were compared with.

    SimCLR: both are the batch (an anchor's negatives are the other tiles of it). MoCo: anchors are the batch's
    queries, candidates the tiles in the queue (slots never filled are not there).
    """

    step: int  # 1-based, as in fns.jsonl
    anchors: np.ndarray
    candidates: np.ndarray
    ordered: bool = False  # MoCo: (anchor, queue tile) pairs are directed; SimCLR pairs are not


def simclr_candidates(order: Any, last_step: int) -> Iterator[StepCandidates]:
    """Every step's batch of a SimCLR run (``order`` a :class:`~core.ssl.batch_order.BatchOrder`)."""
    for s in range(last_step):
        batch = order.batch(s)
        yield StepCandidates(s + 1, batch, batch)


def moco_candidates(order: Any, last_step: int, queue_size: int) -> Iterator[StepCandidates]:
    """Every step of a MoCo run: the batch and the queue as it stood when the loss was computed.

    The queue is a ring buffer that holds the last ``queue_size`` keys, each written with its tile after the step
    that made it, so at step s it holds the tiles of the latest ``queue_size`` images of steps before s.
    """
    ring = np.full(queue_size, -1, np.int64)
    ptr = 0
    for s in range(last_step):
        batch = order.batch(s)
        queue = np.unique(ring[ring >= 0])
        yield StepCandidates(s + 1, batch, queue, ordered=True)
        slots = (ptr + np.arange(len(batch))) % queue_size
        ring[slots] = batch
        ptr = (ptr + len(batch)) % queue_size


def tile_pair_units(pairs: pd.DataFrame, ordered: bool) -> pd.DataFrame:
    """The flagged pairs as distinct units per step: ``ordered``, (anchor tile, candidate tile) picks; else tile
    pairs, the smaller index first.

    Ordered fits a detector that picks per anchor (each anchor tile's picks are its own; a reference selector picks
    for the same anchors as many) and MoCo (a query against a queue key); unordered fits global selection, which
    picks pairs of the batch. Either way a tile's two views count once. ``calibrated``: any of the unit's rows was
    treated; ``rows``: how many non-mirrored rows it stands for. Mirrored records and pairs of a tile with itself
    (only a foreign record) are left out.
    """
    if pairs.empty:
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "calibrated" else "int64") for c in UNIT_COLUMNS})
    a, c = pairs["anchor_index"].to_numpy(np.int64), pairs["candidate_index"].to_numpy(np.int64)
    keep = a != c
    if "mirrored" in pairs:
        keep &= ~pairs["mirrored"].fillna(False).to_numpy(bool)
    calibrated = pairs["calibrated"].fillna(False).to_numpy(bool) if "calibrated" in pairs \
        else np.zeros(len(pairs), bool)
    first, second = (a, c) if ordered else (np.minimum(a, c), np.maximum(a, c))
    rows = pd.DataFrame({"step": pairs["step"].to_numpy(np.int64)[keep], "anchor_index": first[keep],
                         "candidate_index": second[keep], "calibrated": calibrated[keep]})
    units = rows.groupby(["step", "anchor_index", "candidate_index"], sort=True)["calibrated"].agg(["any", "size"])
    return units.reset_index().rename(columns={"any": "calibrated", "size": "rows"})[list(UNIT_COLUMNS)]
