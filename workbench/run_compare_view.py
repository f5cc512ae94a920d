"""The Runs page's comparison parts: settings as table columns, curves smoothed / in log scale / grouped by a
setting with mean and spread, the config diff of two runs, and the tags and note of one run
(``core.store.run_compare`` does the work; this only draws it)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.store.run_compare import (
    all_tags,
    config_diff,
    differing_keys,
    flat_settings,
    group_curve,
    groups_of,
    read_notes,
    smooth,
    write_notes,
)
from core.store.runs import Run
from workbench.common import COLOURS, curve_frame, curves_figure

MAX_DEFAULT_COLUMNS = 10


def settings_of(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Each run's settings as dotted keys."""
    return {r.id: flat_settings(r.config()) for r in runs}


def with_settings(table: pd.DataFrame, runs: Sequence[Run], settings: dict[str, dict[str, Any]],
                  tags_of: dict[str, list[str]], key: str) -> pd.DataFrame:
    """The runs table with tags and the settings the user picked as columns (by default the ones that differ
    between the runs shown)."""
    shown = [settings[r.id] for r in runs if settings.get(r.id)]  # a run whose config is unreadable has none
    every = sorted({k for s in shown for k in s})
    differ = differing_keys(shown)
    columns = st.multiselect(
        "Settings as columns", every, default=differ[:MAX_DEFAULT_COLUMNS], key=key,
        help=f"By default the settings that differ between the runs listed ({len(differ)} of {len(every)}"
             + (f"; the first {MAX_DEFAULT_COLUMNS} shown" if len(differ) > MAX_DEFAULT_COLUMNS else "") + ")")
    out = table.copy()
    out.insert(1, "tags", [", ".join(tags_of.get(r.id, [])) for r in runs])
    for i, col in enumerate(columns):  # right after the run and its tags, where they are read with the name
        out.insert(2 + i, col, _column([settings.get(r.id, {}).get(col) for r in runs]))
    return out


def _column(values: list[Any]) -> list[Any]:
    """One type per column: numbers when every value set is a number (missing ones empty), else text (missing ones
    a dash)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if all(number(v) for v in values if v is not None) and any(v is not None for v in values):
        return [float("nan") if v is None else v for v in values]
    return ["—" if v is None else str(v) for v in values]


def curve_controls(settings: dict[str, dict[str, Any]], picked: Sequence[str]) -> tuple[float, bool, str | None]:
    """Smoothing, log scale and group-by for the curves chart."""
    c1, c2, c3 = st.columns([2, 1, 2])
    weight = c1.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="runs-smooth",
                       help="Exponential moving average as in TensorBoard (0 = the values as logged)")
    log_y = c2.checkbox("Log scale", key="runs-log")
    keys = differing_keys([settings[p] for p in picked if p in settings]) if len(picked) > 1 else []
    group = c3.selectbox("Group by", ["(no grouping)", *keys], key="runs-group",
                         help="One line per value of a setting among the chosen runs: the mean over its runs, "
                              "the band ± one standard deviation (steps all of them logged)")
    return weight, log_y, None if group == "(no grouping)" else group


def _values(frame: pd.DataFrame, metric: str, weight: float) -> pd.DataFrame:
    part = frame[["step", metric]].dropna().sort_values("step") if metric in frame else pd.DataFrame()
    if part.empty:
        return pd.DataFrame(columns=["step", metric])
    return pd.DataFrame({"step": part["step"].to_numpy(), metric: smooth(part[metric].tolist(), weight)})


def curves_chart(runs: Sequence[Run], picked: Sequence[str], metric: str, weight: float, log_y: bool,
                 group: str | None, settings: dict[str, dict[str, Any]]) -> go.Figure:
    """The chosen runs' curves of ``metric``, smoothed; grouped when a setting is given."""
    series = {r.id: _values(curve_frame(r), metric, weight) for r in runs if r.id in picked}
    title = metric + (f" (smoothed {weight:.2f})" if weight else "")
    if group is None:
        return curves_figure(series, metric, title, log_y=log_y)
    fig = go.Figure()
    for n, (value, ids) in enumerate(sorted(groups_of({i: settings[i] for i in series}, group).items())):
        rows = group_curve([list(zip(series[i]["step"], series[i][metric])) for i in ids])
        if not rows:
            continue
        colour = COLOURS[n % len(COLOURS)]
        steps = [r["step"] for r in rows]
        lo = [r["mean"] - r["std"] for r in rows]
        hi = [r["mean"] + r["std"] for r in rows]
        if log_y:  # a band reaching 0 or below cannot be drawn on a log axis
            lo = [v if v > 0 else math.nan for v in lo]
        fig.add_trace(go.Scatter(x=steps + steps[::-1], y=hi + lo[::-1], fill="toself", fillcolor=colour,
                                 opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=steps, y=[r["mean"] for r in rows], mode="lines+markers" if len(rows) < 30
                                 else "lines", name=f"{group}={value} ({len(ids)} run{'s' if len(ids) > 1 else ''})",
                                 line=dict(color=colour)))
    fig.update_layout(title=f"{title}: mean ± sd by {group}", height=300, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="step", legend=dict(orientation="h", y=-0.3))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def diff_section(runs: Sequence[Run], settings: dict[str, dict[str, Any]], picked: Sequence[str]) -> None:
    """Two runs' configs side by side, only the settings that differ."""
    ids = [r.id for r in runs]
    if len(ids) < 2:
        st.caption("The config diff needs two runs in the table.")
        return
    first = [i for i in picked if i in ids][:2]
    a0, b0 = (first + [i for i in ids if i not in first])[:2]
    c1, c2 = st.columns(2)
    a = c1.selectbox("Run A", ids, index=ids.index(a0), key="runs-diff-a")
    b = c2.selectbox("Run B", ids, index=ids.index(b0), key="runs-diff-b")
    if a == b:
        st.caption("Pick two different runs.")
        return
    by_id = {r.id: r for r in runs}
    rows = config_diff(by_id[a].config(), by_id[b].config())
    rows = [r for r in rows if r[0] != "name"]
    if not rows:
        st.success("The two configs are the same (apart from the name).")
        return
    st.dataframe(pd.DataFrame([(k, _text(x), _text(y)) for k, x, y in rows], columns=["setting", a, b]),
                 hide_index=True, width="stretch")
    st.caption(f"{len(rows)} setting(s) differ; {len(settings.get(a, {}))} settings in A, "
               f"{len(settings.get(b, {}))} in B.")


def _text(value: Any) -> str:
    return "(not set)" if value is None else str(value)


def _save_notes(run: Run) -> None:
    """The Save button's callback: it runs before the page is drawn again, so the table shows the new tags."""
    tags, note = st.session_state[f"runs-tags-{run.id}"], st.session_state[f"runs-note-{run.id}"]
    try:
        saved = write_notes(run, tags, note)
    except (ValueError, OSError) as err:
        st.session_state["runs-flash"] = ("error", f"Tags and note of {run.id} not saved: {err}")
        return
    done = f"Saved {run.id}: {len(saved['tags'])} tag(s), a note of {len(saved['note'])} characters."
    st.session_state["runs-flash"] = ("success", done, "🏷️")


def notes_tab(run: Run, tags_of: dict[str, list[str]]) -> None:
    """Tags (new ones typed in: every run's tags are offered) and a free note for one run, saved in its
    ``notes.json``."""
    notes = read_notes(run)
    with st.form(f"runs-notes-{run.id}", enter_to_submit=False, border=False):
        st.multiselect("Tags", all_tags([*tags_of.values(), notes["tags"]]),
                       default=notes["tags"], accept_new_options=True, key=f"runs-tags-{run.id}",
                       help="Type a new tag and press Enter to add it; tags can filter the table above")
        st.text_area("Note", notes["note"], key=f"runs-note-{run.id}", height=120)
        st.form_submit_button("Save tags and note", key=f"runs-notes-save-{run.id}", on_click=_save_notes,
                              args=(run,))
