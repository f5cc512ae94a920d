"""The flagged pairs of a step as one picture (anchor tile beside candidate tile, a pair per row): what the trackers
(``core.store.trackers``) show beside the curves, so a researcher sees in TensorBoard or MLflow what FNSD flagged."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .fn_scoring import pair_tiles

GAP = 4  # pixels between the two tiles of a pair and between pairs
MAX_SIDE = 96  # tiles are shown at most this many pixels wide


def pair_grid(dataset: Any, rows: Sequence[dict[str, Any]], mode: str = "true") -> np.ndarray | None:
    """(H, W, 3) uint8: one row per flagged pair, anchor left, candidate right, on white; None without pairs."""
    if not rows:
        return None
    pairs = pd.DataFrame(list(rows))
    anchors, candidates = pair_tiles(dataset, pairs, mode)
    step = max(1, int(np.ceil(anchors.shape[1] / MAX_SIDE)))
    anchors, candidates = anchors[:, ::step, ::step], candidates[:, ::step, ::step]
    k, h, w = anchors.shape[:3]
    grid = np.full((k * h + (k - 1) * GAP, 2 * w + GAP, 3), 255, np.uint8)
    for i in range(k):
        top = i * (h + GAP)
        grid[top:top + h, :w] = anchors[i]
        grid[top:top + h, w + GAP:] = candidates[i]
    return grid
