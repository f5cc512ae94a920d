"""Unlabeled tiles cut from a folder of the user's own imagery, for pretraining.

Why: real aerial data arrives as a folder of mixed files (8-bit JPEGs, 16-bit or grey TIFFs, PNGs with alpha,
the odd broken download). We decode each file once, normalise it to 8-bit RGB, cut it into fixed-size tiles and
cache them as one memory-mapped array, so training reads batches at memory speed. A bad file is skipped with a
warning and listed in ``skipped``; it never stops a run halfway.

Cache: ``<cache_root or data_root()>/cache/folder-<hash>/`` with ``images.npy`` (N, T, T, 3) uint8 and
``meta.json`` (sources, per-tile source file and position, skipped files). The hash covers the folder's absolute
path, every file's relative path, size and mtime, the tile size and the stride, so editing the folder makes a
new cache instead of serving stale tiles.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from ..phases import phase_bar

from ..imaging.raster import READER_MODULES, dataset_stretch, read_raster
from .code_version import code_version
from ..imaging.bands import BandError, describe
from ..imaging.imageio import ImageError, PixelBudgetError
from .paths import (CachedTiles, DataError, check_free_space, data_root, leads_outside, publish_dir,
                    remove_dead_temps, temp_dir_for, IDENTITY_FILE, cache_identity, lease, one_builder,
                    remove_superseded)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_PIXELS = 178_956_970  # PIL's decompression-bomb error limit; our own check, whatever PIL is set to
TRAIN_TOO_LARGE = "cut it into smaller files to train on it (the tiles are cut from whole images in memory)"
TILING_MODULES = (*READER_MODULES, "core.data.folder")  # what decides the cached tiles: the key holds their code's version


class _Unreadable(Exception):
    """Internal: this file cannot be used; the message is the reason shown to the user."""


# ------------------------------------------------------------------------------------------------ decoding
def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, case-insensitive suffixes, hidden folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return sorted(found)


NOTHING_TO_LEARN = "every pixel is no data (the file's nodata value, mask, alpha or NaN): nothing to learn from"


def _all_nodata(*masks: np.ndarray | None) -> bool:
    """Whether the file itself says no pixel holds data (segmentation refuses such a file too)."""
    given = [m for m in masks if m is not None]
    return bool(given) and bool(np.logical_or.reduce(given).all())


def load_rgb(path: Path) -> np.ndarray:
    """Fully decode one image file to (H, W, 3) uint8 by the one rule of ``core.imaging.imageio``; _Unreadable says
    why (a file that holds no data at all is one: 64 empty tiles would be trained on without a word)."""
    try:
        got = read_raster(path, max_pixels=MAX_PIXELS)
    except PixelBudgetError as err:  # training has no budget flag (a review was sent to --max-megapixels)
        raise _Unreadable(err.with_hint(TRAIN_TOO_LARGE)) from None
    except ImageError as err:
        raise _Unreadable(str(err)) from None
    if _all_nodata(got.declared_nodata, got.nodata_value_pixels):
        raise _Unreadable(NOTHING_TO_LEARN)
    return got.pixels


def load_bands(path: Path, bands: list, stretch: list | None) -> tuple[np.ndarray, list[str]]:
    """The asked-for bands of one file as (H, W, C) uint8 and their names; _Unreadable names the missing band."""
    try:
        got = read_raster(path, bands, max_pixels=MAX_PIXELS, stretch=stretch)
    except PixelBudgetError as err:
        raise _Unreadable(err.with_hint(TRAIN_TOO_LARGE)) from None
    except (BandError, ImageError) as err:
        raise _Unreadable(str(err).removeprefix(f"{path.name}: ")) from None
    if _all_nodata(got.declared_nodata):
        raise _Unreadable(NOTHING_TO_LEARN)
    return got.pixels, got.names


def resize_bands(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of (H, W, C) uint8 to (width, height) ``size``; bands one by one beyond RGB (PIL would read
    a 4th band as alpha)."""
    if arr.shape[2] == 3:
        return np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c])).resize(size, Image.BICUBIC))
                     for c in range(arr.shape[2])], axis=2)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis; the last tile is aligned to the edge so the whole length is covered."""
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def prepare(arr: np.ndarray, tile: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Make an image at least one tile in each direction. A chip under half a tile is resized up so its longer
    side is one tile; a strip thinner than half a tile is resized up so its short side is one tile (and then
    tiled along its length); whatever is still short is reflect-padded. Small images thus give exactly one tile.
    Returns (image, scale applied, (top, left) padding)."""
    h, w = arr.shape[:2]
    scale = 1.0
    if max(h, w) < tile / 2:
        scale = tile / max(h, w)
    elif min(h, w) < tile / 2 and max(h, w) >= tile:
        scale = tile / min(h, w)
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = resize_bands(arr, size)
        h, w = arr.shape[:2]
    py, px = max(0, tile - h), max(0, tile - w)
    if py or px:
        arr = np.pad(arr, ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0)), mode="reflect")
    return arr, scale, (py // 2, px // 2)


def cut_tiles(arr: np.ndarray, tile: int, stride: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All tiles of a prepared image, (n, tile, tile, C), and their (x, y) origins."""
    xy = [(x, y) for y in _starts(arr.shape[0], tile, stride) for x in _starts(arr.shape[1], tile, stride)]
    return np.stack([arr[y:y + tile, x:x + tile] for x, y in xy]), xy


# ------------------------------------------------------------------------------------------------ the dataset
class ImageFolderTiles(CachedTiles):
    """Tiles of every PNG/JPEG/TIFF under a folder (recursive), as uint8 RGB (or the ``bands`` asked for), cached
    as a memmap. With ``bands``: a file that lacks one, or whose bands differ from the first image's, is skipped
    with the reason; files of more than 8 bits are stretched by the folder's own per-band percentiles.

    Items are ``dict(image=uint8 (C, T, T), index=int, source=relative file path)``. ``skipped`` lists
    ``(relative path, reason)`` for files that could not be used (also after a cached load).
    Raises :class:`DataError` when the folder is missing, holds no images, or none of them is readable.
    """

    has_labels = False

    def __init__(self, folder: str | Path, tile_size: int = 256, stride: int | None = None,
                 cache_root: str | Path | None = None, progress: bool = True, bands: list | None = None):
        self.bands = list(bands) if bands is not None else None
        self.folder = Path(folder).expanduser().resolve()
        self.stride = int(stride or tile_size)
        self._tile = int(tile_size)
        if self._tile < 8 or self.stride < 1:
            raise DataError(f"data folder {self.folder}: need tile_size >= 8 and stride >= 1, "
                            f"got {tile_size} and {stride}")
        if self.folder.is_file():  # "not found" of a path that exists misled a walkthrough
            raise DataError(f"data.root is a file, not a folder: {self.folder}; give the folder that holds the images")
        if not self.folder.is_dir():
            raise DataError(f"data folder not found: {self.folder}")
        files = find_images(self.folder)
        if not files:
            raise DataError(f"no images (PNG, JPEG, TIFF) in data folder: {self.folder}")
        listing = []
        for f in files:
            st = f.stat()
            listing.append([f.relative_to(self.folder).as_posix(), st.st_size, st.st_mtime_ns])
        spec = dict(folder=str(self.folder), files=listing, tile=self._tile, stride=self.stride,
                    code=code_version(TILING_MODULES))
        if self.bands is not None:  # RGB caches keep their names
            spec["bands"] = [str(b) if isinstance(b, str) else b for b in self.bands]
        self._identity = cache_identity({k: v for k, v in spec.items() if k not in ("files", "code")})
        key = json.dumps(spec)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_root or data_root()) / "cache" / f"folder-{digest}"
        remove_dead_temps(self.cache_dir)  # a killed build's leftovers, whether or not this one builds
        built = not (self.cache_dir / "meta.json").is_file()
        if built:
            with one_builder(self.cache_dir, "these tiles"):  # a second asker waits, then reads the first's
                built = not (self.cache_dir / "meta.json").is_file()
                if built:
                    self._build(files, progress)
                    remove_superseded(self.cache_dir, self._identity)
        lease(self.cache_dir)
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in self.meta["skipped"]]
        if not (self.cache_dir / "images.npy").is_file():
            raise DataError(f"tile cache is incomplete: {self.cache_dir}; delete it to rebuild")
        if not built:  # a cached load reports the same skips as the first build
            for rel, reason in self.skipped:
                warnings.warn(f"skipping unreadable image {self.folder / rel}: {reason}", stacklevel=2)

    def _build(self, files: list[Path], progress: bool) -> None:
        t0, tile = time.time(), self._tile
        tmp = temp_dir_for(self.cache_dir)
        try:
            sources, tiles, skipped = [], [], []
            names: list[str] | None = None
            stretch = dataset_stretch(files, self.bands) if self.bands is not None else None
            raw_path, written = tmp / "tiles.raw", 0
            with open(raw_path, "wb") as raw:
                bar = phase_bar(total=len(files), desc=f"tiling {self.folder.name}", unit="file",
                                disable=not progress)
                for path in files:
                    bar.update()
                    rel = path.relative_to(self.folder).as_posix()
                    if leads_outside(path, self.folder):
                        skipped.append((rel, "a symlink that leads outside the data folder"))
                        warnings.warn(f"skipping image {path}: a symlink that leads outside the data folder",
                                      stacklevel=3)
                        continue
                    try:
                        if self.bands is None:
                            arr = load_rgb(path)
                        else:
                            arr, got = load_bands(path, self.bands, stretch)
                            if names is None:
                                names = got
                            elif got != names:
                                raise _Unreadable(f"its bands are {describe(got)}, the folder's first image's "
                                                  f"{describe(names)}")
                    except _Unreadable as err:
                        skipped.append((rel, str(err)))
                        warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=3)
                        continue
                    h0, w0 = arr.shape[:2]
                    arr, scale, (top, left) = prepare(arr, tile)
                    cut, xy = cut_tiles(arr, tile, self.stride)
                    # these tiles now, all of them once more in images.npy at the end (the raw file goes after)
                    check_free_space(tmp, 2 * cut.nbytes + written, f"tiling {self.folder}",
                                     "use fewer or smaller images")
                    raw.write(np.ascontiguousarray(cut).tobytes())
                    written += cut.nbytes
                    src = len(sources)
                    sources.append(dict(file=rel, width=w0, height=h0, scale=scale, pad=[top, left]))
                    # origin in the source file's pixels (negative where padded)
                    tiles += [[src, round((x - left) / scale), round((y - top) / scale)] for x, y in xy]
                bar.close()
            if not tiles:
                rel, reason = skipped[0]
                raise DataError(f"no readable images in data folder: {self.folder} ({len(skipped)} skipped; "
                                f"{rel}: {reason})")
            n, c = len(tiles), len(names) if names is not None else 3
            out = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, tile, tile, c))
            src = np.memmap(raw_path, np.uint8, "r", shape=(n, tile, tile, c))
            for s in range(0, n, 256):
                out[s:s + 256] = src[s:s + 256]
            out.flush()
            del out, src
            raw_path.unlink()
            meta = dict(code=code_version(TILING_MODULES), folder=str(self.folder), tile_size=tile, stride=self.stride,
                        num_tiles=n, sources=sources, tiles=tiles, skipped=skipped,
                        seconds=round(time.time() - t0, 2), created=time.time())
            if names is not None:
                meta.update(bands=names, band_stretch=stretch)
            (tmp / "meta.json").write_text(json.dumps(meta))
            (tmp / IDENTITY_FILE).write_text(self._identity)
            lease(tmp)  # born in use: no other build removes it before this one reads it
            publish_dir(tmp, self.cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def source_scenes(self) -> list[str]:
        """Every image the tiles come from, as a scene name (its path in the folder, without the suffix): what a
        pretraining on the folder read (``data.json``'s ``pretrain_scenes``, core.seg.lineage)."""
        return sorted(str(PurePosixPath(s["file"]).with_suffix("")) for s in self.meta["sources"])

    def tile_info(self, i: int) -> dict:
        """Where tile i comes from: source file (relative), x, y (origin in source pixels), scale."""
        src, x, y = self.meta["tiles"][int(i)]
        s = self.meta["sources"][src]
        return dict(source=s["file"], x=x, y=y, scale=s["scale"])

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        return dict(image=self.image(i), index=i, source=self.meta["sources"][self.meta["tiles"][i][0]]["file"])
