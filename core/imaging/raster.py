"""The one entry to a file's pixels for training and tiling: ``read_raster(path, bands)`` returns a typed
``Raster`` (pixels, band names, sample type, stretch, georeference, pixel size, no-data masks) for every format and
both pipelines: the RGB rule (``bands=None``: ``imageio.read_image``, how a picture is shown and RGB models read it)
and named bands (``data.bands``: the bands asked for, by name or number, stretched as the training data were).
Also a file's band names from its header alone, and a data set's stretch over all its files.

``READER_MODULES`` are the modules whose code decides the pixels: tile caches are keyed by their code
(``core.data.code_version``), so a change in reading rebuilds them without a hand-bumped number.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bands import RGB, BandPixels, Raster, check_bands, resolve, src_band_names, to_uint8, _invalid
from .imageio import read_image
from .pixels import (DEFAULT_MAX_PIXELS, ImageError, _check_size, _one_line, _percentiles, _pixel_size_m,
                     check_decoded_size, file_kind, need_rasterio, read_with_rasterio)

READER_MODULES = ("core.imaging.pixels", "core.imaging.bands", "core.imaging.tiffio", "core.imaging.imageio",
                  "core.imaging.raster", "core.imaging.colours")


def read_raster(path: str | os.PathLike[str], bands: Sequence[int | str] | None = None, *,
                max_pixels: int = DEFAULT_MAX_PIXELS, stretch: Sequence[Sequence[float] | None] | None = None,
                names: Sequence[str] | None = None) -> Raster:
    """A file as the data sets tile it: ``bands`` None, R, G, B by the one rule (``read_image``, on the stored
    pixel grid: labels are drawn on it); else those bands (``read_bands``). ImageError (BandError) in one line."""
    if bands is None:
        img = read_image(path, max_pixels, orient=False, extra_bands=False)
        return Raster(img.rgb, list(RGB), img.source_dtype, [None, None, None], img.profile, img.pixel_size_m,
                      img.declared_nodata, img.notes, img.nodata_value_pixels)
    return read_bands(path, bands, max_pixels=max_pixels, stretch=stretch, names=names)


def file_bands(path: str | os.PathLike[str]) -> list[str]:
    """The band names of a file from its header alone (for pickers and checks before decoding)."""
    path = Path(path)
    if not read_with_rasterio(path):
        return list(RGB)
    rasterio = need_rasterio()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            return src_band_names(src)


def read_bands(path: str | os.PathLike[str], request: Sequence[int | str], *, max_pixels: int = 50_000_000,
               stretch: Sequence[Sequence[float] | None] | None = None,
               names: Sequence[str] | None = None) -> BandPixels:
    """The requested bands of ``path`` as uint8 (H, W, C). ``stretch``: the data set's per-channel [lo, hi] for
    non-8-bit data (else the image's own percentiles); ``names``: the file's band names where its format knows them
    better than its header (Vaihingen's IRRG). BandError for a missing or all-zero band, ImageError for an unusable
    file; both one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path.name}: no such file")
    if not read_with_rasterio(path):
        img = read_image(path, max_pixels, orient=False)
        idx, got = resolve(request, list(RGB), path.name)  # PNG and JPEG: R, G, B, whatever a format calls its TIFFs' bands
        pixels = np.ascontiguousarray(img.rgb[..., idx])
        return BandPixels(pixels, got, "uint8", [None] * len(idx), img.profile, img.pixel_size_m,
                          img.declared_nodata, img.notes)
    try:
        rasterio = need_rasterio()
    except ImageError as err:
        raise ImageError(f"{path.name}: {err}") from None
    from rasterio.errors import RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as src:
                return _read_tiff_bands(src, path.name, request, max_pixels, stretch, names)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{path.name}: not enough memory to read it") from None
    except RasterioError as err:
        raise ImageError(f"{path.name}: truncated or corrupt {file_kind(path)} ({_one_line(err)})") from None


def _read_tiff_bands(src: Any, file: str, request: Sequence[int | str], max_pixels: int,
                     stretch: Sequence[Sequence[float] | None] | None, names: Sequence[str] | None) -> BandPixels:
    _check_size(int(src.width), int(src.height), max_pixels)
    check_decoded_size(int(src.width), int(src.height), int(src.count),
                       max(np.dtype(d).itemsize for d in src.dtypes), max_pixels)
    available = list(names) if names is not None and len(names) == src.count else src_band_names(src)
    idx, names = resolve(request, available, file)
    data = src.read([i + 1 for i in idx])  # (C, H, W)
    dtype = np.dtype(src.dtypes[idx[0]])
    invalid = _invalid(data, src.nodata)
    check_bands(data, invalid, src.nodata, idx, names, file)
    out, applied = to_uint8(data, stretch, invalid)
    notes: list[str] = []
    if dtype != np.uint8:
        notes.append(f"{dtype} bands stretched to 8 bit by " + ("the image's own" if stretch is None else
                                                                "the training data's") + " 2nd-98th percentiles")
    declared = None
    masks = src.dataset_mask()
    if (masks == 0).any() and dtype != np.uint8:
        declared = masks == 0
    if invalid is not None and invalid.any():
        declared = invalid if declared is None else declared | invalid
    profile = None
    px = None
    if src.crs is not None:
        profile = {"crs": src.crs, "transform": src.transform, "width": int(src.width), "height": int(src.height)}
        px = _pixel_size_m(src.crs, src.transform)
    return BandPixels(out, names, str(dtype), applied, profile, px, declared, notes)


def dataset_stretch(paths: Sequence[Path], request: Sequence[int | str], per_file: int = 65_536,
                    names: Sequence[str] | None = None) -> list[list[float]] | None:
    """Per-channel [lo, hi] (2nd and 98th percentiles) over samples of every non-8-bit file, or None when all
    files are 8-bit (nothing to stretch). Files that cannot be read are left to the tiling to report."""
    try:
        rasterio = need_rasterio()
    except ImageError:  # no TIFF can be read here: the tiling says so, file by file
        return None
    from rasterio.enums import Resampling

    samples: list[list[np.ndarray]] = []
    for p in paths:
        try:
            if not read_with_rasterio(p):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(p) as src:
                    known = list(names) if names is not None and len(names) == src.count else src_band_names(src)
                    idx, _ = resolve(request, known, p.name)
                    if np.dtype(src.dtypes[idx[0]]) == np.uint8:
                        continue
                    step = max(1, int(math.sqrt(src.width * src.height / per_file)))
                    shape = (max(1, src.height // step), max(1, src.width // step))
                    a = src.read([i + 1 for i in idx], out_shape=(len(idx), *shape),
                                 resampling=Resampling.nearest).astype(np.float64)
                    nd = src.nodata
                    for c in range(len(idx)):
                        v = a[c][np.isfinite(a[c])]
                        if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
                            v = v[v != nd]
                        while len(samples) <= c:
                            samples.append([])
                        samples[c].append(v)
        except Exception:  # noqa: BLE001, S112 - the tiling reports unreadable files by name
            continue
    if not samples:
        return None
    out = []
    for vals in samples:
        lohi = _percentiles(np.concatenate(vals)) if vals else None
        out.append(list(lohi) if lohi else [0.0, 1.0])
    return out
