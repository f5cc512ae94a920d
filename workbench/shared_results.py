"""Segment results shared by every browser session of one server, by file content, model and settings.

Why: a session keeps its own results, so a new tab (or another user) uploading the same 6-megapixel scene waited
45-62 s for the same answer again (a walkthrough). Results are kept here up to ``MAX_BYTES`` in all, the least
recently used dropped first, and handed out as copies: what one session does to its result (a label score beside
it) never reaches another's. Failures are not kept: a file that failed for lack of memory may work on the next try.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import streamlit as st

MAX_BYTES = 512 * 2 ** 20  # the arrays of about 25 six-megapixel scenes


@st.cache_resource(show_spinner=False)
def _store() -> tuple[OrderedDict[str, tuple[int, Any]], threading.Lock]:
    return OrderedDict(), threading.Lock()


def get(key: str) -> Any | None:
    """A copy of the result kept under ``key``, or None."""
    store, lock = _store()
    with lock:
        hit = store.get(key)
        if hit is None:
            return None
        store.move_to_end(key)
    return copy.deepcopy(hit[1])


def put(key: str, result: Any) -> None:
    """Keep a copy of ``result`` (one over a quarter of ``MAX_BYTES`` is not kept: it would push out the rest)."""
    size = array_bytes(result)
    if size > MAX_BYTES // 4:
        return
    kept = copy.deepcopy(result)
    store, lock = _store()
    with lock:
        store[key] = (size, kept)
        store.move_to_end(key)
        total = sum(n for n, _ in store.values())
        while total > MAX_BYTES and len(store) > 1:
            total -= store.popitem(last=False)[1][0]


def clear() -> None:
    """Forget every result (the tests: each starts from an empty server)."""
    store, lock = _store()
    with lock:
        store.clear()


def array_bytes(obj: Any, depth: int = 0) -> int:
    """The bytes of the numpy arrays in ``obj``: its dataclass fields, dicts and lists, a few levels deep."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if depth > 4:
        return 0
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(array_bytes(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(array_bytes(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(v, depth + 1) for v in obj)
    return 0
