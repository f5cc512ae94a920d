"""The dominant label class of every tile: what the oracle detector trains with and what flag quality is scored by.

In the data layer because both the trainer (``loss.detector=oracle``) and the analysis read it; cached per data set
in this process, since the pages ask on every run.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .protocols import TileSet

_LABEL_CHUNK = 256  # tiles per bincount: bounded memory whatever the tile size

_DOMINANT: dict[tuple, np.ndarray] = {}
_DOMINANT_LOCK = threading.Lock()


def _dataset_key(dataset: Any) -> tuple:
    """Which cached tiles a dataset object reads: its cache folder and when that cache was made (a view of some
    tiles says which ones through ``cache_key``)."""
    key = getattr(dataset, "cache_key", None)
    if key is not None:
        return key
    meta = getattr(dataset, "meta", {}) or {}
    return str(getattr(dataset, "cache_dir", id(dataset))), meta.get("created")


NO_CLASS = -1  # the dominant class of a tile without a single labeled pixel: it has none, and is never scored


def dominant_classes(dataset: TileSet) -> np.ndarray | None:
    """The dominant class of every tile (ties: the lower class), :data:`NO_CLASS` for a tile whose pixels are all
    ignored, or None for a data set without labels.

    From the data set's per-tile class counts where it keeps them, else vectorised over chunks of label maps (one
    ``bincount`` per chunk); cached per data set in this process, since the pages ask on every run.
    """
    if not getattr(dataset, "has_labels", False) or not (hasattr(dataset, "counts") or hasattr(dataset, "labels")):
        return None
    key = _dataset_key(dataset)
    with _DOMINANT_LOCK:
        if key in _DOMINANT:
            return _DOMINANT[key]
    if hasattr(dataset, "counts"):
        out = _dominant_of_counts(np.asarray(dataset.counts))
    else:
        classes = getattr(dataset, "classes", None)
        labels = dataset.labels
        n_classes = len(classes) if classes else int(np.max(labels)) + 1
        out = np.empty(len(labels), np.int64)
        for start in range(0, len(labels), _LABEL_CHUNK):
            out[start:start + _LABEL_CHUNK] = _dominant_of_chunk(np.asarray(labels[start:start + _LABEL_CHUNK]),
                                                                 n_classes)
    out.setflags(write=False)
    with _DOMINANT_LOCK:
        _DOMINANT[key] = out
    return out


def _dominant_of_counts(counts: np.ndarray) -> np.ndarray:
    out = counts.argmax(axis=1).astype(np.int64)
    out[counts.sum(axis=1) == 0] = NO_CLASS
    return out


def _dominant_of_chunk(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Argmax of per-tile class counts; values outside the class table (e.g. 255 = ignore) count for none."""
    b = labels.shape[0]
    flat = labels.reshape(b, -1).astype(np.int64)
    flat = np.where(flat < n_classes, flat, n_classes)  # one extra bin for "no class"
    bins = n_classes + 1
    counts = np.bincount((flat + np.arange(b)[:, None] * bins).ravel(), minlength=b * bins).reshape(b, bins)
    return _dominant_of_counts(counts[:, :n_classes])
