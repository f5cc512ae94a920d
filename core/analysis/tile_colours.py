"""Colour statistics of tiles: the reference any learned feature must beat.

Why a module of its own: both the false-negative reports (the colour selector) and the Embeddings page's kNN (its
colour reference) hold a figure against what the tiles' colours alone give. A review found a 5-NN accuracy of 0.75
that looked learned, while per-channel means and deviations of the same tiles scored 0.79.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..imaging.band_preview import preview_chw
from ..imaging.bands import bands_of

COLOUR_METRIC = "euclidean"  # means and deviations are magnitudes: cosine would see only their proportions


def colour_features(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation of uint8 tiles (B, 3, H, W) in [0, 1]: (B, 6) float32."""
    x = np.asarray(images, np.float32).reshape(images.shape[0], images.shape[1], -1) / 255.0
    return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1).astype(np.float32)


def tile_colours(dataset: object, indices: Sequence[int] | np.ndarray,
                 progress: Callable[[int, int], None] | None = None, chunk: int = 256) -> np.ndarray:
    """:func:`colour_features` of the data set's tiles ``indices``, as their pictures show them (a multi-band tile's
    true colour), read a chunk at a time so a large set never sits in memory whole."""
    idx = np.asarray(indices, np.int64).reshape(-1)
    out = [np.zeros((0, 6), np.float32)]
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        out.append(colour_features(preview_chw(dataset.get_images(part).numpy(), bands_of(dataset))))
        if progress:
            progress(start + len(part), len(idx))
    return np.concatenate(out)
