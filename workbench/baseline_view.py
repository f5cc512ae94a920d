"""A fine-tuning or probe score beside its baselines: a random encoder trained by the same recipe on the same scenes,
and a shipped model of the same data tested on those scenes (``core.seg.baseline``).

The random-encoder baseline is a run of its own (the run's config with ``model.init=random``), found among the runs
or launched here in the background once per recipe (the Fine-tune form launches it with the run by default); while
it runs its progress shows in place of its score. A twin that cannot stand beside the score (tested on other scenes,
or finished without scores) does not count: the reason is said and a new one offered.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core.config import ConfigError
from core.seg.baseline import launch_baseline, random_baseline, shipped_scores
from core.store.run_lock import RunBusyError
from core.store.runs import NotARunError, Run, list_runs, open_run
from workbench.common import kept_fragment, literal
from workbench.monitor import REFRESH_S, run_header


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _points(mine: float, other: float) -> dict[str, Any]:
    """The difference as a grey chip without an arrow: one seed of each on a few scenes is no verdict (a review read
    a green "+0.1" as a gain); a comparison (``core.compare``) gives the interval over seeds."""
    return {"delta": f"{100 * (mine - other):+.1f} points for this run (one seed each: no verdict)",
            "delta_color": "off", "delta_arrow": "off"}


def _start(run_path: str) -> None:
    """The baseline button's callback: launch the random-encoder twin (or resume an unfinished one)."""
    try:
        _, said = launch_baseline(Run(Path(run_path)), list_runs())
    except (OSError, ValueError, ConfigError, RunBusyError, NotARunError) as err:
        st.session_state["baseline-flash"] = f"Not launched: {err}"
        return
    st.session_state["baseline-flash"] = said[0].upper() + said[1:] + "."


def _live(path: str) -> None:
    """The running baseline's phase and progress, redrawn every few seconds on their own (the run it stands beside
    may be finished, so its view does not refresh); the whole page once it has ended."""
    @kept_fragment(run_every=REFRESH_S)
    def body() -> None:
        try:
            twin = open_run(path)
        except NotARunError as err:
            st.caption(literal(str(err)))
            return
        if not twin.is_live():
            st.rerun(scope="app")
        run_header(twin)

    body()


def draw(run: Run, result: dict[str, Any], which: str) -> None:
    """The baselines of the score ``result`` (``which``: test or val) of ``run``."""
    miou = float(result["miou"])
    found = random_baseline(run, list_runs(), which)
    config = run.config()
    shipped = (shipped_scores(result, config.get("data") or {}, config=config, kind=run.kind()) if which == "test"
               else [])
    st.markdown("**Beside what?**")
    cols = st.columns(1 + max(1, len(shipped)))
    first = cols[0]
    how = f"Random encoder: {found.note}."
    if found.state == "self":
        first.metric("Random encoder", "this run", help=found.note)
    elif found.state == "done" and found.record is not None:
        base = float(found.record["miou"])
        first.metric(f"Random encoder, same recipe ({which})", _pct(base), **_points(miou, base),
                     help="The same settings (data, split, protocol, steps, seed) from a random encoder")
    elif found.state == "running" and found.run is not None:
        with first:
            st.caption("Random encoder, same recipe: its background run")
            _live(str(found.run.path))
        how = f"The baseline {found.note}: its score appears here when it has finished."
    else:  # none, unfinished, or a twin that cannot stand beside this score (not-yet, other-scenes): offer one
        label = {"unfinished": "▶ Resume the random-encoder baseline", "none": "Compute the random-encoder baseline"
                 }.get(found.state, "Compute a new random-encoder baseline")
        first.button(label, key=f"baseline-{run.id}", on_click=_start, args=(str(run.path),),
                     help="A background run of this run's settings from a random encoder (about as long as this "
                          "run); computed once per recipe and kept in the runs root")
        how = {"none": f"No baseline yet: {found.note}.", "unfinished": f"The baseline {found.note}."}.get(
            found.state, f"No comparable baseline: {found.note}; a new one can be computed.")
    for col, s in zip(cols[1:] if len(cols) > 1 else [], shipped):
        if s.miou is not None:
            col.metric(f"Shipped {s.label}", _pct(s.miou), **_points(miou, s.miou), help=s.note)
        else:
            col.metric(f"Shipped {s.label}", "—", help=s.note)
    notes = [how] + [f"Shipped {s.label}: {s.note}." for s in shipped]
    st.caption(literal(" ".join(notes)))
    flash = st.session_state.pop("baseline-flash", None)
    if flash:
        (st.error if flash.startswith("Not launched") else st.success)(literal(flash))


__all__ = ["draw"]
