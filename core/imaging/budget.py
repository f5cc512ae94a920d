"""Bounded work per image: a pixel budget checked from the file's header, and a time budget with cancellation.

Why: one upload that decodes to 100 megapixels held a server's only worker for minutes and gigabytes while small
requests waited; the same file in the CLI grew to gigabytes before anything was said. The pixel budget refuses
such files before they are decoded (``core.imaging.imageio`` reads the size from the header); the time budget stops a
request that will not finish in time, as soon as its first windows show how long it needs, and stops the work
of a client that went away.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_MAX_MEGAPIXELS = 50.0
MAX_MEGAPIXELS_ENV = "FALSE_WB_MAX_MEGAPIXELS"


class WorkStopped(RuntimeError):
    """A request stopped before its end (time budget, or its client went away); the message is one line."""


def max_pixels(megapixels: float | None = None) -> int:
    """The pixel budget: ``megapixels`` when given, else $FALSE_WB_MAX_MEGAPIXELS, else 50 megapixels."""
    if megapixels is None:
        text = os.environ.get(MAX_MEGAPIXELS_ENV, "").strip()
        try:
            megapixels = float(text) if text else DEFAULT_MAX_MEGAPIXELS
        except ValueError:
            raise ValueError(f"{MAX_MEGAPIXELS_ENV}={text!r} is not a number of megapixels") from None
    if not 0 < megapixels < 1e6:
        raise ValueError(f"the pixel budget must be above 0 and below 1,000,000 megapixels, got {megapixels:g}")
    return int(megapixels * 1_000_000)


def megapixels_text(pixels: int) -> str:
    return f"{pixels / 1e6:g} MP"


@dataclass
class Deadline:
    """``check(done, total)`` after each batch of windows raises WorkStopped when the request is over its time
    budget, will clearly be (projected from the windows done so far), or ``cancelled()`` says its client left."""

    seconds: float | None
    cancelled: Callable[[], bool] | None = None
    started: float = field(default_factory=time.monotonic)
    min_evidence_s: float = 3.0  # project from at least this long of windows after the first batch
    clock: Callable[[], float] = time.monotonic
    _first: tuple[float, int] | None = None  # (elapsed, windows done) at the first batch's end

    def elapsed(self) -> float:
        return self.clock() - self.started

    def check(self, done: int, total: int) -> None:
        if self.cancelled is not None and self.cancelled():
            raise WorkStopped("cancelled: the client went away, so the work was stopped")
        if self.seconds is None:
            return
        elapsed = self.elapsed()
        if elapsed > self.seconds:
            raise WorkStopped(f"stopped after {elapsed:.0f} s, the time budget of a request here "
                              f"({self.seconds:.0f} s), at window {done} of {total}: use a smaller image or "
                              "`python -m core.segment`, which has no time budget")
        if not (done and total):
            return
        if self._first is None:  # decoding, model choice and the first batch's warm-up end here: not a window's rate
            self._first = (elapsed, done)
            return
        t0, d0 = self._first  # the rate of the windows since (a projection from the start said 519 s for ~135 s)
        if done > d0 and elapsed - t0 >= self.min_evidence_s:
            projected = elapsed + (total - done) * (elapsed - t0) / (done - d0)
            if projected > 1.25 * self.seconds:
                raise WorkStopped(f"stopped early: this image needs about {projected:.0f} s on this machine, over "
                                  f"the time budget of a request here ({self.seconds:.0f} s): use a smaller image "
                                  "or `python -m core.segment`, which has no time budget")

    def wrap(self, progress: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
        """A progress callback that checks the budget first."""
        def both(done: int, total: int) -> None:
            self.check(done, total)
            if progress is not None:
                progress(done, total)
        return both


__all__ = ["DEFAULT_MAX_MEGAPIXELS", "MAX_MEGAPIXELS_ENV", "WorkStopped", "max_pixels", "megapixels_text",
           "Deadline"]


def give_back_memory() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim``); True where it could. Why: after a
    request that decoded a budget-sized image was refused, the server stayed at 3 GB (from 1 GB) though nothing held
    the pixels any more: glibc keeps large freed blocks for reuse once its mmap threshold has grown."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
            _libc = False
    if not _libc:
        return False
    _libc.malloc_trim(0)
    return True


_libc = None
