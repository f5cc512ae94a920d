"""Reading any image for inference the same, documented way, and writing a mask back as a GeoTIFF.

``read_image(path)`` returns a :class:`LoadedImage`: 8-bit RGB pixels, the georeference when there is one, the
ground size of a pixel when it is known, and ``notes`` saying what was done to the file's bands. The rules:

Formats
    TIFF / GeoTIFF (recognised by their first bytes, whatever the suffix) are read with rasterio, strip by strip,
    so a big file never needs a second full-size float copy. Everything else is opened with PIL (PNG, JPEG and
    the other raster formats PIL knows: BMP, WebP, GIF's first frame, ...). A JPEG's EXIF orientation is applied.

Bands
    1 band            grey, replicated to R, G and B (a palette TIFF's colour map is applied instead).
    2 bands           grey + alpha: the first band replicated, the alpha band dropped.
    3 bands           R, G, B.
    4 bands           a PNG (RGBA): alpha dropped. A TIFF: bands 1-3 used as RGB; band 4 is alpha (dropped) or
                      near-infrared (RGB-IR, ignored), as its colour interpretation says.
    more than 4       bands 1-3 used as RGB, the rest ignored (with a note).
    palette / CMYK    converted to RGB by PIL.

Depth
    uint8             used as is.
    anything else     (uint16, int16, 32-bit integers, float) each band rescaled to 0-255 by its own 2nd and 98th
                      percentiles (from at most about a million samples), values clipped; the same stretch GIS
                      viewers apply to 16-bit imagery.
    NaN / nodata      NaN and (for rescaled data) pixels equal to the file's nodata value are left out of the
                      percentiles and written as 0. In 8-bit data the nodata value is kept as a colour: orthophotos
                      often declare nodata=255 while their white roofs are 255 too (the NEON tiles do).
    no-data masks     ``declared_nodata``: alpha 0 (PNG, TIFF alpha band), a GeoTIFF's mask, NaN, the nodata value
                      of non-8-bit data. ``nodata_value_pixels``: pixels equal to an 8-bit nodata value, which
                      ``core.nodata`` treats as no data only where they reach the border.

Georeference
    ``profile`` (only for a raster with a CRS): ``crs``, ``transform``, ``width``, ``height``, what
    :func:`write_mask_geotiff` needs. ``pixel_size_m``: the side in metres of a square of the same area as one
    pixel, when the CRS is projected (metres or feet; not for degrees).

Refusals
    :class:`ImageError` (a ``ValueError``) with a one-line reason: missing or unreadable file, a folder, a zero-byte
    file, not an image (unknown format), a truncated or corrupt file, fewer than ``MIN_SIDE`` pixels on a side,
    or more than ``max_pixels`` pixels (checked from the header, before decoding; PIL's own decompression-bomb
    check is lifted while we open so that the answer is always this one).
"""
from __future__ import annotations

import json
import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000  # core.budget's default pixel budget; callers pass core.budget.max_pixels()
MIN_SIDE = 8
STRIP_PIXELS = 16_000_000  # rasterio reads at most about this many pixels per band at a time
SAMPLE_PIXELS = 1_000_000  # percentiles from at most about this many samples per band

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PIL_LOCK = threading.Lock()


class ImageError(ValueError):
    """An image file cannot be used; the message is one line saying why."""


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

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


# ------------------------------------------------------------------------------------------------ helpers
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"image too small ({width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} needed)")
    if width * height > max_pixels:
        raise ImageError(f"image too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; the pixel "
                         f"budget is {max_pixels / 1e6:g}): refused from its header, before decoding; raise the "
                         "budget with --max-megapixels or $FALSE_WB_MAX_MEGAPIXELS")


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


# ------------------------------------------------------------------------------------------------ TIFF (rasterio)
def _read_tiff(path: Path, max_pixels: int) -> LoadedImage:
    import rasterio
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning and friends: we say it ourselves
            with rasterio.open(path) as src:
                return _read_rasterio(src, max_pixels, ColorInterp, Resampling, Window)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("not enough memory to read this image") from None
    except RasterioError as err:
        raise ImageError(f"truncated or corrupt TIFF ({_one_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - GDAL's odder errors on malformed files: still one line
        raise ImageError(f"unreadable TIFF ({type(err).__name__}: {_one_line(err)})") from None


def _read_rasterio(src: Any, max_pixels: int, ColorInterp: Any, Resampling: Any, Window: Any) -> LoadedImage:
    width, height, count = int(src.width), int(src.height), int(src.count)
    _check_size(width, height, max_pixels)
    if count < 1:
        raise ImageError("TIFF has no bands")
    notes: list[str] = []
    dtype = np.dtype(src.dtypes[0])
    interp = list(src.colorinterp)
    colormap = None
    if count == 1:
        bands = [1, 1, 1]
        if interp and interp[0] == ColorInterp.palette:
            try:
                colormap = src.colormap(1)
                notes.append("palette expanded to RGB")
            except ValueError:
                colormap = None
        if colormap is None:
            notes.append("grey band replicated to RGB")
    elif count == 2:
        bands = [1, 1, 1]
        notes += ["grey band replicated to RGB", "alpha band dropped"]
    elif count == 3:
        bands = [1, 2, 3]
    elif count == 4:
        bands = [1, 2, 3]
        if len(interp) == 4 and interp[3] == ColorInterp.alpha:
            notes.append("4 bands: used bands 1-3 as RGB, alpha band dropped (RGBA)")
        else:
            notes.append("4 bands: used bands 1-3 as RGB (RGB-IR)")
    else:
        bands = [1, 2, 3]
        notes.append(f"{count} bands: used bands 1-3 as RGB, bands 4-{count} ignored")

    distinct = sorted(set(bands))
    nodata = src.nodata
    rescale = dtype != np.uint8 and colormap is None
    lohi: dict[int, tuple[float, float] | None] = {}
    if rescale:
        notes.append(_depth_note(dtype))
        step = max(1, int(math.sqrt(width * height / SAMPLE_PIXELS)))
        shape = (max(1, height // step), max(1, width // step))
        for b in distinct:
            sample = src.read(b, out_shape=shape, resampling=Resampling.nearest).astype(np.float64)
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                sample = sample[sample != nodata]
            lohi[b] = _percentiles(sample)

    rgb = np.empty((height, width, 3), np.uint8)
    flags = [set(f) for f in src.mask_flag_enums]
    from rasterio.enums import MaskFlags
    only_nodata = all(f == {MaskFlags.nodata} for f in flags)
    has_mask = not all(f == {MaskFlags.all_valid} for f in flags)
    declared = np.zeros((height, width), bool) if has_mask and not (only_nodata and dtype == np.uint8) else None
    value_px = np.zeros((height, width), bool) if has_mask and only_nodata and dtype == np.uint8 else None
    rows = max(1, STRIP_PIXELS // width)
    n_nodata = 0
    n_nan = 0
    for y0 in range(0, height, rows):
        h = min(rows, height - y0)
        win = Window(0, y0, width, h)
        data = src.read(distinct, window=win)  # (len(distinct), h, W)
        if declared is not None or value_px is not None:
            empty = src.dataset_mask(window=win) == 0
            (declared if declared is not None else value_px)[y0:y0 + h] = empty
        if colormap is not None:
            lut = np.zeros((256, 3), np.uint8)
            for k, v in colormap.items():
                if 0 <= k < 256:
                    lut[k] = v[:3]
            rgb[y0:y0 + h] = lut[np.clip(data[0], 0, 255).astype(np.uint8)] if dtype != np.uint8 else lut[data[0]]
            continue
        planes: dict[int, np.ndarray] = {}
        if rescale:
            invalid = None
            if np.issubdtype(dtype, np.floating):
                nan = np.isnan(data).any(axis=0)
                n_nan += int(nan.sum())
                invalid = nan
                if nan.any():
                    if declared is None:
                        declared = np.zeros((height, width), bool)
                    declared[y0:y0 + h] |= nan
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                nd = (data == nodata).all(axis=0)
                n_nodata += int(nd.sum())
                invalid = nd if invalid is None else (invalid | nd)
            for i, b in enumerate(distinct):
                planes[b] = _stretch(data[i], lohi[b], invalid)
        else:
            for i, b in enumerate(distinct):
                planes[b] = data[i]
        for c, b in enumerate(bands):
            rgb[y0:y0 + h, :, c] = planes[b]
    if n_nan:
        notes.append(f"{n_nan:,} NaN pixels set to 0")
    if n_nodata:
        notes.append(f"{n_nodata:,} nodata pixels (value {nodata:g}) set to 0")

    profile = None
    pixel_size_m = None
    if src.crs is not None:
        profile = {"crs": src.crs, "transform": src.transform, "width": width, "height": height}
        pixel_size_m = _pixel_size_m(src.crs, src.transform)
        if pixel_size_m is None:
            notes.append("georeferenced, but not in a projected CRS with metric units: areas in pixels only")
    elif not src.transform.is_identity:
        notes.append("has a transform but no CRS: not treated as georeferenced")
    if declared is not None and not declared.any():
        declared = None
    if value_px is not None and not value_px.any():
        value_px = None
    return LoadedImage(rgb, profile, pixel_size_m, notes, declared_nodata=declared, nodata_value_pixels=value_px)


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


# ------------------------------------------------------------------------------------------------ PIL
def _open_pil(path: Path) -> Image.Image:
    """Image.open with PIL's decompression-bomb check lifted (we check the size ourselves, from the header)."""
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _read_pil(path: Path, max_pixels: int, orient: bool = True) -> LoadedImage:
    try:
        img = _open_pil(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as err:  # pragma: no cover - the check is lifted above
        raise ImageError(f"image too large ({_one_line(err)})") from None
    except OSError as err:
        raise ImageError(f"cannot read the file ({_one_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - a malformed header: one line
        raise ImageError(f"not a readable image ({type(err).__name__}: {_one_line(err)})") from None
    with img:
        w, h = img.size
        _check_size(w, h, max_pixels)
        notes: list[str] = []
        fmt = img.format or "image"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"{fmt} has {img.n_frames} frames: used the first")
                orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
                if orient and orientation not in (None, 1):
                    img = ImageOps.exif_transpose(img)
                    notes.append(f"EXIF orientation {orientation} applied")
                    _check_size(img.size[0], img.size[1], max_pixels)
                rgb = _pil_to_rgb(img, notes)
                alpha = _pil_alpha(img)
        except ImageError:
            raise
        except MemoryError:
            raise ImageError("not enough memory to decode this image") from None
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise ImageError(f"truncated or corrupt {fmt} file ({_one_line(err)})") from None
        except Exception as err:  # noqa: BLE001 - decoders raise odd types on malformed files: still one line
            raise ImageError(f"unreadable {fmt} file ({type(err).__name__}: {_one_line(err)})") from None
    declared = None if alpha is None or not (alpha == 0).any() else alpha == 0
    if declared is not None:
        notes.append(f"{int(declared.sum()):,} transparent pixels treated as no data")
    return LoadedImage(np.ascontiguousarray(rgb), None, None, notes, declared_nodata=declared)


def _pil_alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha channel (H, W) uint8 of an image that has one, else None."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        return np.asarray(img.getchannel("A"))
    if mode == "P" and "transparency" in img.info:
        return np.asarray(img.convert("RGBA").getchannel("A"))
    return None


def _pil_to_rgb(img: Image.Image, notes: list[str]) -> np.ndarray:
    mode = img.mode
    if mode in ("RGB",):
        return np.asarray(img)
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float, one band
        a = np.asarray(img)
        notes.append("grey band replicated to RGB")
        notes.append(_depth_note(a.dtype))
        invalid = ~np.isfinite(a) if a.dtype.kind == "f" else None
        if invalid is not None and invalid.any():
            notes.append(f"{int(invalid.sum()):,} NaN pixels set to 0")
        g = _stretch(a, _percentiles(_sample(a).astype(np.float64)), invalid)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "1":
        notes.append("grey band replicated to RGB")
        g = np.asarray(img.convert("L"))
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("L", "LA", "La"):
        g = np.asarray(img.getchannel(0))
        notes.append("grey band replicated to RGB")
        if mode != "L":
            notes.append("alpha band dropped")
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX"):
        if mode != "RGBX":
            notes.append("alpha band dropped")
        return np.asarray(img.convert("RGB"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        notes.append("palette expanded to RGB" + (", alpha dropped" if has_alpha else ""))
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB").convert("RGB"))
    notes.append(f"{mode} converted to RGB")
    return np.asarray(img.convert("RGB"))


def _sample(a: np.ndarray) -> np.ndarray:
    step = max(1, int(math.sqrt(a.size / SAMPLE_PIXELS)))
    return a[::step, ::step]


# ------------------------------------------------------------------------------------------------ public
def plain_image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) of a PNG/JPEG/... from its header, without decoding; None for TIFFs (their pixel size may
    change the work through resampling) and for anything unreadable (``read_image`` then says why)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) in _TIFF_MAGIC:
                return None
        with _open_pil(Path(path)) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # noqa: BLE001 - the caller reads the file properly next
        return None


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, *, orient: bool = True) -> LoadedImage:
    """Read one image file as 8-bit RGB by the rules in this module's docstring; ImageError says why not. Every
    reader of images wraps this one (the data sets too). ``orient=False`` leaves an EXIF orientation unapplied:
    label masks are drawn on the stored pixel grid."""
    path = Path(path)
    try:
        if not path.exists():
            raise ImageError("no such file")
        if path.is_dir():
            raise ImageError("is a folder, not an image file")
        size = path.stat().st_size
        if size == 0:
            raise ImageError("empty file (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(16)
    except ImageError:
        raise
    except OSError as err:
        raise ImageError(f"cannot read the file ({err.strerror or _one_line(err)})") from None
    if head[:4] in _TIFF_MAGIC:
        return _read_tiff(path, max_pixels)
    return _read_pil(path, max_pixels, orient)


def write_mask_geotiff(path: str | os.PathLike[str], mask: np.ndarray, profile: dict[str, Any],
                       classes: list[dict[str, Any]] | None = None) -> None:
    """A single-band uint8 GeoTIFF (LZW) with the CRS and transform of ``profile``. With ``classes``: their colour
    table, their names as tags (``CLASS_NAMES`` as JSON, ``CLASS_<i>``) and in the band description, nodata 255."""
    import rasterio

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    if profile.get("width", w) != w or profile.get("height", h) != h:
        raise ValueError(f"mask is {w}x{h} but the georeference is for {profile.get('width')}x{profile.get('height')}")
    opts: dict[str, Any] = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                                crs=profile.get("crs"), transform=profile["transform"], compress="lzw")
    if classes and len(classes) < 256:
        opts["nodata"] = 255  # core.infer.NODATA: pixels without data
    if w >= 256 and h >= 256:
        opts.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(Path(path), "w", **opts) as dst:
        dst.write(mask.astype(np.uint8, copy=False), 1)
        if classes:
            cmap = {i: tuple(int(v) for v in c.get("color", (0, 0, 0))[:3]) + (255,)
                    for i, c in enumerate(classes[:256])}
            dst.write_colormap(1, cmap)
            names = [str(c.get("name", f"class {i}")) for i, c in enumerate(classes[:256])]
            dst.update_tags(CLASS_NAMES=json.dumps(names),
                            **{f"CLASS_{i}": name for i, name in enumerate(names)})
            dst.update_tags(1, CLASS_NAMES=json.dumps(names))
            dst.set_band_description(1, "class index: " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
