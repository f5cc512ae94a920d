"""The "Data sources" panel: add a folder of one's own imagery from the browser, see what is in it, use it.

The list lives in ``core.store.sources`` (a settings file under the data root); this draws it. Buttons act in
callbacks, which run before the page is drawn again, so "Use" can fill the form's fields.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from core.store.sources import SourceError, SourceInfo, add_source, list_sources, remove_source, settings_problem


def _not_images(s: SourceInfo) -> str:
    return f" ({s.not_images} file(s) named like images are not, and are skipped)" if s.not_images else ""


def source_label(s: SourceInfo) -> str:
    bands = f" · bands {', '.join(s.bands)}" if s.bands else ""
    return (f"{s.path} · {s.format} · {s.images} image(s){_not_images(s)} · {'labels' if s.labels else 'no labels'}"
            f"{bands}")


def _add(key: str) -> None:
    try:
        info = add_source(st.session_state.get(f"{key}-source-path", ""))
    except SourceError as err:
        st.session_state[f"{key}-source-flash"] = ("error", f"Not added: {err}")
        return
    st.session_state[f"{key}-source-flash"] = ("success", f"Added {info.path}: {info.format}, {info.images} "
                                                          f"image(s){', with labels' if info.labels else ''}"
                                                          f"{_not_images(info)}.")
    st.session_state[f"{key}-source-pick"] = info.path


def _remove(key: str) -> None:
    path = st.session_state.get(f"{key}-source-pick")
    if path and remove_source(path):
        st.session_state[f"{key}-source-flash"] = ("success", f"Removed {path} from the sources (its files are "
                                                              "untouched).")
        st.session_state.pop(f"{key}-source-pick", None)


def data_sources(key: str, use: Callable[[SourceInfo], None] | None = None, use_label: str = "Use") -> None:
    """The panel; ``use(source)`` runs when its Use button is pressed (e.g. filling a form's data fields)."""
    sources = list_sources()  # before the warning: reading is what sets a bad file aside
    problem = settings_problem()
    if problem:
        st.warning(problem, icon="⚠️")  # outside the fold: the user must see it without opening the panel
    # tracked (a rerun when folded), so the page can keep it open across a visit to another page
    with st.expander(f"📁 Data sources: your own image folders ({len(sources)})", key=f"{key}-sources-open",
                     on_change="rerun"):
        st.caption("The workbench reads only its own folders and the folders added here (kept in sources.json "
                   "under the data root). Add the folder that holds your images (a folder of PNG/JPEG/TIFF, an "
                   "images/ + masks/ pair, or DeepGlobe's layout).")
        with st.form(f"{key}-source-form", border=False):  # Enter in the field adds the folder, as ➕ Add does
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            c1.text_input("Folder to add", key=f"{key}-source-path", placeholder="/data/my_tiles")
            c2.form_submit_button("➕ Add", key=f"{key}-source-add", on_click=_add, args=(key,), width="stretch")
        flash = st.session_state.pop(f"{key}-source-flash", None)
        if flash:
            {"success": st.success, "warning": st.warning}.get(flash[0], st.error)(flash[1])
        if not sources:
            st.caption("No data sources yet.")
            return
        st.dataframe(pd.DataFrame([{"folder": s.path, "format": s.format, "images": s.images,
                                    "labels": "yes" if s.labels else "no",
                                    "bands": ", ".join(s.bands) if s.bands else "R, G, B"} for s in sources]),
                     hide_index=True, width="stretch", key=f"{key}-sources-table")
        paths = [s.path for s in sources]
        if st.session_state.get(f"{key}-source-pick") not in paths:
            st.session_state.pop(f"{key}-source-pick", None)
        c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
        pick = c1.selectbox("Source", paths, key=f"{key}-source-pick",
                            format_func=lambda p: source_label(sources[paths.index(p)]))
        chosen = sources[paths.index(pick)]
        if use is not None:
            c2.button(use_label, key=f"{key}-source-use", on_click=use, args=(chosen,), type="primary",
                      width="stretch", disabled=chosen.images == 0)
        c3.button("Remove", key=f"{key}-source-remove", on_click=_remove, args=(key,), width="stretch")
