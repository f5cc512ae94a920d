"""One slow job at a time beside the training loop: a checkpoint's serialisation, hashing and fsync (about a
second for ResNet-50 with its optimizer state) no longer stall the step that saves it.

A new job waits for the one before it (so at most one snapshot is held in memory and files land in order), and a
failed job's error is raised at the next ``submit`` or ``wait``: a checkpoint that could not be written is never
lost silently."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class BackgroundJobs:
    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def busy(self) -> bool:
        """Whether the pending job is still running (a caller that may skip a turn asks first)."""
        return self._pending is not None and not self._pending.done()

    def wait(self, quiet: bool = False) -> None:
        """Block until the pending job is done; raise its error unless ``quiet`` (an error already unwinding the
        caller stays the one reported)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            if quiet:
                pending.exception()
            else:
                pending.result()
        except KeyboardInterrupt:  # a second Ctrl-C while the last checkpoint is written: it still lands first,
            pending.exception()    # else the run was unlocked (and could be resumed) before its file was on disk
            raise
