"""Making a run folder: whole or not at all, under a unique name (``core.store.runs`` re-exports ``create_run``)."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import Run

from .run_state import STATES

STAGING_PREFIX = ".creating-"


class RunsRootError(ValueError):
    """A runs folder in which no run folder can be made (read-only, a file, on a full disk)."""


def create_run(name: str, config_yaml: str, root: Path | None = None, **status: Any) -> "Run":
    """Make a new, uniquely named run folder, whole or not at all.

    Why staged: the folder is filled under a hidden name and renamed into place, so a kill during creation never
    leaves a half folder among the runs. The rename cannot land on another run: renaming a folder onto an existing
    non-empty one fails, and the next name is tried. ``status`` fields (e.g. ``state="starting"``,
    ``kind="pretrain"``) go into the first status.json."""
    from .runs import Run, _slug, atomic_write_bytes, atomic_write_json, runs_root  # that module re-exports this one

    root = Path(root) if root else runs_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(root)
        stage = Path(tempfile.mkdtemp(dir=root, prefix=STAGING_PREFIX))
    except OSError as err:  # one line, not a traceback (a review: a read-only folder, a file of that name)
        raise RunsRootError(f"the runs folder {root} cannot take a new run ({err.strerror or err}): give another "
                            "with --runs-root or FALSE_WB_RUNS") from None
    try:
        atomic_write_bytes(stage / "config.yaml", config_yaml.encode())
        (stage / "checkpoints").mkdir()
        first = {"name": name, "state": "running", "pid": os.getpid(), "host": socket.gethostname(),
                 "created": time.time(), "started": time.time(), "ended": None, "step": 0, "total_steps": None,
                 "error": None, **status}
        if first["state"] not in STATES:  # a first record, not a move: any state a run records
            raise ValueError(f"state {first['state']!r}: a run records one of {', '.join(STATES)}")
        atomic_write_json(stage / "status.json", first)
        os.chmod(stage, 0o755)  # mkdtemp makes 0700
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            path = root / (f"{stamp}-{_slug(name)}" + ("" if n == 0 else f"-{n}"))
            if path.exists() and any(path.iterdir()):
                continue
            try:
                os.rename(stage, path)
            except OSError:  # taken in between by another launch
                continue
            return Run(path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    raise RuntimeError(f"could not create a unique run folder under {root}")


def remove_stale_staging(root: Path, older_than_s: float = 3600.0) -> None:
    """Delete the staging folders of run creations that were killed (an hour old: no creation takes that long)."""
    now = time.time()
    for p in root.glob(STAGING_PREFIX + "*"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass
