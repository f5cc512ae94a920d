"""The False negatives page's side-by-side part: a second run's detector beside the first's, drawing
``core.analysis.fn_compare`` (same batches: both runs' precision, recall and reference selectors in one table and
chart; other batches: said, and only each run against its own selectors)."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.analysis import fn_compare
from core.analysis.fn_report import FlagReportError
from core.analysis.fn_scoring import has_detector
from core.config import ConfigError
from core.store.runs import Run
from workbench.common import STAY_NOTE, kept_valid, runs_of, show_error, shows_errors

NONE = "—"
RUN_COLOURS = ("#9467bd", "#17becf")  # not the selectors' colours above (red there is the flags, not run A)


def _has_flags(run: Run) -> bool:
    path = run.path / "fns.jsonl"
    return has_detector(run.config()) and path.is_file() and path.stat().st_size > 0


def comparison_figure(comparison: fn_compare.FlagComparison) -> go.Figure:
    """Precision per selector, one bar group per selector and a colour per run, 95 % intervals."""
    bars = comparison.bars()
    fig = go.Figure()
    for colour, name in zip(RUN_COLOURS, comparison.names()):
        part = bars[bars["run"] == name]
        fig.add_trace(go.Bar(
            x=part["selector"], y=part["precision"], name=name, marker_color=colour,
            error_y=dict(type="data", symmetric=False, array=part["hi"] - part["precision"],
                         arrayminus=part["precision"] - part["lo"], thickness=1),
            customdata=part[["pairs", "unit"]].to_numpy(),  # a pick or a tile pair, as the run counts its flags
            hovertemplate="%{x}: %{y:.3f} of %{customdata[0]} %{customdata[1]}s<extra></extra>"))
    title = ("Same-class share on the same batches (95 % Wilson intervals; random and oracle: exact "
             "expectations)") if comparison.same_batches else \
        "Each run on its own batches: compare each run's flags with its own selectors, not across runs"
    fig.update_layout(barmode="group", height=340, yaxis_range=[0, 1.05], yaxis_title="same dominant class",
                      title=title, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


@shows_errors
def compare_section(run: Run) -> None:
    """A second-run picker; both runs' flag reports side by side (computed on request, cached in each run)."""
    st.subheader("Side by side with another run")
    others = [r for r in runs_of("pretrain") if r.id != run.id and _has_flags(r)]
    if not others:
        st.caption("No other pretraining run with flagged pairs to put beside this one. Pretrain the same data "
                   "with the same seed and another `loss.detector` to compare detectors on the same batches.")
        return
    options = [NONE, *(r.id for r in others)]
    chosen = st.selectbox("Second run", options, key=kept_valid(f"fn-second-{run.id}", options, NONE),
                          help="Runs of the same data, seed, batch size, ranks and method trained on the same "
                               "batches: their detectors are compared pair for pair on them")
    if chosen == NONE:
        return
    other = next(r for r in others if r.id == chosen)
    try:
        comparison = fn_compare.compare_flags(run, other)
    except (ConfigError, FlagReportError) as err:
        show_error(err, "Cannot compare these runs")
        return
    if comparison.same_batches:
        st.caption(f"Same batches: both runs drew the same tiles at every step; compared on steps 1–"
                   f"{comparison.shared_steps}.")
    else:
        st.warning("Not the same batches (" + "; ".join(comparison.differences) + "): each run's figures are "
                   "measured on its own tiles, so only each run against its own reference selectors compares.",
                   icon="↔️")
    if not comparison.complete:
        if not st.button("📐 Score both runs side by side", key=f"fn-compare-go-{run.id}", type="primary",
                         help="Rebuilds the batches of both runs and scores their flags and the reference selectors "
                              "(seconds to a minute each); the results are kept in the run folders"):
            return
        bar = st.progress(0.0, text=f"starting… ({STAY_NOTE})")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done} / {total} ({STAY_NOTE})")

        try:
            comparison = fn_compare.compare_flags(run, other, compute=True, progress=progress)
        except FlagReportError as err:
            bar.empty()
            show_error(err, "Cannot score the flags")
            return
        bar.empty()
    st.markdown(comparison.summary())
    st.dataframe(comparison.table(), width="stretch", key=f"fn-compare-table-{run.id}")
    st.plotly_chart(comparison_figure(comparison), width="stretch", key=f"fn-compare-chart-{run.id}")
    st.caption(f"A: `{comparison.runs[0]}` · B: `{comparison.runs[1]}`" +
               "".join(f" · {n}" for n in comparison.notes))
