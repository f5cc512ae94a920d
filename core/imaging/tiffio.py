"""TIFF and GeoTIFF through rasterio: reading any band layout and depth into ``core.imaging.imageio.LoadedImage`` (with the
georeference, pixel size and no-data), and writing a class mask as a GeoTIFF with the class table.

Why apart from ``core.imaging.imageio``: rasterio (GDAL) is heavy and only TIFFs need it; the rules are the same as for every
other image and are written in ``core.imaging.imageio``'s docstring.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .bands import FALSE_COLOUR, RGB, _invalid, describe, src_band_names, to_uint8
from .colours import display_rgb
from .pixels import (ALPHA_NOTE, GENERATED_KEY, SAMPLE_PIXELS, STRIP_PIXELS, ImageError, ImageHeader, LoadedImage, _check_size,
                     _depth_note, _one_line, _percentiles, _pixel_size_m, _stretch, check_decoded_size, file_kind,
                     need_rasterio)


def tiff_header(path: Path) -> ImageHeader | None:
    """Width, height and pixel size from the TIFF's tags alone (no strip is decoded); None when GDAL cannot open it."""
    rasterio = need_rasterio()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as src:
                return ImageHeader(int(src.width), int(src.height), _pixel_size_m(src.crs, src.transform))
    except Exception:  # noqa: BLE001 - read_tiff says why, in one line
        return None


def read_tiff(path: Path, max_pixels: int) -> LoadedImage:
    rasterio = need_rasterio()
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
        raise ImageError(f"truncated or corrupt {file_kind(path)} ({_one_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - GDAL's odder errors on malformed files: still one line
        raise ImageError(f"unreadable {file_kind(path)} ({type(err).__name__}: {_one_line(err)})") from None


def _read_rasterio(src: Any, max_pixels: int, ColorInterp: Any, Resampling: Any, Window: Any) -> LoadedImage:
    width, height, count = int(src.width), int(src.height), int(src.count)
    _check_size(width, height, max_pixels)
    check_decoded_size(width, height, count, max(np.dtype(d).itemsize for d in src.dtypes), max_pixels)
    if count < 1:
        raise ImageError("TIFF has no bands")
    notes: list[str] = []
    dtype = np.dtype(src.dtypes[0])
    interp = list(src.colorinterp)
    names = src_band_names(src)
    # GDAL marks the 4th band of a 4-band 8-bit GeoTIFF alpha by default, RGB + NIR ones too: a band holding more
    # than 0 and 255 is near-infrared, and its dark pixels (water) are not transparent
    nir_marked_alpha = count == 4 and names[3] == "NIR" and interp[3] == ColorInterp.alpha
    # the picture is the bands named R, G, B wherever the file keeps them (PlanetScope: B, G, R, NIR), else 1-3
    visible = [names.index(c) + 1 for c in RGB] if count >= 3 and all(c in names for c in RGB) else [1, 2, 3]
    which = "bands 1-3" if visible == [1, 2, 3] else f"bands {', '.join(map(str, visible))} (named R, G, B)"
    if nir_marked_alpha:
        notes.append("band 4 is marked alpha but holds more than 0 and 255: read as near-infrared, not transparency")
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
        second = ALPHA_NOTE if interp[1] == ColorInterp.alpha else f"band 2 ({names[1]}) ignored"
        notes += ["grey band replicated to RGB", second]
    else:
        bands = visible
        others = [f"{i + 1} ({names[i]})" for i in range(count) if i + 1 not in visible and names[i] != "alpha"]
        if count == 3:
            if visible != [1, 2, 3]:
                notes.append(f"3 bands ({describe(names)}): {which} used as RGB")
        elif count == 4 and len(interp) == 4 and interp[3] == ColorInterp.alpha and not nir_marked_alpha:
            notes.append(f"4 bands: used {which} as RGB, {ALPHA_NOTE} (RGBA)")
        elif count == 4 and visible == [1, 2, 3]:
            notes.append("4 bands: used bands 1-3 as RGB (RGB-IR)")
        elif visible == [1, 2, 3]:
            notes.append(f"{count} bands: used bands 1-3 as RGB, bands 4-{count} ignored")
        else:
            notes.append(f"{count} bands ({describe(names)}): used {which} as RGB"
                         + (f", band(s) {', '.join(others)} ignored" if others else ""))

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
    has_mask = not all(f == {MaskFlags.all_valid} for f in flags) and not nir_marked_alpha
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
    generated = src.tags().get(GENERATED_KEY)  # a dataset tag our generators may write, as in PNG
    return LoadedImage(rgb, profile, pixel_size_m, notes, declared_nodata=declared, nodata_value_pixels=value_px,
                       source_dtype=str(dtype),
                       generated=str(generated)[:200] if generated else None)


def attach_bands(loaded: Any, path: Path) -> Any:
    """A TIFF's band names (alpha left out) and, unless they are plain 8-bit R, G, B (the RGB picture is them then),
    its raw samples (and every band as uint8 where a false-colour picture exists): a model of other bands, or of a
    stretch, then reads the file as its training read it (``model_pixels``). A band that cannot be read leaves the
    RGB picture as it is, with a note and ``bands_error``: RGB models never need it, others are refused."""
    rasterio = need_rasterio()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as src:
                names = src_band_names(src)
                keep = [i for i, n in enumerate(names) if n != "alpha"]
                kept = [names[i] for i in keep]
                loaded.band_count = len(names)  # alpha included: a format's names apply to files of its count
                if kept == list(RGB) and all(np.dtype(src.dtypes[i]) == np.uint8 for i in keep):
                    loaded.band_names = kept
                    return loaded
                raw = src.read([i + 1 for i in keep])
                nodata = src.nodata
    except MemoryError:
        loaded.bands_error = "not enough memory to read its bands"
        loaded.notes.append("its bands were not read apart from the RGB picture: not enough memory")
        return loaded
    except Exception as err:  # noqa: BLE001 - a damaged extra band: the RGB picture still serves RGB models
        loaded.bands_error = f"its bands could not be read ({_one_line(err)})"
        loaded.notes.append(f"{loaded.bands_error}; the RGB picture is kept")
        return loaded
    if all(b in kept for b in FALSE_COLOUR):  # the uint8 bands serve the false-colour picture only
        loaded.bands = to_uint8(raw, None, _invalid(raw, nodata))[0]
    loaded.raw_bands, loaded.band_nodata, loaded.band_names = raw, nodata, kept
    if kept != list(RGB):
        loaded.notes.append(band_note(kept))
    return loaded


def band_note(kept: list[str]) -> str:
    """What reads a file that is not plain R, G, B: RGB models its 8-bit picture, a model of its bands their values."""
    one = len(kept) == 1
    return (f"{len(kept)} band{'' if one else 's'} ({describe(kept)}): an RGB model reads the 8-bit RGB picture made "
            f"from {'it' if one else 'them'}; a model trained on {'this band' if one else 'these bands'} reads the "
            "file's own values")


# ------------------------------------------------------------------------------------------------ PIL


def write_mask_geotiff(path: str | os.PathLike[str], mask: np.ndarray, profile: dict[str, Any],
                       classes: list[dict[str, Any]] | None = None, warning: str | None = None) -> None:
    """A single-band uint8 GeoTIFF (LZW) with the CRS and transform of ``profile``. With ``classes``: their colour
    table, their names as tags (``CLASS_NAMES`` as JSON, ``CLASS_<i>``) and in the band description, nodata 255.
    ``warning`` (an out-of-domain result's) goes in a ``WARNING`` tag, the image description and the band
    description's start: a GIS user who opens only the mask sees it (a review found it only in the CSV and JSON)."""
    rasterio = need_rasterio()

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    if profile.get("width", w) != w or profile.get("height", h) != h:
        raise ValueError(f"mask is {w}x{h} but the georeference is for {profile.get('width')}x{profile.get('height')}")
    opts: dict[str, Any] = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                                crs=profile.get("crs"), transform=profile["transform"], compress="lzw")
    if classes and len(classes) < 256:
        opts["nodata"] = 255  # core.seg.infer.NODATA: pixels without data
    if w >= 256 and h >= 256:
        opts.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(Path(path), "w", **opts) as dst:
        dst.write(mask.astype(np.uint8, copy=False), 1)
        if classes:
            cmap = {i: (display_rgb(c) or (0, 0, 0)) + (255,) for i, c in enumerate(classes[:256])}
            dst.write_colormap(1, cmap)
            names = [str(c.get("name", f"class {i}")) for i, c in enumerate(classes[:256])]
            dst.update_tags(CLASS_NAMES=json.dumps(names),
                            **{f"CLASS_{i}": name for i, name in enumerate(names)})
            dst.update_tags(1, CLASS_NAMES=json.dumps(names))
            caution = "CAUTION, see the WARNING tag; " if warning else ""
            dst.set_band_description(1, caution + "class index: " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
        if warning:
            dst.update_tags(WARNING=" ".join(warning.split()), TIFFTAG_IMAGEDESCRIPTION=" ".join(warning.split()))
