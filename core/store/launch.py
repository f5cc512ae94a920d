"""Start, stop and resume runs as background processes that outlive the browser tab and the app.

The launcher makes the run folder itself (so the caller knows it at once and two launches never share one), then
starts ``python -m MODULE --run-dir FOLDER`` (``MODULES``: ``core.ssl.pretrain``, ``core.seg.finetune_cli``, ...) in
its own session: closing the page, reloading it or restarting the app does not touch the run, and the app finds it
again through ``status.json``.
Stop sends SIGTERM, which the trainers turn into a clean stop at the next step with a checkpoint.

Each launched process is waited for by a daemon thread of the launching process (the app), so one that exits
is reaped at once instead of staying ``<defunct>`` while the app runs.

Pretraining and fine-tuning on several processes (``processes=N``, e.g. one per GPU) start ``torchrun --standalone
--nproc-per-node N -m core.<pretrain|finetune> ...`` (``torch.distributed.run``) on this machine; the first rank
writes the run folder, and a Stop (to the first rank) stops every rank at the same step. Several machines: see the README
("Several GPUs or machines").
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from ..config import config_to_yaml
from .runs import REPO_ROOT, STOP_REQUEST, Run, atomic_write_json, create_run, tail_text
from .run_lock import RunBusyError, pid_alive
from .run_state import SHOWN_LIVE

MODULES = {"pretrain": "core.ssl.pretrain", "finetune": "core.seg.finetune_cli", "compare": "core.seg.compare",
           "probe": "core.seg.probe"}  # a probe: minutes long, no checkpoint; a Stop ends it, a Resume runs it again
SEVERAL_PROCESSES = ("pretrain", "finetune")  # the trainers that join a torchrun group
CONSOLE = "console.txt"
# the Stop's own file (core.store.runs.STOP_REQUEST): status.json belongs to the trainer, and a read-modify-write of it
# here could put back a state the trainer had just left


_CHILDREN: dict[int, subprocess.Popen] = {}  # launched processes not yet waited for, by pid
_CHILDREN_LOCK = threading.Lock()


def _reap_when_done(proc: subprocess.Popen) -> None:
    """Wait for a launched process in a daemon thread, so it is reaped the moment it exits.

    Why: a child nobody waits for stays in the process table as a zombie (``<defunct>``) for as long as the app
    runs. A thread blocked in ``waitpid`` on that one pid reaps it at once; a SIGCHLD handler could not (signal
    handlers belong to the main thread, which Streamlit does not give its scripts) and would steal the exit status
    of other code's subprocesses."""
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc

    def wait() -> None:
        try:
            proc.wait()
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.pop(proc.pid, None)

    threading.Thread(target=wait, name=f"reap-{proc.pid}", daemon=True).start()


def reap() -> list[int]:
    """Collect every launched process that has exited and not been waited for yet (``poll``); returns their pids.
    The waiting threads do this already; this is the belt to their braces (e.g. a thread not started yet)."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.values())
    done = [p.pid for p in children if p.poll() is not None]
    with _CHILDREN_LOCK:
        for pid in done:
            _CHILDREN.pop(pid, None)
    return done


def _spawn(run: Run, args: list[str], kind: str, processes: int = 1,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m core.<kind> ARGS`` for ``run`` in its own session, its output in the run's console, reaped
    when it ends. The one way every unit starts: the app's launches and a comparison's units (``env``: what a unit
    adds, e.g. its ``OMP_NUM_THREADS`` and ``CUDA_VISIBLE_DEVICES``). Returns the process for a caller that polls it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    runner = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    cmd = [sys.executable, *runner, "-m", MODULES[kind], *args]
    run.log("launched: " + " ".join(cmd[1:]))
    with open(run.path / CONSOLE, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _reap_when_done(proc)
    run.write_status(pid=proc.pid, host=socket.gethostname(), launched=time.time())  # the page: "starting for 40 s"
    return proc


def launch(kind: str, cfg: BaseModel, root: Path | None = None, name: str | None = None,
           processes: int = 1) -> Run:
    """A new run of ``kind`` with this (already validated) config, started in the background; pretraining may run
    and fine-tuning may run on ``processes`` ranks (torchrun, one per GPU when there are GPUs)."""
    if kind not in MODULES:
        raise ValueError(f"unknown run kind {kind!r}; choose one of {', '.join(MODULES)}")
    if processes < 1 or (processes > 1 and kind not in SEVERAL_PROCESSES):
        raise ValueError(f"processes: {processes} for a {kind} run; only pretraining and fine-tuning run on several "
                         "processes")
    name = name or getattr(cfg, "name", None) or kind
    run = create_run(name, config_to_yaml(cfg), root, state="starting", kind=kind, processes=processes)
    _spawn(run, ["--run-dir", str(run.path), "--no-progress"] if kind != "compare" else ["--run-dir", str(run.path)],
           kind, processes)
    return run


def resume(run: Run) -> Run:
    """Continue a stopped, failed or died run in the background: a trainer from its last checkpoint (from step 0
    when it ended before writing one), a comparison from its finished units (``units.jsonl``)."""
    kind = run.kind()
    if run.is_live():
        state = run.state()
        raise RunBusyError(f"run {run.id} is already {state}" if state in SHOWN_LIVE else
                           f"run {run.id} is being trained by another process (e.g. a command line)")
    # the launcher's own id until the process has one, as create_run does: the old process's id would read as 'died'
    run.write_status(state="starting", error=None, ended=None, pid=os.getpid(), host=socket.gethostname())
    _spawn(run, ["--resume", str(run.path)] if kind == "compare" else ["--resume", str(run.path), "--no-progress"],
           kind, int(run.status().get("processes") or 1))
    return run


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop(run: Run) -> bool:
    """Ask a live run to stop at its next step (it keeps a checkpoint); False when it is not running."""
    reap()
    status = run.status()
    pid = status.get("pid")
    if not run.is_live() or status.get("host") not in (None, socket.gethostname()):
        return False
    cmd = _cmdline(int(pid))
    if cmd and "core." not in cmd:  # the id was recycled by an unrelated process
        return False
    if stop_requested(run):  # asked already (a double click, or a page rerun that saw the click twice)
        return True
    starting = status.get("state") == "starting"
    atomic_write_json(run.path / STOP_REQUEST, {"pid": int(pid), "time": time.time()})
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        return False
    run.log("stop requested")
    if starting:  # not training yet: it may die from the signal before it can record anything itself
        run.write_status(state="stopped", ended=time.time())
    return True


def stop_requested(run: Run) -> bool:
    """Whether a Stop was sent to the run's current process (a resumed run has a new one, so an old Stop is
    forgotten)."""
    return run.stop_asked()


def console_tail(run: Run, max_chars: int = 20_000) -> str:
    """The end of what the run's process printed (errors that happened before its log was set up)."""
    return tail_text(run.path / CONSOLE, max_chars)


__all__ = ["launch", "resume", "stop", "stop_requested", "console_tail", "pid_alive", "reap"]
