"""What every image reader shares, below all of them: the loaded image and its header as types, the one-line error,
the size and decoded-size budgets checked from a header, the percentile stretch to 8 bit, a CRS's pixel size.

Why a module of its own: ``imageio`` (the one entry, ``read_image``), ``tiffio`` (rasterio), ``bands`` (band names)
and ``raster`` (named bands for ``data.bands``, and ``read_raster``, the one entry) all need these; with them here
the imports of ``core.imaging`` point one way (pixels <- bands <- tiffio <- imageio <- raster), with no cycle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_PIXELS = 50_000_000  # core.imaging.budget's default pixel budget; callers pass core.imaging.budget.max_pixels()
MIN_SIDE = 8
# A PNG text chunk our own generators write (the sample tiles): the image is a generated scene, not a photo of the
# ground. Only such files may go to a model trained on generated scenes (``core.seg.model_choice``).
GENERATED_KEY = "false-wb-generated"  # no colon: GDAL reads "a:b=c" as key "a"
STRIP_PIXELS = 16_000_000  # rasterio reads at most about this many pixels per band at a time
SAMPLE_PIXELS = 1_000_000  # percentiles from at most about this many samples per band

ALPHA_NOTE = "alpha band read as transparency (no data where 0), not as colour"  # not "dropped": its 0s are no data
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageError(ValueError):
    """An image file cannot be used; the message is one line saying why."""


class PixelBudgetError(ImageError):
    """An image over the pixel budget. How to raise the budget depends on the interface (a flag, a page's setting,
    the demo server's start), so the message carries the command line's way and ``with_hint`` gives another's."""

    COMMAND_LINE = "raise the budget with --max-megapixels or $FALSE_WB_MAX_MEGAPIXELS"

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"{why}; {self.COMMAND_LINE}")

    def with_hint(self, hint: str) -> str:
        return f"{self.why}; {hint}"


def need_rasterio() -> Any:
    """The rasterio module, or an ImageError saying how to get it: it is a requirement, but a trimmed environment
    (a GPU image, a minimal container) may lack it, and a file it cannot read must be a reason, not a crash."""
    try:
        import rasterio
    except ImportError:
        raise ImageError("reading TIFF files (and 16-bit PNGs) needs the rasterio package, which is not installed "
                         "here (pip install rasterio)") from None
    return rasterio


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    profile: dict[str, Any] | None = None  # crs, transform, width, height when georeferenced
    pixel_size_m: float | None = None
    notes: list[str] = field(default_factory=list)
    # Pixels the file itself declares empty (alpha 0, a mask, NaN, nodata of non-8-bit data): True = no data.
    declared_nodata: np.ndarray | None = None
    # Pixels equal to an 8-bit nodata value: only no-data where they reach the border (white roofs are 255 too).
    nodata_value_pixels: np.ndarray | None = None
    # A TIFF's band names (``core.imaging.bands``; None for PNG and JPEG: R, G, B). Unless they are plain 8-bit
    # R, G, B: every band as uint8 (H, W, N) for previews, and ``raw_bands`` (N, H, W) as stored, with the file's
    # nodata value, so a model reads them as its training did (by name, stretched by its training data).
    bands: np.ndarray | None = None
    band_names: list[str] | None = None
    raw_bands: np.ndarray | None = None
    band_nodata: float | None = None
    band_count: int | None = None  # a TIFF's bands, alpha included
    bands_error: str | None = None  # why a TIFF's bands beyond the RGB picture could not be read
    name: str = ""
    source_dtype: str = "uint8"  # the file's sample type (a TIFF's first band; PIL's images are 8-bit)
    generated: str | None = None  # what generated it, when the file says it is a generated scene (``GENERATED_KEY``)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


# ------------------------------------------------------------------------------------------------ helpers
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


BYTES_PER_PIXEL = 16  # a file's whole decoded size may be 16 bytes a pixel of the budget: 4 float32 bands


def check_decoded_size(width: int, height: int, bands: int, itemsize: int, max_pixels: int) -> None:
    """Refuse, from the header, a file whose bands together decode to more than the budget allows: the pixel budget
    counts width x height, and a 4 MB TIFF of 1000 x 1000 x 3000 bands decodes to 3 GB (GDAL's masks read them all)."""
    total = width * height * max(bands, 1) * max(itemsize, 1)
    limit = max_pixels * BYTES_PER_PIXEL
    if total > limit:
        raise PixelBudgetError(f"image too large to decode ({width}x{height} pixels x {bands} bands x {itemsize} "
                               f"bytes = {total / 1e9:.1f} GB; the budget is {limit / 1e9:.1f} GB, {BYTES_PER_PIXEL} "
                               "bytes a pixel of the pixel budget): refused from its header")


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"image too small ({width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} needed)")
    if width * height > max_pixels:
        raise PixelBudgetError(f"image too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; the "
                               f"pixel budget is {max_pixels / 1e6:g} megapixels): refused from its header, before decoding")


def _percentiles(sample: np.ndarray) -> tuple[float, float] | None:
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, [2, 98])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _stretch(a: np.ndarray, lohi: tuple[float, float] | None, invalid: np.ndarray | None) -> np.ndarray:
    """One band (any numeric dtype) to uint8 by the given (lo, hi); NaN and ``invalid`` pixels become 0."""
    if lohi is None:
        return np.zeros(a.shape, np.uint8)
    lo, hi = lohi
    out = a.astype(np.float32)
    out -= lo
    out *= 255.0 / (hi - lo)
    out += 0.5
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0, 255, out=out)
    res = out.astype(np.uint8)
    if invalid is not None:
        res[invalid] = 0
    return res


def _depth_note(dtype: np.dtype) -> str:
    if np.issubdtype(dtype, np.floating):
        kind = "float"
    else:
        kind = f"{np.dtype(dtype).itemsize * 8}-bit"
    return f"{kind} data rescaled to 8 bit by its 2nd-98th percentiles, per band"


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says before any pixel is decoded: enough to size the work it will cause."""

    width: int
    height: int
    pixel_size_m: float | None = None  # a projected GeoTIFF's; None when unknown (and always for PNG/JPEG)


def is_tiff(path: Path) -> bool:
    """A TIFF by its first bytes, whatever its suffix."""
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def is_16bit_png(head: bytes) -> bool:
    """Whether a file's first 26 bytes are those of a 16-bit PNG with colour or alpha (IHDR: bit depth 16, colour
    type 2, 4 or 6). PIL opens such a file as 8 bits from the high bytes alone: 12-bit aerial data came out nearly
    black, and no note said so. GDAL (through rasterio) reads all 16 bits, which are then stretched as a 16-bit
    TIFF's. (16-bit grey alone, type 0, PIL reads whole.)"""
    return (head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 26
            and head[24] == 16 and head[25] in (2, 4, 6))


def read_with_rasterio(path: Path) -> bool:
    """The files rasterio reads (TIFFs, and PNGs of 16-bit colour), not PIL; by their first bytes."""
    with open(path, "rb") as f:
        head = f.read(32)
    return head[:4] in _TIFF_MAGIC or is_16bit_png(head)


def file_kind(path: Path) -> str:
    """"TIFF" or "PNG", for the one-line errors of the files rasterio reads."""
    return "TIFF" if is_tiff(path) else "PNG"


def _pixel_size_m(crs: Any, transform: Any) -> float | None:
    try:
        if not crs.is_projected:
            return None
        factor = float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - odd CRS definitions: no metric size, not an error
        return None
    area = abs(transform.a * transform.e - transform.b * transform.d)
    if not area > 0 or not math.isfinite(area):
        return None
    return math.sqrt(area) * factor
