"""The long phases around a training loop (generating data, tiling, testing, fingerprinting) told to whoever
watches the run, not only to the console.

Why: a first run spends minutes generating its data before step 1; the app saw "starting" and nothing else. The
data builders and evaluators draw their bars with ``phase_bar`` (a tqdm); while a trainer has a listener installed
(``report_phases``), every bar's progress also reaches it, throttled, as ``{name, done, total, started}``, which
``core.store.lifecycle`` writes into the run's ``status.json`` (``phase``) for the app's progress bar and ETA.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

Listener = Callable[[dict[str, Any] | None], None]
_listener: Listener | None = None
_current: Any = None  # the bar that told the listener last: only its close ends the phase shown
TELL_EVERY_S = 1.0


@contextmanager
def report_phases(listener: Listener | None) -> Iterator[None]:
    """Bars drawn inside go to ``listener`` too (None: the console only); the phase is cleared at the end."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        if listener is not None:
            listener(None)
        _listener = previous


def eta_seconds(done: float, total: float | None, started: float, now: float | None = None) -> float | None:
    """Time left at the pace so far; None until there is a pace or when the total is unknown."""
    if not total or done <= 0:
        return None
    elapsed = (now if now is not None else time.time()) - started
    return max(0.0, elapsed / done * (total - done))


class phase_bar(tqdm):  # noqa: N801 - used like tqdm
    """A tqdm whose progress also reaches the run's listener (at most once a second, and at its end), even when
    the console bar is off (``disable=True``, e.g. ``--no-progress`` in a launched run)."""

    def __init__(self, *args: Any, desc: str | None = None, total: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, desc=desc, total=total, **kwargs)
        self._name, self._total, self._done = (desc or "working").rstrip(": "), total, 0
        self._started, self._told, self._closed = time.time(), 0.0, False
        self._tell(force=True)

    def _tell(self, force: bool = False) -> None:
        global _current
        if _listener is None:
            return
        now = time.time()
        if force or now - self._told >= TELL_EVERY_S:
            self._told, _current = now, self
            _listener({"name": self._name, "done": self._done, "total": self._total, "started": self._started})

    def close(self) -> None:
        """The phase is over: the watcher stops showing it (a validation between training steps must not stay
        on screen as the current phase)."""
        global _current
        if not getattr(self, "_closed", True) and _listener is not None and _current is self:
            _current = None  # a bar left open on an error path and closed later by the collector clears nothing
            _listener(None)
        self._closed = True
        super().close()

    def step_to(self, done: int, total: int) -> None:
        """A ``progress(done, total)`` callback (as ``evaluate_scenes`` calls it) moving this bar."""
        if self._total != total:
            self._total = self.total = total
        self.update(done - self._done)

    def update(self, n: float | None = 1) -> bool | None:
        out = super().update(n)
        self._done += int(n or 0)
        self._tell(force=self._total is not None and self._done >= self._total)
        return out
