"""The Segment page's last uploaded files, kept across pages, so that a change of model or settings after a visit to
another page segments them again.

Why: Streamlit's file uploader forgets its files when the user leaves the page. The results stayed, but a model
picked after the return then stood above the old model's results, with nothing run (the review found it). The
files' bytes are kept in the session up to ``KEEP_BYTES`` in all; larger sets keep only their results, marked so.
"""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

KEPT = "segment_kept_uploads"  # session_state: [(content id, name, bytes)] of the last files uploaded
SEEN = "segment_kept_ids"  # session_state: the content ids remember() last saw
KEEP_BYTES = 256 * 2 ** 20


def remember(files: list[tuple[str, str, Callable[[], bytes]]]) -> None:
    """Keep these files (content id, name, their bytes' reader) in place of the ones before; none when they are too
    large to keep. Files kept already are not read again (every widget change reruns the page)."""
    ids = [i for i, _, _ in files]
    if st.session_state.get(SEEN) == ids:  # kept already, or judged too large already
        return
    st.session_state[SEEN] = ids
    data = [(i, name, read()) for i, name, read in files]
    if sum(len(d) for _, _, d in data) <= KEEP_BYTES:
        st.session_state[KEPT] = data
    else:
        st.session_state.pop(KEPT, None)


def kept() -> list[tuple[str, str, bytes]]:
    return list(st.session_state.get(KEPT, []))


def forget(*more_keys: str) -> None:
    """Drop the kept files (and the other session keys given, e.g. the results last shown)."""
    for key in (KEPT, SEEN, *more_keys):
        st.session_state.pop(key, None)
