"""Reading a labeled scene's files and the mask decoders: images through ``core.imaging.imageio`` (one rule for every
reader), colours to class indices (exact colours, or on/off channels at 128 as DeepGlobe's scorer reads them),
values to class indices with a value mapping. Which decoder a mask file needs is ``mask_read``'s rule.

Why apart from ``seg_base``: the formats (``seg_formats``) and the tests need the readers and decoders alone; tiling
and caching live in ``seg_base``.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..imaging.imageio import ImageError, PixelBudgetError, need_rasterio
from ..imaging.raster import read_raster
from .paths import DataError

IGNORE_INDEX = 255
MAX_PIXELS = 400_000_000  # a whole-scene orthophoto may be large; beyond this we ask the user to cut it


# ------------------------------------------------------------------------------------------------ reading
def _open_pil(path: Path) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
        img = Image.open(path)
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise DataError(f"{path}: image too large ({w}x{h} pixels, limit {MAX_PIXELS}); cut it into smaller files")
    return img


def _rasterio_bands(path: Path) -> list[np.ndarray]:
    try:  # imported lazily: only GeoTIFFs that PIL cannot read need it
        rasterio = need_rasterio()
    except ImageError as err:
        raise DataError(f"{path}: {err}") from None
    from rasterio.errors import NotGeoreferencedWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            if src.width * src.height > MAX_PIXELS:
                raise DataError(f"{path}: image too large ({src.width}x{src.height} pixels)")
            a = src.read(indexes=list(range(1, min(src.count, 3) + 1)))
    return [a[k] for k in range(a.shape[0])]


_PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with _open_pil(path) as img:
            return img.size
    except DataError:
        raise
    except _PIL_ERRORS as err:
        try:
            rasterio = need_rasterio()
            with warnings.catch_warnings():  # a TIFF without georeferencing is an image all the same
                warnings.simplefilter("ignore")
                with rasterio.open(path) as src:
                    return src.width, src.height
        except Exception as err2:  # noqa: BLE001 - any decoder failure is one clear error
            raise DataError(f"cannot read {path}: PIL: {err}; rasterio: {err2}") from None


def read_rgb(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 by the one decoding rule of ``core.imaging.imageio`` (16-bit and float bands stretched by
    their 2-98 percentiles, grey replicated, alpha dropped); no EXIF rotation, as the masks are not rotated."""
    try:
        return read_raster(path, max_pixels=MAX_PIXELS).pixels
    except PixelBudgetError as err:  # training has no budget flag
        raise DataError(f"cannot read image {path}: {err.with_hint('cut it into smaller files')}") from None
    except ImageError as err:
        raise DataError(f"cannot read image {path}: {err}") from None


# ------------------------------------------------------------------------------------------------ decoding
def _rgb_key(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)


@dataclass
class Decoded:
    """A decoded mask: class indices (uint8, ignore where unlabeled), and pixels of unknown colour or value."""
    labels: np.ndarray
    unknown: int = 0
    example: Any = None  # one unknown colour (list) or value (int), for the message
    how: str = ""  # how the file was read ("class colours", "class indices", ...: ``mask_read``)
    unknowns: tuple = ()  # the commonest unknown colours or values with their pixels, most first (up to 64)


THRESHOLD_UNSURE = (64, 192)  # a channel strictly between these is neither on nor off (see ColorCode)


class ColorCode:
    """Colour-coded masks to class indices.

    ``threshold=True`` reads each channel as on/off at 128 (the DeepGlobe challenge's rule; right for the ISPRS
    sets too, whose colours are all 0/255), a channel between 64 and 192 being no class's (a colour of another
    data set, e.g. Dubai's (60, 16, 152), would else be read as some class: a foreign mask scored as this model's
    classes), else colours must match exactly (or within ``tolerance`` per channel, the nearest class winning). ``ignore_colors`` map to ``ignore_index`` quietly; any other colour maps to ignore
    too but is counted, so the caller can warn.
    """

    def __init__(self, colors: Sequence[Sequence[int]], ignore_colors: Sequence[Sequence[int]] = (),
                 ignore_index: int = IGNORE_INDEX, threshold: bool = False, tolerance: int = 0):
        self.colors = np.asarray(colors, np.int32).reshape(-1, 3)
        self.ignore_colors = np.asarray(list(ignore_colors), np.int32).reshape(-1, 3)
        self.ignore_index, self.threshold, self.tolerance = int(ignore_index), bool(threshold), int(tolerance)

    def decode(self, rgb: np.ndarray) -> Decoded:
        out, bad = self.classify(rgb)
        n = int(bad.sum())
        return Decoded(out, n, [int(v) for v in rgb[bad][0]] if n else None)

    def classify(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class indices, ignore_index where unlabeled or unknown; True where the colour is no class's nor an
        ignore colour) of an (..., 3) array of colours."""
        if self.threshold:
            return self._decode_threshold(rgb)
        return self._decode_exact(rgb)

    def _decode_threshold(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def bits(c: np.ndarray) -> np.ndarray:
            c = (np.asarray(c) >= 128).astype(np.int64)
            return (c[..., 0] << 2) | (c[..., 1] << 1) | c[..., 2]
        lut = np.full(8, -1, np.int16)
        if len(self.ignore_colors):
            lut[bits(self.ignore_colors)] = self.ignore_index
        lut[bits(self.colors)] = np.arange(len(self.colors))
        code = (rgb[..., 0] >= 128).astype(np.uint8) << 2
        code |= (rgb[..., 1] >= 128).astype(np.uint8) << 1
        code |= (rgb[..., 2] >= 128).astype(np.uint8)
        out = lut[code]
        bad = (out < 0) | ((rgb > THRESHOLD_UNSURE[0]) & (rgb < THRESHOLD_UNSURE[1])).any(axis=-1)
        out[bad] = self.ignore_index
        return out.astype(np.uint8), bad

    def _decode_exact(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate([_rgb_key(self.colors), _rgb_key(self.ignore_colors)])
        vals = np.concatenate([np.arange(len(self.colors)), np.full(len(self.ignore_colors), self.ignore_index)])
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], vals[order]
        k = _rgb_key(rgb)
        pos = np.clip(np.searchsorted(keys, k), 0, len(keys) - 1)
        hit = keys[pos] == k
        out = np.where(hit, vals[pos], self.ignore_index).astype(np.uint8)
        bad = ~hit
        if self.tolerance > 0 and bad.any():
            miss, inverse = np.unique(k[bad], return_inverse=True)
            miss_rgb = np.stack([(miss >> 16) & 255, (miss >> 8) & 255, miss & 255], axis=1)
            table = np.concatenate([self.colors, self.ignore_colors])
            d = np.abs(miss_rgb[:, None, :] - table[None, :, :]).max(axis=2)  # (unknown colours, table)
            best = d.argmin(axis=1)
            ok = d[np.arange(len(miss)), best] <= self.tolerance
            best_val = np.where(best < len(self.colors), best, self.ignore_index)
            fixed = ok[inverse]
            sub = out[bad]
            sub[fixed] = best_val[inverse][fixed]
            out[bad] = sub
            still = np.zeros_like(bad)
            still[bad] = ~fixed
            bad = still
        return out, bad


class IndexCode:
    """Index-coded masks to class indices: ``mapping`` raw value -> class, ``ignore_values`` -> ignore quietly,
    anything else -> ignore and counted."""

    def __init__(self, mapping: dict[int, int], ignore_values: Sequence[int] = (), ignore_index: int = IGNORE_INDEX):
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        self.ignore_values = [int(v) for v in ignore_values]
        self.ignore_index = int(ignore_index)

    def decode(self, raw: np.ndarray) -> Decoded:
        out, bad = self.classify(raw)
        n = int(bad.sum())
        return Decoded(out, n, int(np.asarray(raw)[bad][0]) if n else None)

    def classify(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class indices, ignore_index where unlabeled or unknown; True where the value is no class's nor ignored)."""
        raw = np.asarray(raw, np.int64)
        hi = max([*self.mapping, *self.ignore_values, 0]) + 1
        lut = np.full(hi, -1, np.int16)
        for v in self.ignore_values:
            lut[v] = self.ignore_index
        for k, v in self.mapping.items():
            lut[k] = v
        inside = (raw >= 0) & (raw < hi)
        out = np.full(raw.shape, -1, np.int16)
        out[inside] = lut[raw[inside]]
        bad = out < 0
        out[bad] = self.ignore_index
        return out.astype(np.uint8), bad


def class_table(classes: Sequence[tuple[str, Sequence[int]]]) -> list[dict]:
    return [{"name": str(n), "color": [int(c) for c in rgb]} for n, rgb in classes]
