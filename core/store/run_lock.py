"""One writer per run folder, and whether a process still lives.

Why apart from ``core.store.runs``: the lock is the one piece of the run-folder contract that talks to the OS
(``flock``, ``/proc``); every trainer takes it before reading a run, and the UI asks it whether a run is live.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import Run


class RunBusyError(RuntimeError):
    """The run is live (its process is running); the action would pull data from under it."""


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this machine (zombies count as dead)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody has waited for yet is still in the process table
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


LOCK_FILE = ".lock"
_HELD: list[Any] = []  # locks this process holds: kept open (and so held) until the process ends


def _lock_holder(path: Path) -> str:
    try:
        pid = (path / LOCK_FILE).read_text().strip()
    except OSError:
        return "another process"
    return f"process {pid}" if pid.isdigit() else "another process"


def lock_run(run: "Run") -> None:
    """Make this process the run's only writer, until it ends. Why a lock and not the pid in ``status.json``: the
    OS drops a ``flock`` when its process dies, even by kill -9, so there is no stale claim and no race between
    two starting processes. RunBusyError (one line) when another process holds it. Ranks other than 0 of a
    distributed run do not lock (rank 0 writes for all)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if any(getattr(f, "name", None) == str(run.path / LOCK_FILE) for f in _HELD):
        return  # this process holds it already
    import fcntl

    f = open(run.path / LOCK_FILE, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunBusyError(f"run {run.id} is being written by {_lock_holder(run.path)}; stop it (or wait for it) "
                           "before resuming, relaunching or deleting it") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _HELD.append(f)
    remove_stale_temps(run.path)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete what a killed writer left (``atomic_write_with``'s ``.<name>.*.tmp`` folders, and the temp files of
    older versions) in a run folder and its checkpoints; only safe while holding the run's lock (no other writer can
    be mid-write)."""
    gone = []
    for where in (folder, folder / "checkpoints"):
        for p in where.glob(".*.tmp") if where.is_dir() else []:
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def unlock_run(run: "Run") -> None:
    """Give up this process's lock on the run (when its training ends inside a longer-lived process)."""
    lock = str(run.path / LOCK_FILE)
    for f in [f for f in _HELD if getattr(f, "name", None) == lock]:
        _HELD.remove(f)
        f.close()


def run_locked(path: Path) -> bool:
    """Whether some process holds the run's lock (is training in it right now)."""
    import fcntl

    lock = Path(path) / LOCK_FILE
    if not lock.is_file():
        return False
    if any(getattr(f, "name", None) == str(lock) for f in _HELD):
        return True
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False
