"""Where data and caches live, how cache folders are published, and the one error type for bad data.

Why: every dataset writes its cache under one root that a user (or a test) can move with an environment
variable; caches appear atomically so concurrent runs never read half-written arrays; and every data problem
surfaces as one clear line that the CLI can turn into exit code 2.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..repo import REPO_ROOT

ENV_VAR = "FALSE_WB_DATA"


class DataError(ValueError):
    """A data problem (missing folder, no readable images, broken cache); the message names the path."""


def leads_outside(path: Path, root: Path) -> bool:
    """Whether ``path``, its symlinks resolved, lies outside ``root`` (resolved). Why: a link inside a data folder
    must not read files from elsewhere on the machine, the rule typed paths follow (``core.store.safepaths``)."""
    try:
        resolved, base = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return True
    return resolved != base and base not in resolved.parents


def data_root() -> Path:
    """The data root: ``$FALSE_WB_DATA`` if set, else ``<repo>/data`` (git-ignored)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def scratch_dir() -> Path:
    """Where the apps put short-lived files (uploads being read, files offered for download): under the data
    root, so the workbench writes nowhere else."""
    path = data_root() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def temp_dir_for(final: Path) -> Path:
    """A fresh private folder next to ``final`` (same file system, so publishing it is one rename), named after
    this process so that a later start can tell a dead writer's leftovers (``remove_dead_temps``) from a live one's."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(final)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))


def check_free_space(folder: Path, need: int, what: str, advice: str) -> None:
    """Refuse, in one line, a cache that would not fit on its disk, before a byte of it is written (a sparse
    memory map would start anyway and fail, or fill the disk, hours later). ``advice``: what shrinks it."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"{what} needs {_gib(need)} on {folder}, which has {_gib(free)} free: {advice}, or set "
                        "FALSE_WB_DATA to a folder on a larger disk")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


ORPHAN_AFTER_S = 24 * 3600  # a temp folder without a writer's pid in its name (older versions): left alone a day


def remove_dead_temps(final: Path) -> list[Path]:
    """Remove the temp folders of ``final`` whose writer is gone (a kill -9 mid-generation left hundreds of MB that
    nothing ever removed); a live writer's folder (three launches of one data set at once) is kept."""
    removed = []
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name[len(f".{final.name}.tmp-"):].split("-", 1)[0]
        if pid.isdigit():
            dead = not _alive(int(pid))
        else:
            try:
                dead = time.time() - tmp.stat().st_mtime > ORPHAN_AFTER_S
            except OSError:
                continue
        if dead and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


IDENTITY_FILE = "identity"  # beside meta.json: which data and settings a cache holds, whatever code built it


def cache_identity(spec: dict) -> str:
    """A cache's data and settings without the code version and the files' sizes and times: two caches with one
    identity hold the same tiles as made by different code or from different file versions, so the older is dead."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


READER_PREFIX = ".reader-"  # a cache's lease file of each process that opened it: <prefix><host>-<pid>


def _lease_name() -> str:
    return f"{READER_PREFIX}{socket.gethostname()}-{os.getpid()}"


def _lease_alive(name: str) -> bool:
    """Whether a lease's process still runs. A lease from another host (a data root shared over the network, or by
    containers) cannot be checked from here: it counts as alive, so only its own host drops it."""
    host, _, pid = name[len(READER_PREFIX):].rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return _alive(int(pid))


def lease(cache: Path) -> None:
    """Mark ``cache`` as in use by this process, so that no newer build removes it while this process (or its data
    loader workers, which open its arrays later) may still read it; this host's leases of ended processes are
    dropped."""
    try:
        for old in cache.glob(f"{READER_PREFIX}*"):
            if not _lease_alive(old.name):
                old.unlink(missing_ok=True)
        (cache / _lease_name()).touch()
    except OSError:  # a read-only cache folder: nothing removes caches there either
        pass


def in_use(cache: Path) -> bool:
    """Whether a live process (or one on another host) holds a lease on ``cache``."""
    return any(_lease_alive(f.name) for f in cache.glob(f"{READER_PREFIX}*"))


def remove_superseded(final: Path, identity: str) -> list[Path]:
    """Remove the caches beside ``final`` that have its identity (each change of the tiling code or of a file
    made a new cache and left the old one, about 1.5 GB after a few weeks of work); called once ``final`` is
    built. Caches without an identity file (made before it existed) and caches a live process has open stay."""
    removed = []
    prefix = final.name.rsplit("-", 1)[0]
    for other in final.parent.glob(f"{prefix}-*"):
        if other == final or not other.is_dir():
            continue
        try:
            same = (other / IDENTITY_FILE).read_text().strip() == identity
        except (OSError, ValueError):  # unreadable, or not text: not ours to judge
            continue
        if same and not in_use(other):
            shutil.rmtree(other, ignore_errors=True)
            removed.append(other)
    return removed


@contextmanager
def one_builder(final: Path, what: str) -> Iterator[None]:
    """Only one process builds a cache folder at a time; another that wants the same folder waits (a phase without
    a total, a Stop honoured) and then finds it built. Why: a fine-tuning run and its random-encoder baseline,
    launched together, each generated the same 2,000 synthetic tiles: the same bytes, twice the time on shared
    cores. The lock is the OS's (``flock``): a builder killed by any signal releases it."""
    from ..phases import check_stop, phase_bar  # the data layer's bars; phases imports nothing of it

    path = final.parent / f".{final.name}.build-lock"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as err:  # one line, not a traceback (a review: a read-only FALSE_WB_DATA)
        raise DataError(f"the data folder {final.parent} cannot be written ({err.strerror or err}): set FALSE_WB_DATA "
                        "to a folder this user can write") from None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with phase_bar(total=None, desc=f"waiting for another process building {what}", unit="s") as bar:
                while True:
                    check_stop()
                    time.sleep(0.5)
                    bar.update(0.5)
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        continue
        try:
            yield
        finally:  # no file left behind: a waiter holds the old one and finds the cache built; a later asker a new one
            path.unlink(missing_ok=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished cache folder into place atomically; if another process won the race, keep theirs.

    Readers only ever see a complete folder: it appears in one rename, or not at all.
    """
    try:
        os.replace(tmp, final)  # on POSIX fails (ENOTEMPTY/EEXIST) when final is a non-empty folder
    except OSError:
        if not (final / "meta.json").is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class CachedTiles(Dataset):
    """Base for datasets backed by a cache folder holding ``images.npy`` (N, H, W, 3) uint8.

    Arrays are memory-mapped on first use and dropped when pickled, so DataLoader workers (fork or spawn)
    reopen the file instead of copying gigabytes through a pipe.
    """

    has_labels = False
    cache_dir: Path

    def _array(self, name: str) -> np.ndarray:
        arrays = self.__dict__.setdefault("_arrays", {})
        if name not in arrays:
            arrays[name] = np.load(self.cache_dir / name, mmap_mode="r")
        return arrays[name]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_arrays", None)
        return state

    @property
    def images(self) -> np.ndarray:
        """All tiles, (N, H, W, C) uint8, memory-mapped (read-only); C = len(band_names)."""
        return self._array("images.npy")

    @property
    def band_names(self) -> tuple[str, ...]:
        """The channels' names (``core.imaging.bands``): ``meta["bands"]`` of the cache, R, G, B when absent."""
        meta = self.__dict__.get("meta") or {}
        return tuple(meta.get("bands") or ("R", "G", "B"))

    @property
    def band_stretch(self) -> list[list[float] | None] | None:
        """Per channel, the [lo, hi] that stretched non-8-bit files to 8 bit (computed once per data set)."""
        meta = self.__dict__.get("meta") or {}
        return meta.get("band_stretch")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def tile_size(self) -> int:
        return int(self.images.shape[1])

    def image(self, i: int) -> torch.Tensor:
        """Tile i as a uint8 tensor (C, H, W)."""
        return torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).contiguous()

    def get_images(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch of tiles as uint8 (B, C, H, W) in the cache's channels-last layout (``torch.channels_last``): one
        fancy index of the memmap and no transposing copy. That copy cost a pretraining's loader thread 5 of its 10 ms
        a step on the CPU, competing with the step for 2 cores; the augmentation's pyramid reads this layout at the
        same speed (``halve_to_float``). Call ``.contiguous()`` where a (B, C, H, W)-contiguous tensor matters."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2)
