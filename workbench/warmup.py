"""Work done once per server process in the background, so the first user does not wait for it."""
from __future__ import annotations

import gc
import os
import threading

import streamlit as st


@st.cache_resource(show_spinner=False)
def start_warmup() -> threading.Thread:
    """Ready umap-learn's numba code in a daemon thread (the first UMAP would otherwise wait for it): compiled the
    first time on a machine, loaded from numba's disk cache after (``core.analysis.embedding_map.keep_umap_code``).

    torch and the engine are imported here, in the calling thread, before the thread starts: two threads importing
    torch at the same time can see it half-initialised. umap (2 s to import) is left to the thread; pages that
    need it join the thread first (:func:`wait_for_warmup`).
    """
    import torch  # noqa: F401

    from core.analysis.embedding_map import warm_up

    if os.environ.get("FALSE_WB_WARMUP", "1") == "0":  # a short-lived server (the tests' own): the first map
        # compiles what it needs itself, instead of every server spending 10 s of a core on it at start
        thread = threading.Thread(target=freeze_long_lived, name="umap-warmup", daemon=True)
        thread.start()
        return thread

    def work() -> None:
        try:
            import umap  # noqa: F401

            warm_up()
        except Exception as err:  # noqa: BLE001 - a failed warm-up only costs time later
            print(f"warm-up failed: {err}", flush=True)
        freeze_long_lived()

    thread = threading.Thread(target=work, name="umap-warmup", daemon=True)
    thread.start()
    return thread


def freeze_long_lived() -> None:
    """Move every object alive now (torch, plotly, umap modules: ~0.5 M objects) out of the garbage collector's
    view: a full collection then walks only what page views allocate (0.6 s -> 0.01 s on 2 cores)."""
    gc.collect()
    gc.freeze()


def wait_for_warmup() -> None:
    """Block until the warm-up is over (a UMAP started meanwhile would compile the same code again)."""
    start_warmup().join()
