"""The synthetic data set: tiles of ``core.data.synthetic_scene`` generated once (in parallel) and cached as
memory-mapped arrays, so the workbench runs end to end with no download.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..imaging.bands import check_request, resolve
from ..phases import check_stop, phase_bar
from .paths import (CachedTiles, DataError, check_free_space, data_root, one_builder, publish_dir, remove_dead_temps,
                    temp_dir_for)
from .synthetic_canvas import CLASSES, GENERATOR_VERSION
from .synthetic_nir import NIR_VERSION, nir_band, nir_seed
from .synthetic_scene import generate_scene

BANDS = ("R", "G", "B", "NIR")  # the bands the synthetic set has: images.npy holds R, G, B; nir.npy the NIR
_CHUNK_BYTES = 64 << 20  # band files are built this much at a time


# ------------------------------------------------------------------------------------------------ the dataset
def tile_seed(seed: int, index: int) -> int:
    """The scene seed of tile ``index`` of a dataset with ``seed``: a hash, so datasets do not overlap."""
    digest = hashlib.blake2b(f"synthetic:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _render_chunk(job: tuple[int, int, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """Worker: tiles [start, stop) of a dataset (top-level so a process pool can pickle it)."""
    seed, start, stop, size = job
    pairs = [generate_scene(tile_seed(seed, i), size) for i in range(start, stop)]
    return start, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SyntheticAerial(CachedTiles):
    """Synthetic aerial tiles with ISPRS Potsdam labels, generated once and cached as memory-mapped arrays.

    On disk, ``<root>/synthetic/n{num_tiles}_s{tile_size}_seed{seed}/`` holds ``images.npy`` (N, H, W, 3) uint8,
    ``labels.npy`` (N, H, W) uint8 (class indices into :data:`CLASSES`) and ``meta.json``. The folder appears
    atomically; concurrent constructions generate in private temp folders and the first to finish wins.

    Items are ``dict(image=uint8 (C, H, W), mask=int64 (H, W), index=int)``; the trainer uses
    :meth:`get_images` for whole batches.

    ``bands`` (``data.bands``): the channels, in order, of R, G, B and NIR (names or 0-based indices); ``None``
    (the default) is R, G, B, exactly as before bands existed. A near-infrared band
    (:func:`core.data.synthetic_nir.nir_band`) is built once from the cached tiles into ``nir.npy`` (N, H, W)
    with ``nir.json`` recording its version; any other order than R, G, B is cached once as
    ``images-<names>.npy`` (e.g. ``images-R-G-B-NIR.npy``). Both files appear atomically (one rename).
    """

    has_labels = True
    classes = CLASSES

    def __init__(self, root: str | Path | None = None, num_tiles: int = 2000, tile_size: int = 256, seed: int = 0,
                 progress: bool = True, bands: Sequence[int | str] | None = None):
        if num_tiles < 1 or tile_size < 8:
            raise DataError(f"synthetic data: need num_tiles >= 1 and tile_size >= 8, got {num_tiles}, {tile_size}")
        request = check_request(bands)
        names = resolve(request, BANDS, "the synthetic set")[1] if request is not None else None  # before building
        self.num_tiles, self.seed, self.progress = int(num_tiles), int(seed), progress
        base = Path(root) if root is not None else data_root()
        self.cache_dir = base / "synthetic" / f"n{num_tiles}_s{tile_size}_seed{seed}"
        remove_dead_temps(self.cache_dir)  # a killed generation's leftovers, whether or not this one generates
        if not self._cache_ok():
            with one_builder(self.cache_dir, f"these {num_tiles} synthetic tiles"):  # a second asker waits, then reads
                if not self._cache_ok():
                    self._discard_stale()
                    if not self._cache_ok():
                        self._generate(int(tile_size))
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())
        if names is not None:
            self.meta["bands"] = names  # in memory only: meta.json describes images.npy (R, G, B)
            if list(names) != ["R", "G", "B"]:
                self._band_file = self._prepare_bands(names)

    # -------------------------------------------------------------- cache
    def _cache_ok(self) -> bool:
        try:
            meta = json.loads((self.cache_dir / "meta.json").read_text())
            images = self._array("images.npy")  # the generated R, G, B, whatever bands are asked for
            ok = meta.get("generator_version") == GENERATOR_VERSION and images.shape[0] == self.num_tiles
            return ok and self.labels.shape[0] == self.num_tiles
        except (OSError, ValueError):
            return False
        finally:
            self.__dict__.pop("_arrays", None)

    def _discard_stale(self) -> None:
        """Move an outdated or broken cache folder aside (one rename) and delete it."""
        if self.cache_dir.exists() and not self._cache_ok():  # not just published by another process
            stale = self.cache_dir.with_name(f".{self.cache_dir.name}.stale-{os.getpid()}-{time.time_ns()}")
            try:
                os.replace(self.cache_dir, stale)
            except OSError:
                return  # someone else moved it
            shutil.rmtree(stale, ignore_errors=True)

    def _generate(self, size: int) -> None:
        n, t0 = self.num_tiles, time.time()
        check_free_space(self.cache_dir.parent, n * size * size * 4, f"the synthetic set ({n:,} tiles of {size} px)",
                         "lower data.num_tiles or data.tile_size")  # images (3 bytes a pixel) and labels (1)
        tmp = temp_dir_for(self.cache_dir)
        try:
            images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, size, size, 3))
            labels = np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.uint8, (n, size, size))
            chunk = 16
            jobs = [(self.seed, s, min(n, s + chunk), size) for s in range(0, n, chunk)]
            done: set[int] = set()

            def store(start: int, imgs: np.ndarray, labs: np.ndarray) -> None:
                images[start:start + len(imgs)], labels[start:start + len(imgs)] = imgs, labs
                done.add(start)
                bar.update(len(imgs))

            workers = min(_workers(), 8, len(jobs)) if n >= 400 else 1
            with phase_bar(total=n, desc=f"generating {n} synthetic tiles", unit="tile",
                      disable=not self.progress) as bar:
                if workers > 1:
                    try:  # spawn: safe in threaded parents (Streamlit) and the same on every OS
                        with mp.get_context("spawn").Pool(workers) as pool:
                            results = pool.imap_unordered(_render_chunk, jobs)
                            while True:  # a Stop is seen within half a second, the workers' start-up included
                                try:
                                    store(*results.next(timeout=0.5))
                                except mp.TimeoutError:
                                    check_stop()
                                except StopIteration:
                                    break
                    except (OSError, RuntimeError, EOFError) as err:  # no subprocesses here: go on serially
                        warnings.warn(f"synthetic data: parallel generation failed ({err}); continuing in "
                                      "one process", stacklevel=3)
                for job in jobs:
                    if job[1] not in done:
                        store(*_render_chunk(job))
            images.flush()
            labels.flush()
            del images, labels
            meta = dict(generator_version=GENERATOR_VERSION, num_tiles=n, tile_size=size, seed=self.seed,
                        classes=[{"name": c, "color": list(rgb)} for c, rgb in CLASSES],
                        seconds=round(time.time() - t0, 2), created=time.time())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            publish_dir(tmp, self.cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -------------------------------------------------------------- bands
    def _nir_ok(self) -> bool:
        try:
            version = json.loads((self.cache_dir / "nir.json").read_text()).get("nir_version")
            nir = np.load(self.cache_dir / "nir.npy", mmap_mode="r")
            return version == NIR_VERSION and nir.dtype == np.uint8 and nir.shape == self.labels.shape
        except (OSError, ValueError, AttributeError):
            return False

    def _prepare_bands(self, names: Sequence[str]) -> str:
        """The cache file holding the channels ``names`` in order, built once (``nir.npy`` first if needed)."""
        if "NIR" in names and not self._nir_ok():
            self._build_nir()
        name = "images-" + "-".join(names) + ".npy"
        n, h, w, _ = self._array("images.npy").shape
        try:
            ok = np.load(self.cache_dir / name, mmap_mode="r").shape == (n, h, w, len(names))
        except (OSError, ValueError):
            ok = False
        if not ok:
            self._build_bands(name, names)
        return name

    def _chunk(self, tile_bytes: int) -> int:
        return max(1, _CHUNK_BYTES // max(1, tile_bytes))

    def _write_atomically(self, name: str, shape: tuple[int, ...], fill) -> None:
        """Write ``name`` in the cache folder via a temp file next to it and one rename (readers never see half
        a file; concurrent builders write the same bytes and the last rename wins)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=".npy", dir=self.cache_dir)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, "w+", np.uint8, shape)
            fill(out)
            out.flush()
            del out
            os.replace(tmp, self.cache_dir / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _build_nir(self) -> None:
        images, labels = self._array("images.npy"), self._array("labels.npy")
        n, step = len(labels), self._chunk(labels[0].nbytes * 4)

        def fill(out: np.ndarray) -> None:
            with phase_bar(total=n, desc=f"building the NIR band of {n} synthetic tiles", unit="tile",
                           disable=not self.progress or n < 400) as bar:
                for s in range(0, n, step):
                    imgs, labs = np.asarray(images[s:s + step]), np.asarray(labels[s:s + step])
                    for j in range(len(labs)):
                        out[s + j] = nir_band(imgs[j], labs[j], nir_seed(self.seed, s + j))
                    bar.update(len(labs))

        self._write_atomically("nir.npy", labels.shape, fill)
        for old in self.cache_dir.glob("images-*.npy"):  # built from an older NIR band, if any
            if "NIR" in old.stem.split("-")[1:]:
                old.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".nir.json.tmp-", dir=self.cache_dir)
        with os.fdopen(fd, "w") as f:
            json.dump({"nir_version": NIR_VERSION}, f)
        os.replace(tmp, self.cache_dir / "nir.json")
        self.__dict__.get("_arrays", {}).pop("nir.npy", None)

    def _build_bands(self, name: str, names: Sequence[str]) -> None:
        images = self._array("images.npy")
        nir = np.load(self.cache_dir / "nir.npy", mmap_mode="r") if "NIR" in names else None
        n, h, w, _ = images.shape
        step = self._chunk(h * w * (len(names) + 4))

        def fill(out: np.ndarray) -> None:
            for s in range(0, n, step):
                e = min(n, s + step)
                for c, band in enumerate(names):
                    out[s:e, :, :, c] = nir[s:e] if band == "NIR" else images[s:e, :, :, BANDS.index(band)]

        self._write_atomically(name, (n, h, w, len(names)), fill)

    # -------------------------------------------------------------- access
    @property
    def images(self) -> np.ndarray:
        """All tiles, (N, H, W, C) uint8, memory-mapped (read-only); channels in the order of ``band_names``."""
        return self._array(self.__dict__.get("_band_file") or "images.npy")

    @property
    def labels(self) -> np.ndarray:
        """All label maps, (N, H, W) uint8, memory-mapped (read-only)."""
        return self._array("labels.npy")

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        mask = torch.from_numpy(np.asarray(self.labels[i], dtype=np.int64))
        return dict(image=self.image(i), mask=mask, index=i)

    def class_histogram(self, i: int) -> np.ndarray:
        """Fraction of tile i's pixels in each class, shape (6,), summing to 1."""
        counts = np.bincount(np.asarray(self.labels[int(i)]).ravel(), minlength=len(CLASSES))
        return counts / counts.sum()

    def dominant_class(self, i: int) -> int:
        """The class covering most of tile i (ties: the lower index)."""
        return int(np.argmax(self.class_histogram(i)))
