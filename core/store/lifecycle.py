"""The life of a training run, written once for pretraining, fine-tuning and comparison.

Why one module: every trainer needs the same frame around its loop: ``status.json`` says ``running`` and then
exactly one of ``completed``, ``stopped`` (the workbench's Stop, SIGTERM or Ctrl-C) or ``failed`` (with the error, and
the traceback in ``log.txt``); a progress bar; records reaching the run folder often enough for live curves but not
on every step; a command line with the same flags (``--config``, ``--resume``, ``--run-dir``, ``--runs-root``,
``--no-progress``, ``key=value`` overrides anywhere); a one-line error and exit 2 for anything wrong before compute.
A trainer's ``fit`` is its loop inside ``with RunLife(...) as life``.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..console import bar_stream, plain_warnings, say  # noqa: F401 (plain_warnings re-exported)
from .background import BackgroundJobs
from .checkpoint import CheckpointError, read_metadata
from ..distributed import init_distributed, leave_distributed
from ..phases import Listener, report_phases
from ..config import ConfigError
from ..data import DataError
from .runs import NotARunError, Run, open_run
from .trackers import Pictures, tracking_for
from .run_lock import RunBusyError, lock_run, unlock_run
from .resume import ResumeRefused
from .run_state import IllegalTransition, check_transition

LIVE_EVERY_S = 1.0  # how often buffered records and the step reach the run folder between checkpoints
# What a wrong command, config, data set or checkpoint raises before any compute: one line and exit 2.
EARLY_ERRORS = (ConfigError, DataError, NotARunError, CheckpointError, FileNotFoundError, ValueError)


class StopFlag:
    """SIGTERM / Ctrl-C as a request to stop at the next step boundary (a second Ctrl-C means now).

    A repeated SIGTERM is the same request again, never "now": the workbench's Stop may be pressed (or delivered)
    twice, and a run killed mid-step by the second signal would lose the checkpoint the first one asked for.

    Install it on the first line of a ``main``: a Stop that lands while the run is still being opened is then
    remembered, not fatal. ``interrupt()`` switches to raising ``KeyboardInterrupt`` where the program is, for work
    without step boundaries of its own (a comparison of whole runs); a request already noted raises at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self.raised: str | None = None  # "second": a second Ctrl-C, mid-step; "interrupt": raised in interrupt mode
        self._raise = False
        self._old: dict[int, Any] = {}

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        now = self._raise or (self.requested and signum == signal.SIGINT)
        # noted first: a KeyboardInterrupt raised where Python swallows it (a finaliser, a C callback) must not lose
        # the stop; the next check() or step boundary still sees it
        self.requested = True
        if now:
            self.raised = self.raised or ("interrupt" if self._raise else "second")
            raise KeyboardInterrupt

    def check(self) -> None:
        """``KeyboardInterrupt`` when a stop was asked: for the boundaries of work run in ``interrupt`` mode."""
        if self.requested:
            raise KeyboardInterrupt

    def interrupt(self) -> None:
        self._raise = True
        if self.requested:  # a stop that came before: at once too, not in some closing work
            self.raised = self.raised or "interrupt"
        self.check()

    @contextmanager
    def at_step_boundaries(self) -> Iterator[None]:
        """A training loop inside work run in ``interrupt`` mode (a comparison's unit in its process): a stop waits
        for the trainer's next step or phase boundary, so it keeps the stop's checkpoint and a resume continues."""
        was, self._raise = self._raise, False
        try:
            yield
        finally:
            self._raise = was

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class RunLife:
    """``status.json``, ``log.txt``, the progress bar and buffered ``*.jsonl`` records around one training loop.

    ``run`` None (no folder, or a rank other than the first) keeps only the bar. ``step`` reads the trainer's step,
    so the final status names where it ended. Records given to ``record`` are written at most every
    ``LIVE_EVERY_S`` (with the step in ``status.json``), at ``flush()`` and whatever way the loop ends.
    """

    def __init__(self, run: Run | None, step: Callable[[], int], total_steps: int, *, stop: StopFlag | None = None,
                 progress: bool = True, desc: str = "train", pictures: Pictures | None = None,
                 **status: Any) -> None:
        self.run, self._step, self.total_steps, self.stop = run, step, total_steps, stop
        self.state = "completed"
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._shown = time.perf_counter()
        if run is not None:
            run.write_status(state="running", pid=os.getpid(), step=step(), total_steps=total_steps, error=None,
                             ended=None, phase=None, loop_started=time.time(), loop_start_step=step(), **status)
        self.bar = tqdm(total=total_steps, initial=step(), disable=not progress or None, desc=desc, unit="step",
                        dynamic_ncols=True, file=bar_stream())  # a closed pipe (`| head`) must not end the run; none
        # is drawn into a pipe or a file (its redraws there are one long line)
        self.tracking = self._guard(lambda: tracking_for(run, pictures, resume_step=step()), "could not start")
        # a tracker's server may take its time: records reach it from a thread, never from the training step
        self._sending = BackgroundJobs("trackers") if self.tracking is not None else None

    def __enter__(self) -> "RunLife":
        return self

    # ------------------------------------------------------------------ during the loop
    def log(self, message: str) -> None:
        if self.run is not None:
            self.run.log(message)

    def stopping(self) -> bool:
        """Whether a stop was requested; the run then ends ``stopped``."""
        if self.stop is not None and self.stop.requested:
            self.state = "stopped"
        return self.state == "stopped"

    def stepped(self, **postfix: Any) -> None:
        """One step done: the bar moves, and at most once a second the records and the step reach the folder."""
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix(**postfix)
        if time.perf_counter() - self._shown >= LIVE_EVERY_S:
            self.flush()

    def _guard(self, work: Callable[[], Any], what: str) -> Any:
        """A tracker that fails never fails the training: one line in the log and on stderr, and it is dropped."""
        try:
            return work()
        except Exception as err:  # noqa: BLE001 - a tracker's server or disk is not the run's business
            self.tracking = None
            line = f"trackers {what}: {' '.join(str(err).split())[:300]}; training goes on without them"
            warnings.warn(line, stacklevel=2)
            self.log(line)
            return None

    def record(self, name: str, rows: list[dict[str, Any]]) -> None:
        self._buffers.setdefault(name, []).extend(rows)

    def flush(self, **status: Any) -> None:
        """Buffered records to disk now, and the step (plus ``status``) into ``status.json``."""
        self._shown = time.perf_counter()
        if self.run is None:
            self._buffers.clear()
            return
        for name, rows in self._buffers.items():
            if rows:
                self.run.append_jsonl(name, rows)
                rows.clear()
        self.run.write_status(step=self._step(), **status)
        if self.tracking is not None and self._sending is not None and not self._sending.busy():
            tracking, sending = self.tracking, self._sending  # a send still going: the next flush sends both
            self._guard(lambda: sending.submit(tracking.sync), "stopped")  # an earlier send's error surfaces here

    # ------------------------------------------------------------------ the end
    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> bool:
        try:
            self.bar.close()
        except OSError:  # the console is gone: the status below is what a later reader needs
            pass
        if self.run is None:
            return False
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - e.g. a full disk: the status below matters more than the records
            pass
        if err is None:
            self.run.write_status(state=self.state, step=self._step(), ended=time.time())
            self.run.log(f"{self.state} at step {self._step()}")
        else:
            failed = not isinstance(err, KeyboardInterrupt)
            self.state = "failed" if failed else "stopped"
            self.run.write_status(state=self.state, step=self._step(), ended=time.time(),
                                  error=error_text(err) if failed else None)
            self.run.log(traceback.format_exc() if failed else "interrupted")
        if self.tracking is not None:
            tracking, sending = self.tracking, self._sending

            def close() -> None:
                if sending is not None:
                    sending.wait()
                tracking.close(self.state)
            self._guard(close, "stopped")
        return False


# what a device out of memory asks of the user: torch's own message names bytes and allocators, not settings (the
# host's memory is checked before the first step, ``core.step_memory``; a GPU's is met in the step)
OUT_OF_MEMORY_HINT = ("the step did not fit the device's memory: lower train.batch_size, or the crop (fine-tuning: "
                      "data.crop_size) or view size (pretraining: data.image_size)")


def error_text(err: BaseException) -> str:
    """A failed run's error as its status gives it, with what to change when the device ran out of memory (torch's
    ``OutOfMemoryError``, named so that the store needs no torch)."""
    text = f"{type(err).__name__}: {err}"
    return f"{OUT_OF_MEMORY_HINT}. {text}" if type(err).__name__ == "OutOfMemoryError" else text


def check_finite(loss: float, step: int, hint: str) -> None:
    """A non-finite loss ends the run as failed, with what to try."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss became {loss} at step {step}; {hint}")


# ------------------------------------------------------------------------------------------------ command line
def prepared_run(path: str) -> Run:
    """A launcher-made run folder that has not trained yet (its config.yaml says what to do)."""
    run = open_run(path)
    if run.last_checkpoint() is not None:
        raise NotARunError(f"run {run.path} has already trained; continue it with --resume")
    return run


def record_early_failure(args: argparse.Namespace, err: BaseException) -> None:
    """A run folder given on the command line learns why its process stopped before training, unless another
    process is writing it (a live run refused by this command is not this command's to mark failed)."""
    if isinstance(err, ResumeRefused):  # the command was wrong, not the run
        _record_early(args, None, f"resume refused: {err}")
        return
    _record_early(args, "failed", f"could not start: {err}", error=str(err))


def _record_early(args: argparse.Namespace, state: str | None, message: str, **status: Any) -> None:
    """``state`` None: the message is logged and the run's state kept (a resume refused for its overrides)."""
    folder = getattr(args, "resume", None) or getattr(args, "run_dir", None)
    if folder and (Path(folder) / "status.json").is_file():
        run = Run(Path(folder))
        try:
            lock_run(run)
        except RunBusyError:
            return
        recorded = run.status().get("state")
        if state is None:
            run.log(f"{message} (the run stays {recorded})")
            return
        try:
            check_transition(recorded, state)
        except IllegalTransition:  # e.g. a completed run whose resume could not start: its results are as they were
            run.log(f"{message} (the run stays {recorded})")
            return
        run.write_status(state=state, ended=time.time(), **status)
        run.log(message)


def phase_listener(folder: str | Path | None) -> Listener | None:
    """What tells a run folder's ``status.json`` the current phase (``core.phases``); None without a folder, for a
    path that is no run folder (a mistyped ``--resume`` must not create one) and on ranks other than the first."""
    if folder is None or int(os.environ.get("RANK", "0")) != 0 or not (Path(folder) / "status.json").is_file():
        return None
    run = Run(Path(folder))

    def tell(phase: dict[str, Any] | None) -> None:
        try:
            run.write_status(phase=phase)
        except OSError:  # the phase is a courtesy to the watcher; training goes on without it
            pass

    return tell


def start_or_exit(args: argparse.Namespace, start: Callable[[], Any],
                  stop: StopFlag | None = None) -> tuple[Any, int]:
    """``start()`` (open or create the run, build the trainer) or exit code 2 with one line: a run another process
    writes is left untouched; a run folder named on the command line records any other early error. Its long
    phases (generating data, tiling) reach that folder's status as they go, and end at their next chunk when
    ``stop`` is asked (exit 130, the folder's status ``stopped``: nothing was trained)."""
    folder = getattr(args, "run_dir", None) or getattr(args, "resume", None)
    try:
        with report_phases(phase_listener(folder), stop.check if stop is not None else None):
            return start(), 0
    except KeyboardInterrupt:
        _record_early(args, "stopped", "stopped before training started")
        say("stopped before training started: nothing was trained", err=True)
        return None, 130
    except RunBusyError as err:
        say(f"error: {err}", err=True)
        return None, 2
    except EARLY_ERRORS as err:
        record_early_failure(args, err)
        say(f"error: {' '.join(str(err).split())}", err=True)
        return None, 2


def fit_from_cli(trainer: Any, what: str, stop: StopFlag | None = None) -> tuple[int, str]:
    """``trainer.fit`` with SIGTERM / Ctrl-C as a clean stop; (exit code, final state); the run unlocked after."""
    stop = stop or StopFlag().install()
    try:
        with report_phases(phase_listener(trainer.run.path if trainer.run is not None else None)):
            return 0, trainer.fit(stop)
    except KeyboardInterrupt:
        return 130, "stopped"
    except Exception as err:  # recorded in status.json and log.txt by fit()
        log = trainer.run.path / "log.txt" if trainer.run is not None else "the run's log.txt"
        say(f"error: {what} failed: {error_text(err)} (see {log})", err=True)
        return 1, "failed"
    finally:
        stop.restore()
        if trainer.run is not None:
            unlock_run(trainer.run)


def train_from_cli(argv: list[str] | None, parse: Callable[[list[str] | None], argparse.Namespace],
                   start: Callable[[argparse.Namespace, Any], Any], what: str) -> tuple[int, Any | None]:
    """A trainer's whole command line, alone or as one rank of a torchrun launch: a Stop is honoured from the first
    line on, the run is opened (``start(args, env)``) or the command exits 2 with one line, trained, and the group
    left. (exit code: 130 after a stop; the trainer on the first rank after a clean end or stop, else None)."""
    with plain_warnings():
        return _train_from_cli(argv, parse, start, what)


def _train_from_cli(argv: list[str] | None, parse: Callable[[list[str] | None], argparse.Namespace],
                    start: Callable[[argparse.Namespace, Any], Any], what: str) -> tuple[int, Any | None]:
    stop = StopFlag().install()  # a Stop while the run is being opened is remembered, not fatal
    args = parse(argv)
    env = init_distributed()
    trainer, code = start_or_exit(args, lambda: start(args, env), stop)
    if trainer is None:
        stop.restore()
        leave_distributed(env)
        return code, None
    try:
        code, state = fit_from_cli(trainer, what, stop)
    finally:
        leave_distributed(env)
    if code == 130 and env.main:  # stopped mid-step by a second Ctrl-C, or in the work after the last step (its
        # test, the fingerprint), which a single stop ends at its next chunk: a review read "a second Ctrl-C" there
        how = {"second": "at once (a second Ctrl-C)", "interrupt": "at once"}.get(stop.raised or "",
                                                                                 "in its closing work (after training)")
        say(f"stopped {how}: {trainer.run.path}; {_resume_point(trainer.run)}", err=True)
    if code or not env.main:
        return code, None
    say(f"{state}: {trainer.run.path}" + _last_figures(trainer.run)
        + (f" (continue it with --resume {trainer.run.path})" if state == "stopped" else ""))
    from ..analysis.knn_reading import knn_reading  # no torch: the page's words, interval and step-0 encoder too

    if (reading := knn_reading(trainer.run.metrics())) is not None:  # a walkthrough read 66.7 % beside a
        say(f"  {reading}")  # majority class of 61.9 % as a gain: its untrained encoder had scored 71.4 %
    # a stop exits 130 as an interrupted command does (it exited 0: `pretrain && finetune` went on with half a run);
    # under torchrun 0, or its agent would report the group as failed
    return (130 if state == "stopped" and not env.active else 0), trainer


def _resume_point(run: Run) -> str:
    """Where ``--resume`` would continue a run stopped mid-step: its last checkpoint's step, not the status's."""
    last = run.last_checkpoint()
    try:
        step = read_metadata(last)["state"]["step"] if last is not None else None
    except (CheckpointError, KeyError, TypeError):
        step = None
    if last is None:
        return "no checkpoint was written yet, so --resume would start it from step 0"
    where = f"step {step}" if isinstance(step, int) else "its last checkpoint"
    return f"continue it with --resume {run.path} (from {where}, its last checkpoint)"


def _last_figures(run: Any) -> str:
    """The step the run stands at (its status: where ``--resume`` continues) and its last logged loss, for the
    closing line (a pretraining run has no score; its kNN reading follows on a line of its own). The logged step is
    said apart when it is an earlier one: a run stopped at step 24 that logs every 10 steps said "step 20" (now "step
    24, last logged loss 4.862 at step 20")."""
    records = [m for m in run.metrics() if isinstance(m, dict)]
    rows = [m for m in records if "loss" in m and "step" in m]
    if not rows:
        return ""
    step, logged = run.status().get("step"), rows[-1]["step"]
    unit = "epoch" if run.kind() == "probe" else "step"  # a probe's steps are its head's epochs
    at = (f"{unit} {step}, last logged loss {rows[-1]['loss']:.3f} at {unit} {logged}"
          if isinstance(step, int) and step != logged else f"{unit} {logged}, last logged loss {rows[-1]['loss']:.3f}")
    return f"; {at}"
