"""The long phases around a training loop (generating data, tiling, testing, fingerprinting) told to whoever
watches the run, not only to the console.

Why: a first run spends minutes generating its data before step 1; the app saw "starting" and nothing else. The
data builders and evaluators draw their bars with ``phase_bar`` (a tqdm); while a trainer has a listener installed
(``report_phases``), every bar's progress also reaches it, throttled, as ``{name, done, total, started}``, which
``core.store.lifecycle`` writes into the run's ``status.json`` (``phase``) for the app's progress bar and ETA.
``phase_text`` says a phase in words ("testing the best model: 3 / 9 scenes, about 1 min left"; a phase whose total
is not known yet says so instead of showing a bare 0).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from .console import QuietWhenClosed, bar_stream

Listener = Callable[[dict[str, Any] | None], None]
TELL_EVERY_S = 1.0


@dataclass
class _Watch:
    """Who hears the phases of the work in this context: no module state, so two runs in one process (tests, the
    comparison's threads) never tell each other's folders."""

    listener: Listener | None
    stop_check: Callable[[], None] | None  # raises KeyboardInterrupt once a Stop was asked (StopFlag.check)
    current: Any = None  # the bar that told the listener last: only its close ends the phase shown


_WATCH: ContextVar[_Watch | None] = ContextVar("false_wb_phases", default=None)


@contextmanager
def report_phases(listener: Listener | None, stop_check: Callable[[], None] | None = None) -> Iterator[None]:
    """Bars drawn inside go to ``listener`` too (None: the console only); the phase is cleared at the end.
    ``stop_check`` (a ``StopFlag.check``): every bar's progress calls it, so a Stop that lands while data is generated
    or tiled ends the phase at its next chunk (``KeyboardInterrupt``) instead of minutes later."""
    token = _WATCH.set(_Watch(listener, stop_check))
    try:
        yield
    finally:
        if listener is not None:
            listener(None)
        _WATCH.reset(token)


@contextmanager
def stop_between_chunks(stop_check: Callable[[], None] | None) -> Iterator[None]:
    """Work after a trainer's last step (the final test, the domain fingerprint) has no step boundary of its own:
    inside, every bar's progress calls ``stop_check``, so a Stop ends that work at its next scene or chunk instead
    of minutes later. Only for work the first rank does alone (a rank stopped while others wait would hang them)."""
    watch = _WATCH.get()
    if stop_check is None:
        yield
    elif watch is None:
        with report_phases(None, stop_check):
            yield
    else:
        before, watch.stop_check = watch.stop_check, stop_check
        try:
            yield
        finally:
            watch.stop_check = before


def check_stop() -> None:
    """``KeyboardInterrupt`` if a Stop was asked during a phase that honours it (``report_phases(stop_check=...)``):
    for loops that wait on other processes and may see no progress for seconds."""
    watch = _WATCH.get()
    if watch is not None and watch.stop_check is not None:
        watch.stop_check()


FIRST_ETA_SHARE = 0.05


def eta_seconds(done: float, total: float | None, started: float, now: float | None = None) -> float | None:
    """Time left at the pace so far; None when the total is unknown and until ``FIRST_ETA_SHARE`` of it is done: the
    first items carry the start-up (a walkthrough read "about 14 min left" at 16 of 2,000 generated tiles, which then
    took about a minute in all)."""
    if not total or done <= 0 or done < FIRST_ETA_SHARE * total:
        return None
    elapsed = (now if now is not None else time.time()) - started
    return max(0.0, elapsed / done * (total - done))


def rough_duration(seconds: float) -> str:
    """An estimate as people say it: "5 s" to "55 s" in steps of 5, then whole minutes, then hours and minutes
    (a time left read to the second pretends a precision the pace does not have)."""
    s = max(0.0, float(seconds))
    if s < 57.5:
        return f"{max(5, round(s / 5) * 5)} s"
    if s < 3570:
        return f"{max(1, round(s / 60))} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


def elapsed_text(seconds: float) -> str:
    """Time spent so far, to the second: "42 s", "3 min 05 s", "1 h 02 min"."""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def load_words() -> str:
    """How loaded this machine is, for a timing that must say it: "load average 1.4 on 2 cores" (the last minute's;
    a review found a comparison's "0.9 min on this machine" with no word of the load it ran under)."""
    cores = os.cpu_count() or 1
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {cores} core{'s' if cores > 1 else ''}"
    except (OSError, AttributeError):  # no load average on this system (Windows)
        return f"{cores} core{'s' if cores > 1 else ''}, load unknown"


def _units(unit: Any, n: float) -> str:
    """A tqdm unit as a word after a count: "scene" -> "scenes"; tqdm's default "it" is no word."""
    if not isinstance(unit, str) or not unit or unit == "it":
        return ""
    if n == 1:
        return f" {unit}"
    if unit.endswith(("s", "sh", "ch", "x")) and unit != "epoch":  # batches, but epochs (a hard "ch")
        return f" {unit}es"
    return f" {unit}s"


def phase_text(phase: dict[str, Any], now: float | None = None) -> str:
    """A phase of ``status.json`` in words: "testing the best model: 3 / 9 scenes, about 1 min left"; with no
    total yet: "testing the best model: total not known yet, 12 s so far" (or "5 scenes done, ..."), never a
    bare 0."""
    name = str(phase.get("name") or "working")
    done, total, started = int(phase.get("done") or 0), phase.get("total"), phase.get("started")
    now = time.time() if now is None else now
    spent = now - float(started) if isinstance(started, (int, float)) else None
    so_far = f", {elapsed_text(spent)} so far" if spent is not None else ""
    if not total:
        counted = f"{done}{_units(phase.get('unit'), done)} done (total not known yet)" if done else \
            "total not known yet"
        return f"{name}: {counted}{so_far}"
    text = f"{name}: {done} / {total}{_units(phase.get('unit'), total)}"
    eta = eta_seconds(done, total, float(started), now) if isinstance(started, (int, float)) else None
    if eta is not None and done < total:
        return f"{text}, about {rough_duration(eta)} left"
    return text + (so_far if done < total else "")


class phase_bar(tqdm):  # noqa: N801 - used like tqdm
    """A tqdm whose progress also reaches the run's listener (at most once a second, and at its end), even when
    the console bar is off (``disable=True``, e.g. ``--no-progress`` in a launched run)."""

    def __init__(self, *args: Any, desc: str | None = None, total: float | None = None, **kwargs: Any) -> None:
        given = kwargs.get("file")  # a closed pipe (`| head`) must not end the work it watches, whatever the stream
        kwargs["file"] = bar_stream() if given is None else given if isinstance(given, QuietWhenClosed) \
            else QuietWhenClosed(given)
        if not kwargs.get("disable"):  # drawn on a terminal only: in a pipe or a file its redraws are one long line
            kwargs["disable"] = None    # (tqdm's None: off where the stream is no terminal)
        super().__init__(*args, desc=desc, total=total, **kwargs)
        self._unit = kwargs.get("unit", "it")  # a disabled tqdm keeps no attributes of its own
        self._name, self._total, self._done = (desc or "working").rstrip(": "), total, 0
        self._started, self._told, self._closed = time.time(), 0.0, False
        self._tell(force=True)

    def _tell(self, force: bool = False) -> None:
        watch = _WATCH.get()
        if watch is None or watch.listener is None:
            return
        now = time.time()
        if force or now - self._told >= TELL_EVERY_S:
            self._told, watch.current = now, self
            watch.listener({"name": self._name, "done": self._done, "total": self._total, "started": self._started,
                       "unit": self._unit})

    def close(self) -> None:
        """The phase is over: the watcher stops showing it (a validation between training steps must not stay
        on screen as the current phase)."""
        watch = _WATCH.get()
        if not getattr(self, "_closed", True) and watch is not None and watch.listener is not None \
                and watch.current is self:
            watch.current = None  # a bar left open on an error path and closed later by the collector clears nothing
            watch.listener(None)
        self._closed = True
        super().close()

    def step_to(self, done: int, total: int) -> None:
        """A ``progress(done, total)`` callback (as ``evaluate_scenes`` calls it) moving this bar."""
        if self._total != total:  # the total is known now: the watcher hears it at once, not a second later
            self._total = self.total = total
            self.update(done - self._done)
            self._tell(force=True)
            return
        self.update(done - self._done)

    def update(self, n: float | None = 1) -> bool | None:
        out = super().update(n)
        self._done += int(n or 0)
        self._tell(force=self._total is not None and self._done >= self._total)
        check_stop()
        return out
