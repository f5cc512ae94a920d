"""Reading any image for inference the same, documented way, and writing a mask back as a GeoTIFF.

``read_image(path)`` returns a :class:`LoadedImage`: 8-bit RGB pixels, the georeference when there is one, the
ground size of a pixel when it is known, and ``notes`` saying what was done to the file's bands. The rules:

Formats
    TIFF / GeoTIFF (recognised by their first bytes, whatever the suffix) are read with rasterio, strip by strip,
    so a big file never needs a second full-size float copy, and so are PNGs of 16-bit colour (PIL would keep 8 of
    their bits). Everything else is opened with PIL (PNG, JPEG and the other raster formats PIL knows: BMP, WebP,
    GIF's first frame, ...). A JPEG's EXIF orientation is applied.

Bands
    1 band            grey, replicated to R, G and B (a palette TIFF's colour map is applied instead).
    2 bands           grey + alpha (or another band): the first band replicated; an alpha band is transparency
                      (no data where 0, never colour), another band is ignored.
    3 bands           R, G, B.
    4 bands           a PNG (RGBA): alpha is transparency. A TIFF: bands 1-3 used as RGB; band 4 is alpha
                      (transparency) or near-infrared (RGB-IR, ignored), as its colour interpretation says.
    more than 4       bands 1-3 used as RGB, the rest ignored (with a note).
    named bands       a TIFF whose band descriptions or colour interpretation place R, G and B elsewhere (B, G, R,
                      NIR: PlanetScope) gives its picture from the bands so named (``core.imaging.bands``).
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
                      ``core.seg.nodata`` treats as no data only where they reach the border.

Georeference
    ``profile`` (only for a raster with a CRS): ``crs``, ``transform``, ``width``, ``height``, what
    :func:`core.imaging.tiffio.write_mask_geotiff` needs. ``pixel_size_m``: the side in metres of a square of the same area as one
    pixel, when the CRS is projected (metres or feet; not for degrees).

Refusals
    :class:`ImageError` (a ``ValueError``) with a one-line reason: missing or unreadable file, a folder, a zero-byte
    file, not an image (unknown format), a truncated or corrupt file, fewer than ``MIN_SIDE`` pixels on a side,
    or more than ``max_pixels`` pixels (checked from the header, before decoding; PIL's own decompression-bomb
    check is lifted while we open so that the answer is always this one).
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .pixels import (  # noqa: F401 - the reader's public face: importers take these from here
    BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS, GENERATED_KEY, MIN_SIDE, SAMPLE_PIXELS, STRIP_PIXELS, _TIFF_MAGIC,
    ALPHA_NOTE, ImageError, ImageHeader, LoadedImage, PixelBudgetError, _check_size, _depth_note, _one_line, _percentiles, _stretch,
    check_decoded_size, is_16bit_png, need_rasterio)

_PIL_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------ TIFF (rasterio)
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
                generated = img.info.get(GENERATED_KEY) if isinstance(getattr(img, "info", None), dict) else None
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
    return LoadedImage(np.ascontiguousarray(rgb), None, None, notes, declared_nodata=declared,
                       generated=str(generated)[:200] if generated else None)


def generated_png(rgb: np.ndarray, generator: str) -> bytes:
    """A generated scene as PNG bytes that say so (``GENERATED_KEY``), so the auto model choice knows it is not a
    photo of the ground."""
    import io

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(GENERATED_KEY, generator)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


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
            notes.append(ALPHA_NOTE)
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX"):
        if mode != "RGBX":
            notes.append(ALPHA_NOTE)
        return np.asarray(img.convert("RGB"))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        notes.append("palette expanded to RGB" + (", its transparency read as no data" if has_alpha else ""))
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB").convert("RGB"))
    notes.append(f"{mode} converted to RGB")
    return np.asarray(img.convert("RGB"))


def _sample(a: np.ndarray) -> np.ndarray:
    step = max(1, int(math.sqrt(a.size / SAMPLE_PIXELS)))
    return a[::step, ::step]


# ------------------------------------------------------------------------------------------------ public
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF8", b"\xffO\xffQ", b"\x00\x00\x00\x0cjP  ",
               *_TIFF_MAGIC)  # PNG, JPEG, BMP, GIF, JPEG 2000 (codestream, file), TIFF and BigTIFF


def has_image_signature(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts as an image does (16 bytes read): counting a folder's images this way is quick for
    thousands of files, and leaves out what only its name calls an image (text, an empty file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def image_header(path: str | os.PathLike[str]) -> ImageHeader | None:
    """The header of a PNG/JPEG/TIFF/..., without decoding; None for anything unreadable (``read_image`` then
    says why)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) in _TIFF_MAGIC:
                from .tiffio import tiff_header  # rasterio loads only for TIFFs
                return tiff_header(Path(path))
        with _open_pil(Path(path)) as img:
            return ImageHeader(int(img.size[0]), int(img.size[1]))
    except Exception:  # noqa: BLE001 - the caller reads the file properly next
        return None


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, *, orient: bool = True,
               extra_bands: bool = True) -> LoadedImage:
    """Read one image file as 8-bit RGB by the rules in this module's docstring; ImageError says why not. Every
    reader of images wraps this one (the data sets too). ``orient=False`` leaves an EXIF orientation unapplied:
    label masks are drawn on the stored pixel grid. ``extra_bands=False`` skips reading a TIFF's bands beyond RGB
    (``LoadedImage.bands``): RGB tile caches use the picture alone."""
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
            head = f.read(32)
    except ImageError:
        raise
    except OSError as err:
        raise ImageError(f"cannot read the file ({err.strerror or _one_line(err)})") from None
    if head[:4] in _TIFF_MAGIC or is_16bit_png(head):
        from .tiffio import attach_bands, read_tiff  # rasterio loads only for these

        loaded = read_tiff(path, max_pixels)
        if extra_bands:
            loaded = attach_bands(loaded, path)
    else:
        loaded = _read_pil(path, max_pixels, orient)
    loaded.name = path.name
    return loaded
