"""The machinery under every labeled segmentation data set: tiling, the tile cache, views (files: ``seg_files``).

Why: each published data set has its own folder layout and label encoding, but once a scene is found and its mask
decoded to class indices, everything else is the same. A format class (see ``seg_formats.py``) only says where its
scenes are (:meth:`SegTiles.find_scenes`) and what its masks hold (:meth:`SegTiles.mask_table`: class colours and
values, read by the one rule of ``mask_read``, or its own :meth:`SegTiles.decode_mask`); this module cuts
every scene into tiles once, caches them as memory-mapped arrays, and serves them.

Cache: ``<data_root()>/cache/<format>-<hash>/`` with ``images.npy`` (N, T, T, 3) uint8, ``masks.npy`` (N, T, T)
uint8 (class indices, ``ignore_index`` for unlabeled pixels), ``counts.npy`` (N, C) int64 (pixels of each class
per tile) and ``meta.json`` (scenes with their files, given split, group and class pixel counts; tiles as
``[scene, x, y]``; the split of each tile). The hash covers the root, every file's relative path, size and mtime,
the tile size, the overlap and the decoding settings, so changed data makes a new cache instead of stale tiles.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ..phases import phase_bar

from ..repo import in_repo
from .paths import (CachedTiles, DataError, check_free_space, data_root, leads_outside, publish_dir,
                    remove_dead_temps, temp_dir_for, IDENTITY_FILE, cache_identity, lease, one_builder,
                    remove_superseded)
from ..imaging.raster import READER_MODULES, dataset_stretch, read_raster
from .code_version import code_version
from ..imaging.bands import BandError, describe
from ..imaging.imageio import ImageError
from .mask_read import MaskTable, read_mask
from .seg_files import IGNORE_INDEX, MAX_PIXELS, Decoded, image_size, read_rgb

# what decides a labeled set's cached tiles, besides its files and settings: the cache key holds their code's version
TILING_MODULES = (*READER_MODULES, "core.data.seg_base", "core.data.seg_files", "core.data.mask_read")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------------------ tiling
def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis; the last tile is aligned to the edge so the whole length is covered.
    A side shorter than a tile gives one tile at 0 (the scene is padded at its end)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _pad_to(img: np.ndarray, lab: np.ndarray, tile: int, ignore: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a scene smaller than a tile at its bottom/right: image reflected, mask with ``ignore``."""
    h, w = lab.shape
    py, px = max(0, tile - h), max(0, tile - w)
    if py or px:
        mode = "reflect" if py < h and px < w else "symmetric"
        img = np.pad(img, ((0, py), (0, px), (0, 0)), mode=mode)
        lab = np.pad(lab, ((0, py), (0, px)), constant_values=ignore)
    return img, lab


def resolve_root(root: str | Path) -> Path:
    """A data set folder: as given (``~`` expanded), else relative to the repository (configs say data/...)."""
    return in_repo(root).resolve()


# ------------------------------------------------------------------------------------------------ scenes
@dataclass
class Scene:
    """One image with its mask. ``split`` is the data set's own split (train/val/test) or None; ``group`` is the
    unit that must never be divided between splits (a scene, or e.g. a folder of adjacent crops)."""
    name: str
    image: Path
    mask: Path
    split: str | None = None
    group: str | None = None


class SegTiles(CachedTiles):
    """Base of the labeled tile sets: whole scenes cut into ``tile_size`` tiles with ``tile_overlap``, cached.

    Items are ``dict(image=uint8 (3, T, T), mask=int64 (T, T), index=int)``; masks hold class indices 0..C-1 and
    ``ignore_index`` (255) where unlabeled. Subclasses set ``format_name`` (the cache prefix), ``title`` (used in
    messages) and ``classes``, and implement :meth:`find_scenes` and :meth:`mask_table` (or :meth:`decode_mask`).
    """

    has_labels = True
    ignore_index = IGNORE_INDEX
    format_name = "seg"
    title = "Segmentation data"
    classes: list[dict] = []
    file_bands: tuple[str, ...] | None = None  # the files' band names where the format knows them (Vaihingen: IRRG)

    def __init__(self, root: str | Path, tile_size: int = 256, tile_overlap: int = 0, *,
                 cache_root: str | Path | None = None, progress: bool = True, bands: list | None = None):
        self.bands = list(bands) if bands is not None else None
        self.root = resolve_root(root)
        self.tile = int(tile_size)
        self.overlap = int(tile_overlap)
        if self.tile < 8 or not 0 <= self.overlap < self.tile:
            raise DataError(f"{self.title}: need tile_size >= 8 and 0 <= tile_overlap < tile_size, "
                            f"got {tile_size} and {tile_overlap}")
        if not self.root.is_dir():
            raise DataError(f"{self.title}: data.root is a file, not the data set's folder: {self.root}"
                            if self.root.is_file() else f"{self.title}: data set folder not found: {self.root}")
        if not 0 < len(self.classes) <= 255 or not len(self.classes) <= self.ignore_index <= 255:
            raise DataError(f"{self.title}: need 1-255 classes and an ignore_index in {len(self.classes)}..255")
        scenes = self.find_scenes()
        escaped = [s for s in scenes if leads_outside(s.image, self.root) or leads_outside(s.mask, self.root)]
        for s in escaped:
            warnings.warn(f"{self.title}: skipping scene {s.name}: its image or mask is a symlink that leads outside "
                          f"{self.root}", stacklevel=2)
        scenes = [s for s in scenes if s not in escaped]
        if not scenes:
            raise DataError(f"{self.title}: no scenes found in {self.root}")
        names = [s.name for s in scenes]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:3]
            raise DataError(f"{self.title}: scene names occur twice in {self.root}: {', '.join(dup)}")
        listing = []
        for s in scenes:
            row = [s.name, s.split, s.group]
            for f in (s.image, s.mask):
                st = f.stat()
                row += [self._rel(f), st.st_size, st.st_mtime_ns]
            listing.append(row)
        spec = dict(format=self.format_name, root=str(self.root), scenes=listing, tile=self.tile,
                    overlap=self.overlap, classes=self.classes, ignore=self.ignore_index,
                    decode=self.cache_params(), code=self.code_version())
        if self.bands is not None:  # RGB caches keep their names
            spec["bands"] = self.bands
        self._identity = cache_identity({k: v for k, v in spec.items() if k not in ("scenes", "code")})
        key = json.dumps(spec, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_root or data_root()) / "cache" / f"{self.format_name}-{digest}"
        remove_dead_temps(self.cache_dir)  # a killed build's leftovers, whether or not this one builds
        built = not (self.cache_dir / "meta.json").is_file()
        if built:
            with one_builder(self.cache_dir, "these tiles"):  # a second asker waits, then reads the first's
                built = not (self.cache_dir / "meta.json").is_file()
                if built:
                    self._build(scenes, progress)
                    remove_superseded(self.cache_dir, self._identity)
        lease(self.cache_dir)
        for name in ("images.npy", "masks.npy", "counts.npy"):
            if not (self.cache_dir / name).is_file():
                raise DataError(f"{self.title}: tile cache is incomplete: {self.cache_dir}; delete it to rebuild")
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())
        tiles = np.asarray(self.meta["tiles"], np.int64).reshape(-1, 3)
        self._scene_of, self._xy = tiles[:, 0], tiles[:, 1:]
        if not built:  # a cached load reports the same unknown colours as the first build
            self._warn_unknown()

    # -------------------------------------------------------------- for subclasses
    def find_scenes(self) -> list[Scene]:
        """Every scene of the data set in a stable order; raise DataError naming what is missing."""
        raise NotImplementedError

    def mask_table(self) -> MaskTable:
        """The class colours and values the masks hold, for :func:`core.data.mask_read.read_mask`."""
        raise NotImplementedError

    def decode_mask(self, path: Path) -> Decoded:
        """A mask file to class indices (uint8, ignore_index where unlabeled), by what it shows (``mask_read``)."""
        return read_mask(path, self.mask_table(), empty_ok=True)  # counted and warned of, as every unknown pixel

    def read_image(self, path: Path) -> np.ndarray:
        """A scene's pixels: RGB by the one rule, or the ``bands`` asked for (the data set's stretch, once built)."""
        if self.bands is None:
            return read_rgb(path)
        meta = self.__dict__.get("meta") or {}
        pixels, _ = self._read_bands(path, meta.get("band_stretch", self.__dict__.get("_stretch")))
        return pixels

    def _read_bands(self, path: Path, stretch: list | None) -> tuple[np.ndarray, list[str]]:
        try:
            got = read_raster(path, self.bands or [], max_pixels=MAX_PIXELS, stretch=stretch, names=self.file_bands)
        except (BandError, ImageError) as err:
            raise DataError(f"{self.title}: {err}" if path.name in str(err) else
                            f"{self.title}: cannot read image {path}: {err}") from None
        return got.pixels, got.names

    def code_version(self) -> str:
        """The version of the code that tiles this set (the reader's and its format's module): a change in either
        rebuilds the cache."""
        return code_version((*TILING_MODULES, type(self).__module__))

    def cache_params(self) -> Any:
        """Anything besides files, tile size and classes that changes the cached tiles (e.g. eroded labels)."""
        return None

    # -------------------------------------------------------------- building
    def _rel(self, p: Path) -> str:
        try:
            return p.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def _build(self, scenes: list[Scene], progress: bool) -> None:
        t0, tile, stride, ignore = time.time(), self.tile, self.tile - self.overlap, self.ignore_index
        n_cls = len(self.classes)
        sizes, layout = [], []
        for s in scenes:  # headers only: sizes checked and tiles counted before any decoding
            wh = image_size(s.image)
            mwh = image_size(s.mask)
            if wh != mwh:
                raise DataError(f"{self.title}: image {s.image} is {wh[0]}x{wh[1]} but its mask {s.mask} is "
                                f"{mwh[0]}x{mwh[1]}")
            sizes.append(wh)
            layout.append([(x, y) for y in tile_origins(wh[1], tile, stride)
                           for x in tile_origins(wh[0], tile, stride)])
        n = sum(len(xy) for xy in layout)
        names: list[str] | None = None
        if self.bands is not None:  # the bands' names and the data set's stretch, before any tile is cut
            self._stretch = dataset_stretch([s.image for s in scenes], self.bands, names=self.file_bands)
            names = self._read_bands(scenes[0].image, self._stretch)[1]
        channels = 3 if names is None else len(names)
        check_free_space(self.cache_dir.parent, n * tile * tile * (channels + 1),
                         f"{self.title}: its tile cache ({n:,} tiles of {tile} px)", "lower data.tile_overlap")
        tmp = temp_dir_for(self.cache_dir)
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, tile, tile, channels))
            masks = np.lib.format.open_memmap(tmp / "masks.npy", "w+", np.uint8, (n, tile, tile))
            counts = np.zeros((n, n_cls), np.int64)
            tiles, tile_split, scene_meta, k = [], [], [], 0
            jobs = list(zip(scenes, sizes, layout))
            bar = phase_bar(total=len(jobs), desc=f"tiling {self.name} ({n} tiles)", unit="scene",
                            disable=not progress)
            for si, (s, (w, h), xy) in enumerate(jobs):
                bar.update()
                if names is None:
                    img = self.read_image(s.image)
                else:
                    img, got = self._read_bands(s.image, self._stretch)
                    if got != names:
                        raise DataError(f"{self.title}: {s.image.name} has bands {describe(got)}, the data set's "
                                        f"first scene {describe(names)}")
                dec = self.decode_mask(s.mask)
                lab = dec.labels
                if img.shape[:2] != (h, w) or lab.shape != (h, w):
                    raise DataError(f"{self.title}: {s.image} decodes to {img.shape[1]}x{img.shape[0]} and its mask "
                                    f"to {lab.shape[1]}x{lab.shape[0]}, expected {w}x{h}")
                hist = np.bincount(lab.ravel(), minlength=256)
                img, lab = _pad_to(img, lab, tile, ignore)
                for x, y in xy:
                    t = lab[y:y + tile, x:x + tile]
                    images[k] = img[y:y + tile, x:x + tile]
                    masks[k] = t
                    counts[k] = np.bincount(t.ravel(), minlength=256)[:n_cls]
                    tiles.append([si, x, y])
                    tile_split.append(s.split)
                    k += 1
                scene_meta.append(dict(name=s.name, image=self._rel(s.image), mask=self._rel(s.mask), split=s.split,
                                       group=s.group or s.name, width=w, height=h,
                                       class_pixels=[int(c) for c in hist[:n_cls]],
                                       ignored_pixels=int(hist[ignore]), unknown_pixels=dec.unknown,
                                       unknown_example=dec.example))
                del img, lab, dec
            bar.close()
            images.flush()
            masks.flush()
            del images, masks
            np.save(tmp / "counts.npy", counts)
            meta = dict(code=self.code_version(), format=self.format_name, root=str(self.root), tile_size=tile,
                        tile_overlap=self.overlap, num_tiles=n, classes=self.classes, ignore_index=ignore,
                        decode=self.cache_params(), scenes=scene_meta, tiles=tiles, tile_split=tile_split,
                        seconds=round(time.time() - t0, 2), created=time.time())
            if names is not None:
                meta.update(bands=names, band_stretch=self._stretch)
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))
            (tmp / IDENTITY_FILE).write_text(self._identity)
            lease(tmp)  # born in use: no other build removes it before this one reads it
            publish_dir(tmp, self.cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.meta = meta
        self._warn_unknown()

    def _warn_unknown(self) -> None:
        bad = [s for s in self.meta["scenes"] if s["unknown_pixels"]]
        if not bad:
            return
        total = sum(s["unknown_pixels"] for s in bad)
        what = "values" if isinstance(bad[0]["unknown_example"], int) else "colours"
        ex = ", ".join(f"{s['mask']} ({s['unknown_pixels']} px, e.g. {s['unknown_example']})" for s in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        warnings.warn(f"{self.title}: {total} mask pixels in {len(bad)} file(s) have {what} not in the class table, "
                      f"mapped to ignore ({self.ignore_index}): {ex}{more}", stacklevel=3)

    # -------------------------------------------------------------- access
    @property
    def name(self) -> str:
        return self.format_name

    @property
    def masks(self) -> np.ndarray:
        """All tile masks, (N, T, T) uint8, memory-mapped (read-only)."""
        return self._array("masks.npy")

    @property
    def counts(self) -> np.ndarray:
        """Pixels of each class in each tile, (N, C) int64 (ignored pixels not counted)."""
        return self._array("counts.npy")

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"tile {i} out of range for {len(self)} tiles")
        i %= len(self)
        return dict(image=self.image(i), mask=torch.from_numpy(self.masks[i].astype(np.int64)), index=i)

    def get_masks(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch of masks as one int64 tensor (B, T, T)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return torch.from_numpy(self.masks[idx].astype(np.int64))

    @property
    def scene_ids(self) -> np.ndarray:
        """The scene of every tile, (N,) int64: index into :attr:`scene_names`."""
        return self._scene_of

    @property
    def scene_names(self) -> list[str]:
        return [s["name"] for s in self.meta["scenes"]]

    def scene_files(self) -> dict[str, Path]:
        """Each scene's image file, by scene name (a card keeps their digests: the very file is then known anywhere)."""
        return {s["name"]: self.root / s["image"] for s in self.meta["scenes"]}

    def scene_arrays(self, scene: int) -> tuple[np.ndarray, np.ndarray]:
        """Whole scene ``scene``: its image (H, W, C) uint8 and labels (H, W) uint8, decoded as the tiles were.

        Why: test scores are computed over whole scenes (each pixel once), not over overlapping tiles.
        """
        s = self.meta["scenes"][int(scene)]
        img = self.read_image(self.root / s["image"])
        lab = self.decode_mask(self.root / s["mask"]).labels
        if img.shape[:2] != lab.shape or lab.shape != (s["height"], s["width"]):
            raise DataError(f"{self.title}: scene {s['name']} changed on disk since it was tiled; delete "
                            f"{self.cache_dir} to rebuild")
        return img, lab

    def dominant_class(self, i: int) -> int:
        """The most frequent non-ignored class of tile i (ties: the lower index); ``ignore_index`` if none."""
        c = self.counts[int(i)]
        return int(np.argmax(c)) if c.sum() > 0 else self.ignore_index

    def tile_info(self, i: int) -> dict:
        """Where tile i comes from: scene name, image file (relative to the root), x, y, given split."""
        si, (x, y) = int(self._scene_of[int(i)]), self._xy[int(i)]
        s = self.meta["scenes"][si]
        return dict(scene=s["name"], source=s["image"], x=int(x), y=int(y), split=s["split"], group=s["group"])

    def split_info(self) -> dict[str, Any]:
        """For splitting: per tile its group id, given split (or None), scene id and (x, y) origin."""
        scenes = self.meta["scenes"]
        groups = sorted({s["group"] for s in scenes})
        gid = {g: k for k, g in enumerate(groups)}
        scene_group = np.array([gid[s["group"]] for s in scenes], np.int64)
        return dict(group=scene_group[self._scene_of], group_names=groups,
                    split=np.array([s["split"] or "" for s in scenes], object)[self._scene_of],
                    scene=self._scene_of, xy=self._xy, tile_size=self.tile)

    def class_shares(self) -> dict[str, float]:
        """Share of each class among the labeled pixels of all scenes (each pixel once, overlap or not)."""
        px = np.sum([s["class_pixels"] for s in self.meta["scenes"]], axis=0)
        return {c["name"]: float(v) / max(1, float(px.sum())) for c, v in zip(self.classes, px)}
