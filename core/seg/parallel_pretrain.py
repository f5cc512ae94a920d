"""A comparison's pretraining units, several at once, each in its own process with its share of the cores.

Why: small batches of small views do not keep every core of a CPU busy, so two units with one thread each finish
sooner than the same two one after the other with two threads (``bench/parallel_units.py``: 1.24x the units per
hour on 2 cores). Each unit is a real ``python -m core.ssl.pretrain --run-dir`` run folder, as the app's launcher
makes, so it is resumable, inspectable and stoppable on its own; the comparison records a unit once its process has
completed. A stop (SIGTERM / Ctrl-C of the comparison) stops every running unit at its next step.

Thread counts change the last bits of a kernel's sums: a unit run here is not bit-identical to the same unit run
with another number of threads, though it is the same experiment.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import PretrainConfig, config_to_yaml
from ..store.runs import REPO_ROOT, Run, create_run

STOP_WAIT_S = 300  # a stopped unit writes its checkpoint before it exits


class PretrainingFailed(RuntimeError):
    """A unit's process ended without completing its run."""


@dataclass(frozen=True)
class Unit:
    method: str
    pretrain_seed: int
    config: PretrainConfig


def threads_per_job(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _start(run: Run, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(run.path / "console.txt", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "core.ssl.pretrain", "--run-dir", str(run.path), "--no-progress"],
                                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a terminal's Ctrl-C reaches them through our stop, once


def _stop_all(running: dict[subprocess.Popen, tuple[Unit, Run]]) -> None:
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.time() + STOP_WAIT_S
    for proc in running:
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pretrain_at_once(units: list[Unit], jobs: int, root: Path, log: Callable[[str], None],
                     poll_s: float = 0.5, check: Callable[[], None] = lambda: None) -> Iterator[tuple[Unit, Path]]:
    """Run ``units`` at most ``jobs`` at a time, in order; yield each (unit, run folder) as it completes. A unit that
    fails or is stopped from outside raises ``PretrainingFailed`` (the others are stopped first); ``check`` is called
    at every poll (the comparison's stop check: whatever it raises stops every unit)."""
    threads = threads_per_job(jobs)
    todo, running = list(units), {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                unit = todo.pop(0)
                run = create_run(unit.config.name, config_to_yaml(unit.config), root, state="starting",
                                 kind="pretrain")
                log(f"{unit.method} p{unit.pretrain_seed}: pretraining into {run.path.name} ({len(running) + 1} of "
                    f"{jobs} at once, {threads} thread{'s' if threads > 1 else ''} each)")
                running[_start(run, threads)] = (unit, run)
            time.sleep(poll_s)
            check()
            for proc in [p for p in running if p.poll() is not None]:
                unit, run = running.pop(proc)
                state = run.state()
                if state != "completed":
                    how = "before it began training" if state in ("starting", "died") else state
                    raise PretrainingFailed(f"{unit.method} p{unit.pretrain_seed}: pretraining ended {how} (exit "
                                            f"code {proc.returncode}; see {run.path / 'log.txt'} and console.txt)")
                yield unit, run.path
    finally:
        _stop_all(running)


__all__ = ["Unit", "PretrainingFailed", "pretrain_at_once", "threads_per_job"]
