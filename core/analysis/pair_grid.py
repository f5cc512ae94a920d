"""Flagged pairs as pictures: the tiles of pairs (the False negatives page's cards) and a step's pairs as one grid
(anchor tile beside candidate tile, a pair per row), what the trackers (``core.store.trackers``) show beside the
curves, so a researcher sees in TensorBoard or MLflow what FNSD flagged."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.protocols import TileSet
from ..imaging.band_preview import preview_chw
from ..imaging.bands import RGB, bands_of

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


def pair_tiles(dataset: TileSet, pairs: pd.DataFrame, mode: str = "true") -> tuple[np.ndarray, np.ndarray]:
    """Anchor and candidate tiles of the given pairs as uint8 (K, H, W, 3) arrays, in two batched fetches; tiles of
    more bands in ``mode`` colour (``core.imaging.band_preview.preview``: true or false colour).

    The anchor's positive is another augmented view of the anchor tile itself, so the tile stands for both.
    """
    n = len(dataset)
    for column in ("anchor_index", "candidate_index"):
        if len(pairs) and (pairs[column].max() >= n or pairs[column].min() < 0):
            raise ValueError(f"fns.jsonl names tile {int(pairs[column].max())}, but the data set has {n} tiles: "
                             "was it rebuilt with other settings since the run?")
    names = bands_of(dataset)
    return _hwc(dataset.get_images(pairs["anchor_index"].to_numpy()), names, mode), \
        _hwc(dataset.get_images(pairs["candidate_index"].to_numpy()), names, mode)


def _hwc(images: torch.Tensor, names: Sequence[str] = RGB, mode: str = "true") -> np.ndarray:
    return preview_chw(images, names, mode).permute(0, 2, 3, 1).contiguous().numpy()


def class_names(dataset: Any) -> list[str]:
    """Names of the data set's classes (empty when it has none), for captions."""
    def name(c: Any) -> str:
        if isinstance(c, dict):  # labeled sets: {"name", "color"}
            return str(c.get("name"))
        return str(c[0]) if isinstance(c, (tuple, list)) else str(c)  # the synthetic table: (name, rgb)

    return [name(c) for c in (getattr(dataset, "classes", None) or [])]


def class_css_colours(dataset: Any) -> list[str | None]:
    """Each class's drawing colour as CSS (``core.imaging.colours``; None where it names none), so the embedding map
    colours a class as the Fine-tune and Segment pages do (a review saw building green there, blue here)."""
    from ..imaging.colours import css_rgb, display_rgb

    out: list[str | None] = []
    for c in getattr(dataset, "classes", None) or []:
        cls = c if isinstance(c, dict) else {"color": c[1]} if isinstance(c, (tuple, list)) and len(c) > 1 else {}
        out.append(css_rgb(cls) if display_rgb(cls) else None)
    return out
