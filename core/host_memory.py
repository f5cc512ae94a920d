"""Host memory that a training process reuses instead of handing back: glibc's malloc told to keep freed blocks.

Why: glibc serves a block above its mmap threshold (128 KiB, rising to at most 32 MiB) with fresh pages and unmaps
it on free, and trims the top of its heap past twice that threshold. A CPU training step makes and frees the same
large buffers every step (views, activations, gradients), so every step page-faulted them in again: 26,000-41,000
faults a step of the demo preset on 2 cores, 215 with blocks kept, and the trainer ran 1.05-1.11x as fast (the bare
loop 1.05-1.10x; `bench/host_memory.py`, two runs of 3 pairs side by side, session 45). With ``M_MMAP_MAX = 0`` the main
arena serves every block from its heap (a thread's arena still maps a block above its 64 MiB heap), and a 1 GiB
``M_TRIM_THRESHOLD`` keeps freed heap memory for the next step. The cost is memory: blocks freed inside the heap are
reused by blocks no larger, and up to 1 GiB at its top is kept, so the demo trainer's peak resident memory was
1.87 GB against 1.71 GB. Hence only training processes call it, at their entry (``false-wb`` for pretrain, finetune,
compare and probe, and those modules run as ``__main__``, as the app's launcher starts them), never a library call:
the app, the demo and the tests keep the system malloc. Elsewhere than glibc, or with another allocator preloaded
(any ``LD_PRELOAD``, e.g. jemalloc or tcmalloc), it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP_UP_TO = 1 << 30  # bytes of freed heap memory kept rather than trimmed (mallopt takes an int)

_applied = False


def _glibc() -> ctypes.CDLL | None:
    """glibc's malloc, when it is this process's allocator."""
    if not sys.platform.startswith("linux") or os.environ.get("LD_PRELOAD", "").strip():
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # absent outside glibc
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_host_memory() -> bool:
    """Make this process's malloc reuse freed blocks (once; later calls are free). True where it applies (glibc,
    nothing in ``LD_PRELOAD``)."""
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
    return _applied


SYSTEM_MALLOC_HELP = "leave malloc as it is (the training commands keep freed host memory: core/host_memory.py)"


def keep_unless(system_malloc: bool) -> bool:
    """A benchmark's ``--system-malloc`` choice: as the training commands do unless it is given; True when kept."""
    return False if system_malloc else keep_freed_host_memory()


def kept_words(kept: bool) -> str:
    """How a benchmark's header names the choice."""
    return "kept (core/host_memory.py)" if kept else "returned (the system malloc)"


__all__ = ["keep_freed_host_memory", "keep_unless", "kept_words", "SYSTEM_MALLOC_HELP"]
