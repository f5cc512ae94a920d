"""Pixel size: running a model at the ground sample distance it was trained on, and bringing the mask back.

Why: a model trained on 0.5 m satellite pixels sees a 0.1 m orthophoto's trees as 25 times larger than anything it
knows. When both the image's pixel size (a projected GeoTIFF) and the model's (its card's ``domain.gsd_m``) are
known and differ by more than ``PIXEL_SIZE_TOLERANCE``, the image is resampled to the model's pixel size for
inference and the mask back to the image's grid (nearest), so the output keeps the input's size and transform.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

PIXEL_SIZE_TOLERANCE = 1.5


def model_pixel_size(card: dict[str, Any]) -> float | None:
    """The ground sample distance (m/px) the card states for its training imagery, when known."""
    v = (card.get("domain") or {}).get("gsd_m") if isinstance(card.get("domain"), dict) else None
    try:
        v = float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
    return v if v is not None and math.isfinite(v) and v > 0 else None


def resample_factor(image_m: float | None, model_m: float | None,
                    tolerance: float = PIXEL_SIZE_TOLERANCE) -> float | None:
    """Scale to apply to the image (new side = old side x factor) so its pixels match the model's, or None when
    either size is unknown or they are within ``tolerance`` of each other."""
    if not image_m or not model_m:
        return None
    factor = image_m / model_m
    return factor if max(factor, 1.0 / factor) > tolerance else None


def pixel_size_reason(image_m: float | None, model_m: float | None, resampled: bool) -> str | None:
    """Words for a pixel-size mismatch (None when there is none or it cannot be known)."""
    if resample_factor(image_m, model_m) is None:
        return None
    what = "resampled to the model's pixel size for inference" if resampled else "not resampled (switched off)"
    return f"its pixel size is {image_m:.2g} m, the model's {model_m:.2g} m: {what}"


def no_pixel_size_note(model_m: float | None) -> str:
    """Why an image's areas have no square metres although it is in the model's domain."""
    card = f" (the model's card states {model_m:.2g} m per pixel for its own imagery)" if model_m else ""
    return ("the file states no pixel size: areas are shares of the image only, not square metres" + card
            + "; a georeferenced GeoTIFF gives them")


def resampled_size(width: int, height: int, factor: float, min_side: int = 32) -> tuple[int, int]:
    """(width, height) after scaling by ``factor``: what ``resample_rgb`` makes, known before decoding."""
    return max(min_side, int(round(width * factor))), max(min_side, int(round(height * factor)))


def resample_rgb(rgb: np.ndarray, factor: float, min_side: int = 32) -> np.ndarray:
    """The image scaled by ``factor`` (area-averaging when shrinking, bilinear when enlarging)."""
    h, w = rgb.shape[:2]
    size = resampled_size(w, h, factor, min_side)
    method = Image.BOX if factor < 1 else Image.BILINEAR
    if rgb.ndim == 3 and rgb.shape[2] != 3:  # more bands: one by one (PIL would take a 4th band for alpha)
        return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c])).resize(size, method))
                         for c in range(rgb.shape[2])], axis=-1)
    return np.asarray(Image.fromarray(rgb).resize(size, method))


def resample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A class or boolean mask brought to ``shape`` (H, W) by nearest neighbour, dtype kept."""
    if mask.shape == tuple(shape):
        return mask
    m = np.asarray(mask)
    as_bool = m.dtype == bool
    img = Image.fromarray(m.astype(np.uint8))
    out = np.array(img.resize((shape[1], shape[0]), Image.NEAREST))  # writable: no-data is written into it
    return out.astype(bool) if as_bool else out
