"""Which bands of an image file a model sees: names, resolution against a file, reading, stretch, normalisation.

Why: remote-sensing files carry more than RGB (RGB + near-infrared orthophotos, IRRG, multispectral). A run's
``data.bands`` names the bands it uses, in order, either by name (``[R, G, B, NIR]``) or by the file's 0-based
band index (``[0, 1, 2, 3]``); ``None`` keeps the one RGB rule of ``core.imaging.imageio`` for every file, exactly
as before bands existed. The resolved names travel with the tiles, the run and the model's card, so inference
reads a new file's bands by name and refuses a file that lacks one.

A file's band names come from its band descriptions ("NIR", "near-infrared", "red", ...), else its colour
interpretation (red, green, blue, in whatever order it places them; the one other band of a 4-band file is then NIR),
else its band count by the usual convention: 3 bands R, G, B; 4 bands R, G, B, NIR (Potsdam's RGBIR files; a 4th
band marked alpha is not a band). PNG and JPEG files have R, G, B, and every RGB picture is made of the bands named
R, G, B, wherever the file keeps them.

Pixels: every band becomes uint8. 8-bit bands are used as they are; other depths (uint16, float) are stretched by
per-band 2nd and 98th percentiles: those of the data set (computed once, kept with its tile cache and in the
model's card) when given, else the image's own. Normalisation: R, G and B by the ImageNet mean and std (so RGB
models are unchanged and RGB weights stay meaningful), any other band by ``OTHER_MEAN`` / ``OTHER_STD``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .pixels import SAMPLE_PIXELS, ImageError, _percentiles, _stretch

RGB = ("R", "G", "B")
RGBN = ("R", "G", "B", "NIR")
KNOWN = ("R", "G", "B", "NIR", "RE", "SWIR1", "SWIR2", "PAN")
ALIASES = {"r": "R", "red": "R", "g": "G", "green": "G", "b": "B", "blue": "B", "nir": "NIR", "ir": "NIR",
           "infrared": "NIR", "near-infrared": "NIR", "near infrared": "NIR", "nearinfrared": "NIR", "n": "NIR",
           "re": "RE", "rededge": "RE", "red edge": "RE", "red-edge": "RE", "swir1": "SWIR1", "swir2": "SWIR2",
           "pan": "PAN", "panchromatic": "PAN"}
IMAGENET = {"R": (0.485, 0.229), "G": (0.456, 0.224), "B": (0.406, 0.225)}
OTHER_MEAN, OTHER_STD = 0.5, 0.25  # a stretched band's rough centre and spread in [0, 1]
FALSE_COLOUR = ("NIR", "R", "G")  # the usual colour-infrared composite: vegetation red
ALPHA_SHARE = 0.9  # a 4th band marked alpha is alpha when at least this share of it is 0 or 255 ...
OPAQUE_SHARE = 0.01  # ... both judged where R, G, B hold something, and at least this share of it is 255 there
_GENERIC = re.compile(r"^\s*band[\s_-]*(\d+)\s*$", re.IGNORECASE)  # "Band 1": a description that names nothing


class BandError(ImageError):
    """A file lacks a band that is asked for, or a band holds nothing; the message names the file and the band."""


BandRequest = Sequence["int | str"]


def canonical(name: str) -> str:
    """A band's name as we write it: aliases folded (``near-infrared`` -> ``NIR``), other names kept as given."""
    key = str(name).strip()
    return ALIASES.get(key.lower(), key)


def check_request(bands: Sequence[Any] | None) -> list[int | str] | None:
    """A ``data.bands`` value as the config keeps it; ValueError (one line) for a bad entry."""
    if bands is None:
        return None
    out: list[int | str] = []
    for b in bands:
        if isinstance(b, bool):
            raise ValueError(f"band {b!r} is neither a band index nor a name")  # noqa: TRY004 - pydantic wants it
        if isinstance(b, int):
            if b < 0:
                raise ValueError(f"band index {b} is negative (indices start at 0)")
            out.append(b)
        elif isinstance(b, str) and b.strip():
            text = b.strip()
            out.append(int(text) if text.isdigit() else canonical(text))
        else:
            raise ValueError(f"band {b!r} is neither a band index nor a name")
    if not out:
        raise ValueError("name at least one band, e.g. [R, G, B, NIR], or leave it unset for RGB")
    if len(set(map(str, out))) != len(out):
        raise ValueError(f"a band is named twice: {out}")
    return out


def rgb_positions(names: Sequence[str]) -> tuple[int, int, int] | None:
    """Where R, G and B sit among the channels (for colour jitter and previews), or None when one is missing."""
    try:
        return tuple(list(names).index(c) for c in RGB)  # type: ignore[return-value]
    except ValueError:
        return None


def band_norm(names: Sequence[str]) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) on the [0, 1] scale: ImageNet's for R, G, B, ``OTHER_*`` for the rest."""
    mean = [IMAGENET.get(n, (OTHER_MEAN, OTHER_STD))[0] for n in names]
    std = [IMAGENET.get(n, (OTHER_MEAN, OTHER_STD))[1] for n in names]
    return mean, std


def bands_of(dataset: Any) -> tuple[str, ...]:
    """The channels' names of any tile set (R, G, B for sets made before bands existed)."""
    return tuple(getattr(dataset, "band_names", None) or RGB)


def card_bands(card: dict[str, Any]) -> list[str]:
    """The bands a model or encoder reads, in order (R, G, B for checkpoints made before bands existed)."""
    bands = card.get("bands") if isinstance(card, dict) else None
    if isinstance(bands, dict):
        bands = bands.get("names")
    return [str(b) for b in bands] if bands else list(RGB)


def is_rgb(names: Sequence[str] | None) -> bool:
    """Whether channels named so are today's RGB input (every model and cache before bands existed)."""
    return names is None or tuple(names) == RGB


def describe(names: Sequence[str]) -> str:
    return ", ".join(names)


# ------------------------------------------------------------------------------------------------ a file's bands
def file_band_names(count: int, descriptions: Sequence[str | None] = (), interp: Sequence[str] = ()) -> list[str]:
    """Names of a file's bands (``band<k>`` where nothing says), by the rules of this module's docstring."""
    names: list[str | None] = [None] * count
    descriptions = [None if d is None or _GENERIC.match(str(d)) else d for d in list(descriptions)[:count]]
    described = any(d and str(d).strip() for d in descriptions)
    for i, d in enumerate(descriptions):
        if d and str(d).strip():
            names[i] = canonical(d)  # a file that names its bands is taken at its word (B2, B8: kept as given)
    for i, ci in enumerate(list(interp)[:count]):
        if names[i] is None and ci in ("red", "green", "blue", "alpha"):
            names[i] = "alpha" if ci == "alpha" else ci[0].upper()
    if not described:
        alpha_last = count > 3 and names[-1] == "alpha"
        body = count - alpha_last
        said = [n for n in names[:body] if n in RGB]
        if sorted(said) == sorted(RGB):  # the colour interpretation placed R, G, B (PlanetScope's B, G, R, NIR too)
            if body == 4:
                names[names[:body].index(None)] = "NIR"
        elif said:
            pass  # a partial colour interpretation: what it says stands, the rest stays unnamed
        elif body == 3:
            names[:3] = list(RGB)
        elif body == 4:  # Potsdam's RGBIR; an RGB+NIR file with an alpha band after them
            names[:4] = list(RGBN)
    return [n or f"band{i + 1}" for i, n in enumerate(names)]


def resolve(request: Sequence[int | str], available: Sequence[str], file: str) -> tuple[list[int], list[str]]:
    """The file's 0-based band indices and the channels' names for a request; BandError names file and band."""
    indices, names = [], []
    for b in request:
        if isinstance(b, int):
            if b >= len(available):
                raise BandError(f"{file} has {len(available)} band(s) ({describe(available)}); band index {b} "
                                "is asked for")
            indices.append(b)
            names.append(available[b])
        else:
            name = canonical(b)
            folded = [i for i, a in enumerate(available) if a.lower() == name.lower()]
            generic = _GENERIC.match(name)
            if name in available:
                at = list(available).index(name)
            elif len(folded) == 1:  # b4 asks for a file's B4: compared without case where that is unambiguous
                at = folded[0]
            elif generic and int(generic.group(1)) - 1 < len(available):  # "Band 3": the 3rd band, whatever it is
                at = int(generic.group(1)) - 1   # (cards made before such names were read as none)
            else:
                raise BandError(f"{file} has no {name} band (its bands: {describe(available)})")
            indices.append(at)
            names.append(name)  # as asked: every file of a data set then gives the same names
    return indices, names


@dataclass
class Raster:
    """A file's pixels as a model or a data set reads them, whichever pipeline (``core.imaging.raster.read_raster``):
    (H, W, C) uint8, the bands' names, the file's sample type, the stretch applied per band, the georeference and
    pixel size, the no-data masks, and notes on what was done."""
    pixels: np.ndarray
    names: list[str]
    dtype: str  # the file's sample type, e.g. uint8, uint16
    stretch: list[list[float] | None]  # per channel: [lo, hi] applied, None for 8-bit or the image's own percentiles
    profile: dict[str, Any] | None = None
    pixel_size_m: float | None = None
    declared_nodata: np.ndarray | None = None  # True: the file declares no data there (alpha 0, mask, NaN, nodata)
    notes: list[str] = field(default_factory=list)
    nodata_value_pixels: np.ndarray | None = None  # 8-bit pixels equal to the nodata value (no data at a border)


BandPixels = Raster  # its former name


def src_band_names(src: Any) -> list[str]:
    """``file_band_names`` of an open rasterio file. A 4th band marked alpha that holds more than 0 and 255 is read
    as NIR: GDAL marks the 4th band of every 4-band 8-bit GeoTIFF alpha unless told otherwise, RGB+NIR ones too. Only 8-bit bands are second-guessed, and a band at least
    ``ALPHA_SHARE`` 0 or 255 stays alpha (soft edges from resampling)."""
    names = file_band_names(src.count, src.descriptions, [c.name for c in src.colorinterp])
    if src.count == 4 and names[3] == "alpha" and np.dtype(src.dtypes[3]) == np.uint8:
        from rasterio.enums import Resampling

        step = max(1, int(math.sqrt(src.width * src.height / 65_536)))
        sample = src.read(out_shape=(4, max(1, src.height // step), max(1, src.width // step)),
                          resampling=Resampling.nearest)
        if not looks_like_alpha(sample[3], sample[:3]):
            names[3] = "NIR"
    return names


def looks_like_alpha(band: np.ndarray, rgb: np.ndarray) -> bool:
    """Whether an 8-bit 4th band is transparency: where R, G, B hold something, almost only 0 and 255 (soft edges
    allowed) and opaque somewhere; black or white fill is not picture. A NIR band that is 0 outside a footprint (0 in
    every band there) holds grey levels inside it; one that is 0 over a whole water chip is opaque nowhere."""
    fill = np.all(rgb == 0, axis=0) | np.all(rgb == 255, axis=0)  # black or white: what sits under transparency
    picture = ~fill
    if not picture.any():  # nothing anywhere: an empty (transparent) file, as GDAL says
        return bool(np.isin(band, (0, 255)).mean() >= ALPHA_SHARE)
    values = band[picture]
    return bool(np.isin(values, (0, 255)).mean() >= ALPHA_SHARE and (values == 255).mean() >= OPAQUE_SHARE)


def check_bands(data: np.ndarray, invalid: np.ndarray | None, nodata: Any, idx: Sequence[int],
                names: Sequence[str], file: str) -> None:
    """BandError for a band that holds nothing where the others hold data: zero, or only its nodata value. A file
    that is no-data everywhere is no error here (its tiles are empty, as the RGB reading makes them)."""
    if data.dtype.kind == "f":  # NaN in any band is no-data for all: a band of NaN alone would empty the image
        empty = np.isnan(data).all(axis=(1, 2))
        if empty.any() and not empty.all():
            c = int(np.argmax(empty))
            raise BandError(f"{file}: band {idx[c] + 1} ({names[c]}) holds no values (NaN everywhere) where the "
                            "other bands have data")
    if invalid is not None and invalid.all():
        return
    has_nodata = nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)) \
        and data.dtype != np.uint8
    for c, (i, name) in enumerate(zip(idx, names)):
        valid = data[c] if invalid is None else data[c][~invalid]
        if not np.any(np.nan_to_num(valid.astype(np.float64))):
            raise BandError(f"{file}: band {i + 1} ({name}) is zero everywhere (an empty or failed export?)")
        if has_nodata and bool(np.all(valid == nodata)):
            raise BandError(f"{file}: band {i + 1} ({name}) holds only its nodata value ({nodata:g}) where the "
                            "other bands have data")


def _invalid(data: np.ndarray, nodata: Any) -> np.ndarray | None:
    """(H, W) True where a (C, H, W) raster holds no data: NaN in any band, or the nodata value in every band of
    data deeper than 8 bits (in 8-bit data it is a colour too: ``core.imaging.imageio``). None when there is none."""
    invalid = np.isnan(data).any(axis=0) if data.dtype.kind == "f" else None
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)) and data.dtype != np.uint8:
        nd = (data == nodata).all(axis=0)
        invalid = nd if invalid is None else invalid | nd
    return invalid


def to_uint8(data: np.ndarray, stretch: Sequence[Sequence[float] | None] | None,
             invalid: np.ndarray | None) -> tuple[np.ndarray, list[list[float] | None]]:
    """(C, H, W) samples as (H, W, C) uint8 and the [lo, hi] applied per channel: 8-bit as they are, deeper ones
    stretched by ``stretch`` (the data set's, channel by channel) or, where it has none, the image's own percentiles;
    ``invalid`` pixels zeroed. The one conversion training and inference share."""
    if data.dtype == np.uint8:
        return np.ascontiguousarray(np.moveaxis(data, 0, -1)), [None] * len(data)
    out = np.empty((data.shape[1], data.shape[2], len(data)), np.uint8)
    applied: list[list[float] | None] = []
    for c in range(len(data)):
        lohi = tuple(stretch[c]) if stretch is not None and stretch[c] is not None else \
            _percentiles(_subsample(data[c], invalid))
        out[..., c] = _stretch(data[c], lohi, invalid)  # type: ignore[arg-type]
        applied.append(list(lohi) if lohi is not None else None)
    return out, applied


def _subsample(band: np.ndarray, invalid: np.ndarray | None) -> np.ndarray:
    step = max(1, int(math.sqrt(band.size / SAMPLE_PIXELS)))
    a = band[::step, ::step].astype(np.float64)
    if invalid is not None:
        a = a[~invalid[::step, ::step]]
    return a


