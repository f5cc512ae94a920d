"""Pictures of N-band pixels for people: true colour (R, G, B) or false colour (NIR, R, G), for single images and
for (B, C, H, W) batches; which pictures a set of bands allows."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bands import FALSE_COLOUR, RGB


def preview(pixels: np.ndarray, names: Sequence[str], mode: str = "true") -> np.ndarray:
    """An (H, W, 3) uint8 picture of N-band pixels: ``true`` colour (R, G, B) or ``false`` colour (NIR, R, G).
    Bands that are missing fall back to the first channels, so every image gets a picture."""
    names = list(names)
    if pixels.ndim != 3:
        raise ValueError(f"pixels must be (H, W, C), got {pixels.shape}")
    want = FALSE_COLOUR if mode == "false" else RGB
    if all(w in names for w in want):
        idx = [names.index(w) for w in want]
    elif pixels.shape[2] >= 3:
        idx = [0, 1, 2]
    else:
        idx = [0] * 3
    return np.ascontiguousarray(pixels[..., idx])


def preview_chw(images: Any, names: Sequence[str], mode: str = "true") -> Any:
    """``preview`` for a batch laid out (B, C, H, W) (numpy or torch): the 3 channels to show."""
    names = list(names)
    if images.shape[1] == 3 and names == list(RGB):
        return images
    want = FALSE_COLOUR if mode == "false" else RGB
    idx = [names.index(w) for w in want] if all(w in names for w in want) else \
        ([0, 1, 2] if images.shape[1] >= 3 else [0, 0, 0])
    return images[:, idx]


def picture_views(loaded: Any) -> dict[str, np.ndarray]:
    """A loaded image's pictures besides its true-colour one: ``false`` colour (NIR, R, G) where it has those bands."""
    names = loaded.band_names or []
    if loaded.bands is None or "false" not in preview_modes(names):
        return {}
    return {"false": preview(loaded.bands, names, "false")}


def preview_modes(names: Sequence[str]) -> list[str]:
    """The previews that exist for these bands: ``true`` when R, G, B are there, ``false`` when NIR, R, G are."""
    modes = [m for m, want in (("true", RGB), ("false", FALSE_COLOUR)) if all(w in names for w in want)]
    return modes or ["true"]
