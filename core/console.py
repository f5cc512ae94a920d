"""Console output that a closed pipe cannot turn into a lost run.

Why: ``python -m core.pretrain ... 2>&1 | head`` closes the pipe after a few lines. The progress bar's next redraw
raised BrokenPipeError inside a training step, and the bar's close raised again before ``status.json`` was written:
the process was gone and its run said "running" until someone resumed it. A bar or a closing line is a courtesy to
whoever watches; once nobody reads, the run goes on quietly and ends with a true status (and its ``log.txt``).
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def _closed_output(err: BaseException) -> bool:
    """A write that failed because the reader went away (or the stream was closed), not a full disk."""
    return isinstance(err, BrokenPipeError) or (isinstance(err, ValueError) and "closed" in str(err))


def silence(stream: Any) -> None:
    """Point the stream's descriptor at /dev/null, so Python's own flush at exit does not print "Exception ignored
    ... BrokenPipeError" (the recipe in Python's signal documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a captured stream (tests) has no descriptor of its own
        pass


class QuietWhenClosed:
    """A text stream that goes silent, not fatal, once its reader has gone: for tqdm bars (``file=``)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError) as err:
                self._lose(err)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError) as err:
                self._lose(err)

    def _lose(self, err: BaseException) -> None:
        if not _closed_output(err):
            raise err
        self.lost = True
        silence(self._stream)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding: as the stream has them (tqdm's width)
        return getattr(self._stream, name)


def bar_stream() -> QuietWhenClosed:
    """Where a progress bar draws: the current stderr (a test's capture included), quiet once its reader is gone."""
    return QuietWhenClosed(sys.stderr)


def say(text: str, err: bool = False) -> None:
    """``print`` for a command's closing lines: nothing, not a traceback, when the reader has gone (``| head``)."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, ValueError) as exc:
        if not _closed_output(exc):
            raise
        silence(stream)


@contextmanager
def plain_warnings() -> Iterator[None]:
    """On a command line a warning is one line, ``warning: ...``: Python's default adds the file and the source line
    of our code that warned (e.g. for every unreadable image skipped), which tells a user nothing."""
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_args, **_kwargs: \
        f"{'warning' if category is UserWarning else category.__name__}: {message}\n"  # a library's kind stays
    try:
        yield
    finally:
        warnings.formatwarning = previous


def count(n: int, word: str) -> str:
    """"1 scene", "2 scenes": a count with its noun in the number it takes (a review read "val 1 scenes")."""
    return f"{n} {word}{'' if n == 1 else 's'}"
