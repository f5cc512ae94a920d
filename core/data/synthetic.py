"""The synthetic data set: tiles of ``core.data.synthetic_scene`` generated once (in parallel) and cached as
memory-mapped arrays, so the workbench runs end to end with no download.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ..phases import phase_bar

from .paths import CachedTiles, DataError, data_root, publish_dir, temp_dir_for
from .synthetic_canvas import CLASSES, GENERATOR_VERSION
from .synthetic_scene import generate_scene


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

    Items are ``dict(image=uint8 (3, H, W), mask=int64 (H, W), index=int)``; the trainer uses
    :meth:`get_images` for whole batches.
    """

    has_labels = True
    classes = CLASSES

    def __init__(self, root: str | Path | None = None, num_tiles: int = 2000, tile_size: int = 256, seed: int = 0,
                 progress: bool = True):
        if num_tiles < 1 or tile_size < 8:
            raise DataError(f"synthetic data: need num_tiles >= 1 and tile_size >= 8, got {num_tiles}, {tile_size}")
        self.num_tiles, self.seed, self.progress = int(num_tiles), int(seed), progress
        base = Path(root) if root is not None else data_root()
        self.cache_dir = base / "synthetic" / f"n{num_tiles}_s{tile_size}_seed{seed}"
        if not self._cache_ok():
            self._discard_stale()
            if not self._cache_ok():
                self._generate(int(tile_size))
        self.meta = json.loads((self.cache_dir / "meta.json").read_text())

    # -------------------------------------------------------------- cache
    def _cache_ok(self) -> bool:
        try:
            meta = json.loads((self.cache_dir / "meta.json").read_text())
            ok = meta.get("generator_version") == GENERATOR_VERSION and self.images.shape[0] == self.num_tiles
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
                            for result in pool.imap_unordered(_render_chunk, jobs):
                                store(*result)
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

    # -------------------------------------------------------------- access
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
