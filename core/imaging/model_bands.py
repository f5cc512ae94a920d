"""An image as a model reads it: the RGB picture for a plain RGB model, else the card's bands by name, stretched
by the card's training percentiles, and where those bands hold no data. Inference and model choice call this; the
file reading itself lives in ``core.imaging.bands``."""
from __future__ import annotations

from typing import Any

import numpy as np

from .bands import RGB, BandError, _invalid, card_bands, check_bands, describe, is_rgb, resolve, to_uint8


def reads_plain_rgb(card: dict[str, Any]) -> bool:
    """Whether a model reads the one RGB rule of ``core.imaging.imageio`` (every model made without ``data.bands``),
    rather than bands found by name and stretched by its training data."""
    return is_rgb(card_bands(card)) and not card.get("bands_by_name")


def model_pixels(loaded: Any, card: dict[str, Any]) -> np.ndarray:
    """The image as the model's training read its files: the RGB picture for a plain RGB model; else the card's bands
    by name, from the raw samples (8-bit as they are, deeper ones stretched by the card's training percentiles, no-data
    zeroed) as ``read_bands`` does. PNG and JPEG files have R, G, B; the card's ``file_bands`` rename the bands of a
    TIFF of as many bands (Vaihingen's IRRG). BandError when the image lacks a band: it names the missing band and
    what the model reads (callers add the file's name)."""
    if reads_plain_rgb(card):
        return loaded.rgb
    if getattr(loaded, "bands_error", None):
        raise BandError(f"the image's bands could not be read: {loaded.bands_error}")
    want = card_bands(card)
    try:
        idx, _ = resolve(want, _available(loaded, card), "the image")  # callers put the file's name in front
    except BandError as err:
        raise BandError(f"{err}; the model reads {describe(want)}") from None
    raw = getattr(loaded, "raw_bands", None)
    if raw is None:  # a PNG, a JPEG or a plain 8-bit RGB TIFF: the picture is its bands
        return np.ascontiguousarray(loaded.rgb[..., idx])
    data = raw[idx]
    invalid = _invalid(data, getattr(loaded, "band_nodata", None))
    check_bands(data, invalid, getattr(loaded, "band_nodata", None), idx, want, "the image")
    return to_uint8(data, card.get("band_stretch"), invalid)[0]


def _available(loaded: Any, card: dict[str, Any]) -> list[str]:
    """The image's band names as the model's training named its files' bands: a TIFF's own, renamed by the card's
    ``file_bands`` when as many (Vaihingen's IRRG); R, G, B for PNG and JPEG."""
    known = card.get("file_bands")
    available = list(loaded.band_names or RGB)
    if loaded.band_names is not None and known and len(known) == getattr(loaded, "band_count", len(available)):
        available = list(known)  # as read_bands does: only for a file of as many bands, alpha included
    return available


def band_nodata_mask(loaded: Any, card: dict[str, Any]) -> np.ndarray | None:
    """Pixels that hold no data in the bands the model reads (NaN in one of them, the nodata value in all), beyond
    what the RGB picture declares; None for a plain RGB model or when there are none. Training zeroed them."""
    raw = getattr(loaded, "raw_bands", None)
    if raw is None or reads_plain_rgb(card):
        return None
    try:
        idx, _ = resolve(card_bands(card), _available(loaded, card), "the image")
    except BandError:
        return None
    invalid = _invalid(raw[idx], getattr(loaded, "band_nodata", None))
    return invalid if invalid is not None and invalid.any() else None
