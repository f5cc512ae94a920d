"""A comparison's units, several at once (``jobs``), each in its own process: pretraining units, and every
evaluation (probe or fine-tuning) as soon as its encoder's pretraining unit is recorded.

Why: small batches of small views do not keep every core of a CPU busy, so two units with one thread each finish
sooner than the same two one after the other with two threads (``bench/parallel_units.py``: 1.24x the units per
hour on 2 cores); a machine with several GPUs (or room for several small units on one) is filled the same way. Each
unit is a real run folder started as the app's launcher starts one (``core.store.launch._spawn``: ``python -m
core.ssl.pretrain | core.seg.probe | core.seg.finetune_cli --run-dir``), resumable, inspectable and stoppable on its own;
the comparison records a unit once its process has completed. A stop of the comparison (SIGTERM / Ctrl-C) stops
every running unit (a trainer at its next step, with a checkpoint; a probe where it is).

Threads: a pretraining unit gets its share of the cores (``threads_per_job``), as since ``jobs`` existed; an
evaluation unit the comparison's own thread count, the one it had when evaluations ran one at a time in the
comparison's process, so its scores are those bits (thread counts change the last bits of a kernel's sums). On CUDA
each unit sees one GPU (``CUDA_VISIBLE_DEVICES``): the GPU of its slot, slots round-robin over the GPUs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import config_to_yaml
from ..store import launch
from ..store.runs import Run, create_run, open_run

STOP_WAIT_S = 300  # a stopped unit writes its checkpoint before it exits
WHAT = {"pretrain": "pretraining", "probe": "probe", "finetune": "fine-tuning"}  # a unit's kind in the log's words
Key = tuple[str, str, int, "int | None"]  # a unit as units.jsonl keys it: (kind, method, pretrain seed, seed)


class UnitFailed(RuntimeError):
    """A unit's process ended without completing its run; one line says which and where to look."""


PretrainingFailed = UnitFailed  # its name when only pretraining units ran at once


@dataclass(frozen=True)
class UnitJob:
    """One unit for a process. ``config`` is built when the unit starts: an evaluation names its encoder, which is
    known once the pretraining unit ``after`` is recorded."""

    key: Key
    kind: str  # "pretrain", "probe" or "finetune": the module its process runs
    label: str  # "simclr p0" or "simclr p0 s1": the log's and the errors' name for it
    config: Callable[[], Any]
    root: Path  # where its run folder goes
    after: Key | None = None
    resume: Path | None = None  # the run folder of this unit cut short by a stop: continued, not started again


def machine_cores() -> int:
    """The cores this process may use (its affinity, e.g. a container's share), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """A pretraining unit's threads when ``jobs`` run at once (unchanged since ``jobs`` existed: bits kept)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def eval_threads() -> int:
    """An evaluation unit's threads: the comparison's own, as when it evaluated in its own process."""
    return torch.get_num_threads()


def cap_jobs(jobs: int, units_per_gpu: int, log: Callable[[str], None]) -> int:
    """``jobs``, at most what the machine holds (CPU: its cores; CUDA: GPUs x ``units_per_gpu``); a cap is said in one
    line. Why: more processes than cores (or GPU slots) only slow every unit down."""
    gpus = torch.cuda.device_count()
    room, where = (gpus * units_per_gpu, f"{gpus} GPU{'s' if gpus > 1 else ''} x {units_per_gpu}") if gpus else \
        (machine_cores(), f"{machine_cores()} cores")
    if jobs > room:
        log(f"jobs: {jobs} capped to {room} ({where})")
        return room
    return jobs


def _gpu_of(slot: int, gpus: int) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of a slot: its GPU round-robin, named as the comparison itself sees them."""
    seen = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    index = slot % gpus
    return seen[index].strip() if len(seen) == gpus else str(index)


def _stop_all(running: dict[Any, tuple[UnitJob, Run, int]]) -> None:
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


def _failure(unit: UnitJob, run: Run, code: int | None) -> UnitFailed:
    state = run.state()
    how = "before it began training" if state in ("starting", "died") else state
    return UnitFailed(f"{unit.label}: {WHAT[unit.kind]} ended {how} (exit code {code}; see {run.path / 'log.txt'} "
                      "and console.txt)")


def _start(unit: UnitJob, env: dict[str, str]) -> tuple[Run, Any]:
    """A unit's run folder and process: a new folder, or (``unit.resume``) its folder of before, continued from its
    last checkpoint as the app's Resume does."""
    if unit.resume is not None:
        run = open_run(unit.resume)
        run.write_status(state="starting", error=None, ended=None, pid=os.getpid())
        return run, launch._spawn(run, ["--resume", str(run.path), "--no-progress"], unit.kind, env=env)
    cfg = unit.config()
    run = create_run(cfg.name, config_to_yaml(cfg), unit.root, state="starting", kind=unit.kind)
    return run, launch._spawn(run, ["--run-dir", str(run.path), "--no-progress"], unit.kind, env=env)


def run_at_once(units: list[UnitJob], jobs: int, log: Callable[[str], None], poll_s: float = 0.5,
                check: Callable[[], None] = lambda: None,
                started: Callable[[UnitJob, Run], None] = lambda unit, run: None) -> Iterator[tuple[UnitJob, Run]]:
    """Run ``units`` at most ``jobs`` at a time, each started in list order once the unit it is ``after`` has been
    yielded (and so recorded by the caller); yield each (unit, run folder) as it completes. ``started(unit, run)``
    when a unit's folder is made (so a later resume can continue it). A unit that fails or is stopped from outside
    raises ``UnitFailed`` (the others are stopped first); ``check`` is called at every poll (the comparison's stop
    check: whatever it raises stops every unit). Close the iterator when leaving it early."""
    gpus = torch.cuda.device_count()
    todo, done = list(units), set()
    running: dict[Any, tuple[UnitJob, Run, int]] = {}  # process -> (unit, run, slot)
    try:
        while todo or running:
            busy = {slot for _, _, slot in running.values()}
            free = [s for s in range(jobs) if s not in busy]
            for unit in [u for u in todo if u.after is None or u.after in done][:len(free)]:
                todo.remove(unit)
                slot = free.pop(0)
                threads = threads_per_job(jobs) if unit.kind == "pretrain" else eval_threads()
                env = {"OMP_NUM_THREADS": str(threads)}
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = _gpu_of(slot, gpus)
                run, proc = _start(unit, env)
                started(unit, run)
                log(f"{unit.label}: {WHAT[unit.kind]} {'continued in' if unit.resume else 'into'} {run.path.name} "
                    f"({len(running) + 1} of {jobs} at once, {threads} thread{'s' if threads > 1 else ''}"
                    + (f", GPU {env['CUDA_VISIBLE_DEVICES']})" if gpus else ")"))
                running[proc] = (unit, run, slot)
            if not running:  # only units waiting for one that is not in the list: a caller's mistake
                raise UnitFailed(f"{todo[0].label}: waits for a unit that is not run ({todo[0].after})")
            time.sleep(poll_s)
            check()
            for proc in [p for p in running if p.poll() is not None]:
                unit, run, _ = running.pop(proc)
                if run.state() != "completed":
                    raise _failure(unit, run, proc.returncode)
                done.add(unit.key)
                yield unit, run
    finally:
        _stop_all(running)


__all__ = ["UnitJob", "UnitFailed", "PretrainingFailed", "run_at_once", "cap_jobs", "threads_per_job",
           "eval_threads", "machine_cores"]
