"""Work done once per server process in the background, so the first user does not wait for it."""
from __future__ import annotations

import threading

import streamlit as st


@st.cache_resource(show_spinner=False)
def start_warmup() -> threading.Thread:
    """Compile umap-learn's numba code in a daemon thread (the first UMAP would otherwise wait for it)."""
    def work() -> None:
        try:
            from core.embeddings import warm_up
        except ImportError:
            return
        try:
            warm_up()
        except Exception as err:  # noqa: BLE001 - a failed warm-up only costs time later
            print(f"warm-up failed: {err}", flush=True)

    thread = threading.Thread(target=work, name="umap-warmup", daemon=True)
    thread.start()
    return thread
