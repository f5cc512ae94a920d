"""The live view of one run: state, progress, Stop / Resume, and its curves, refreshed by a fragment.

Only this fragment reruns every few seconds, so a watched run never makes the rest of the page flicker, and the
view reattaches to any run on disk (it reads the run folder, not a process handle).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from core.analysis.fn_scoring import has_detector
from core.analysis.knn_reading import knn_reading
from core.phases import elapsed_text, eta_seconds, load_words, phase_text, rough_duration
from core.store import launch
from core.store.runs import NotARunError, Run, open_run
from core.store.run_lock import RunBusyError
from core.store.run_state import LIVE_STATES, SHOWN_LIVE, STOPPING
from core.store.run_summary import run_warnings
from workbench.common import (AVERAGE_MIOU, STATE_ICONS, columns_figure, curve_frame, pair_counts_figure, pairs_frame,
                              kept_fragment, records_version, literal, show_error, show_treatment)

# (columns, title, log scale, records) per chart, by run kind. "pairs": every step's counts from fns.jsonl (the
# logged steps of metrics.jsonl would miss the steps between them)
CHARTS: dict[str, Sequence[tuple[Sequence[str], str, bool, str]]] = {
    "pretrain": ((("loss",), "Loss", False, "metrics"), (("lr",), "Learning rate", False, "metrics"),
                 (("images_per_s",), "Images / s", False, "metrics"),
                 (("flagged", "calibrated"), "Flagged and calibrated pairs per step", False, "pairs")),
    "finetune": ((("loss",), "Training loss", False, "metrics"), (("lr",), "Learning rate", False, "metrics"),
                 (("miou", AVERAGE_MIOU), "Validation mIoU", False, "metrics"),
                 (("images_per_s",), "Images / s", False, "metrics")),
}
REFRESH_S = 2.0
KNN_TITLE = "kNN accuracy across scenes (dashed: the majority class)"
KNN_NOTE = ("How to read it: each query tile's dominant class, voted by its 20 nearest bank tiles, which come from other "
            "scenes where the data has several. The dashed line always answers the query tiles' most common class (the "
            "best any constant answer can do); where the scenes' land cover differs, both lines are low. What the "
            "encoder has learned is its rise from step 0 (the untrained encoder), read against the dashed line, not "
            "the height.")
SHARES = {"miou", "knn_acc"}  # charted values in [0, 1], shown in percent
LEGEND_NAMES = {"knn_acc": "kNN accuracy", "knn_baseline": "majority class"}  # record keys, as said in a legend


# (stopping, Stop's help, Resume's help) by run kind; others: a training run's
CONTROL_WORDS = {
    "compare": ("⏹ stopping: each unit running now stops at its next step, with its checkpoint ...",
                "Stop every unit running now at its next step; finished units are kept",
                "Continue: finished pretraining and evaluation units are kept, a unit cut short continues"),
    "probe": ("⏹ stopping ...", "A probe keeps no checkpoint: it ends where it is",
              "A probe keeps no checkpoint: it runs again"),
}
TRAINING_WORDS = ("⏹ stopping at the next step (its checkpoint is written first) ...",
                  "Stop at the next step; the last checkpoint is kept", "Continue from the last checkpoint")


def run_controls(run: Run, state: str, key: str) -> None:
    """Stop for a live run, Resume for a stopped, failed or died one, of any kind (a comparison stops and resumes its
    units through ``core.store.launch`` like a training run)."""
    stopping, stop_help, resume_help = CONTROL_WORDS.get(run.kind(), TRAINING_WORDS)
    if state == STOPPING or (state in LIVE_STATES and launch.stop_requested(run)):
        st.caption(stopping)
        return
    left, right, _ = st.columns([1, 1, 4])
    if state in LIVE_STATES:
        if left.button("⏹ Stop", key=f"{key}-stop", help=stop_help):
            if launch.stop(run):
                st.toast(f"Stop requested for {run.id}")
            else:
                st.warning("The run is not running any more.")
    elif state == "failed" and run.kind() in ("pretrain", "finetune") and run.last_checkpoint() is None:
        # nothing to continue from: Resume would run the same settings into the same failure (a review's data folder
        # of text files, a learning rate of 1e9)
        st.caption("It failed before its first checkpoint: correct what the error names and launch a new run.")
    elif state in ("stopped", "failed", "died"):
        if left.button("▶ Resume", key=f"{key}-resume", help=resume_help):
            try:
                launch.resume(run)
            except (RunBusyError, NotARunError) as err:
                show_error(err)
                return
            st.rerun(scope="app")  # the live view refreshes only when drawn for a live run


@st.cache_resource(max_entries=64, show_spinner=False)
def _figures(run_path: str, kind: str, version: tuple) -> list[Any]:  # noqa: ARG001 - the version keys the cache
    """The run's charts, built once per version of its records for every session (building plotly figures is the
    largest part of drawing this view, and it is redrawn every few seconds while the run trains)."""
    run = Run(Path(run_path))
    frame = curve_frame(run)
    if frame.empty:
        return []
    frames = {"metrics": frame}
    charts = list(CHARTS.get(kind, CHARTS["pretrain"]))
    if kind == "finetune" and not run.validates():  # trained without validation: no chart that waits for one
        charts = [c for c in charts if "miou" not in c[0]]
    if kind == "pretrain" and not has_detector(run.config()):  # SimCLR / MoCo with InfoNCE flag nothing: no
        charts = [c for c in charts if c[3] != "pairs"]  # chart of zeros
    loss = run.config().get("loss") if kind == "pretrain" else None
    treatment = loss.get("treatment", "fncc") if isinstance(loss, dict) else "fncc"
    if "knn_acc" in frame:  # the online kNN monitor, beside the loss
        charts.insert(1, (("knn_acc", "knn_baseline"), KNN_TITLE, False, "metrics"))  # fits a half-width chart
    figures = []
    for keys, title, log_y, source in charts:
        if source == "pairs":  # FNCC's flagged and calibrated; one line for treatments that act on every flag
            figures.append(pair_counts_figure(pairs_frame(run), treatment, log_y=log_y))
            continue
        fig = columns_figure(frames[source], keys, title, log_y=log_y)
        for trace in fig.data:
            if trace.name == "knn_baseline":  # the majority class: a reference line, dashed as the title says
                trace.line.dash = "dash"
            trace.name = LEGEND_NAMES.get(trace.name, trace.name)
        if keys[0] == "images_per_s":  # from zero: an axis of 23.80-23.84 made noise look like a slowdown
            fig.update_yaxes(rangemode="tozero")
        if keys[0] in SHARES:  # scores as the page's other figures give them: in percent
            ys = [v for t in fig.data for v in map(float, t.y if t.y is not None else []) if not math.isnan(v)]
            fig.update_yaxes(tickformat=percent_ticks(ys))
            if not ys:  # no evaluation yet: plotly's empty axis would read -100 % to 400 %
                fig.update_yaxes(range=[0, 1])
                fig.add_annotation(text="none yet: the first evaluation is still to come", showarrow=False,
                                   xref="paper", yref="paper", x=0.5, y=0.5)
        figures.append(fig)
    return figures


def percent_ticks(values: Sequence[float]) -> str:
    """A percent tick format with the decimals the values' spread needs (up to 3): mIoUs of 8.87 % to 8.89 % must
    not all read "9%"."""
    if len(values) < 2 or max(values) == min(values):
        return ".0%"
    step = (max(values) - min(values)) * 100 / 4  # about four ticks, in percent points
    return f".{min(3, max(0, math.ceil(-math.log10(step))))}%"


def single_values(figures: Sequence[Any]) -> list[dict[str, Any]] | None:
    """Each line's one value, when no chart has more than one point (a short run that logged once): four charts of
    a lone dot each say less than a small table. None when some chart has a curve to draw."""
    rows: list[dict[str, Any]] = []
    for fig in figures:
        values = lone_values(fig)
        if values is None:
            return None
        rows += values
    return rows


def lone_values(fig: Any) -> list[dict[str, Any]] | None:
    """A chart's values as table rows when none of its lines has more than one point, else None."""
    title = str(fig.layout.title.text or "")
    percent = str(fig.layout.yaxis.tickformat or "").endswith("%")
    rows = []
    for trace in fig.data:
        xs, ys = list(trace.x if trace.x is not None else []), list(trace.y if trace.y is not None else [])
        if len(ys) > 1:
            return None
        if ys and not math.isnan(float(ys[0])):
            rows.append({"record": title if len(fig.data) == 1 else f"{title}: {trace.name}",
                         "line": str(trace.name) if trace.name in LEGEND_NAMES.values() else title
                         if len(fig.data) == 1 else f"{title}: {trace.name}",  # words, never a bare record key
                         "value": f"{float(ys[0]):.1%}" if percent else f"{float(ys[0]):.4g}", "step": int(xs[0])})
    return rows


def has_points(fig: Any) -> bool:
    """Whether any line of a chart has a value to draw (a fine-tuning run's first records, before its first logged
    step, drew blank axes from -1 to 4 while it ran)."""
    return any(y is not None and not (isinstance(y, float) and math.isnan(y))
               for trace in fig.data for y in (trace.y if trace.y is not None else []))


def _charts(run: Run, kind: str, live: bool = False) -> None:
    figures = _figures(str(run.path), kind, records_version(run))
    # a chart waiting for its first value says so itself (validation: "none yet"); other empty ones are left out
    figures = [fig for fig in figures if has_points(fig) or fig.layout.annotations] if any(
        has_points(fig) for fig in figures) else []
    if not figures:
        st.caption("No curves yet: the first records appear after the first logged step.")
        return
    rows = None if live else single_values(figures)
    if rows:
        st.caption("One record per curve (the run logged once), so its values rather than charts of a single dot:")
        st.dataframe([{k: v for k, v in r.items() if k != "line"} for r in rows], hide_index=True)
        return
    knn = any(str(fig.layout.title.text or "").startswith(KNN_TITLE) for fig in figures)
    lone = {} if live else {n: v for n, fig in enumerate(figures) if (v := lone_values(fig))}
    if lone:  # e.g. a kNN monitor every 50 steps of a 60-step run: one value beside the curves, not a lone dot
        st.caption("Recorded once in this run, so a value rather than a chart of a single dot: " + "; ".join(
            ", ".join(f"{r['line']} {r['value']}" for r in rows) + f" (step {rows[0]['step']})"
            for rows in lone.values()) + ".")
        figures = [fig for n, fig in enumerate(figures) if n not in lone]
    cols = st.columns(2)
    for n, fig in enumerate(figures):
        cols[n % 2].plotly_chart(fig, width="stretch", key=f"chart-{run.id}-{n}")
    if knn:  # the dashed majority-class line's meaning, whether drawn or said as a value
        reading = knn_reading(run.metrics())
        st.caption((f"📏 {reading} " if reading else "") + KNN_NOTE)


def _left(done: float, total: float | None, started: Any) -> str:
    eta = eta_seconds(done, total, float(started)) if isinstance(started, (int, float)) else None
    return f" · about {rough_duration(eta)} left" if eta is not None else ""


def treatment(run: Run) -> None:
    """A pretraining run's treatment (FNCC, eliminate, attract) from the pair counts of every step
    (``common.show_treatment``)."""
    show_treatment(run, pairs_frame(run))


def starting_text(status: dict[str, Any], now: float | None = None) -> str:
    """A run still starting, before its first phase: for how long, and how busy the machine is (a walkthrough at load
    6 read "about 10-20 s" for over a minute)."""
    since = status.get("launched")
    took = f" for {elapsed_text((now or time.time()) - since)}" if isinstance(since, (int, float)) else ""
    return (f"starting{took}: loading Python and the engine, 10-20 s on an idle machine and longer on a busy one "
            f"({load_words()}) ...")


def run_header(run: Run) -> str:
    """State (a pretraining run's method too, as the run tables name it: ``core.config.strategy``), the current phase
    (generating data, tiling, testing) and the step progress, each with its ETA, and the error line of a run;
    returns its state."""
    status, state = run.status(), run.state()
    step, total = status.get("step") or 0, status.get("total_steps")
    method = f" · {literal(str(run.summary()['method']))}" if run.kind() == "pretrain" else ""  # strategy_label
    st.markdown(f"**{run.id}** — {STATE_ICONS.get(state, '')} {state}{method}")
    live = state in SHOWN_LIVE
    phase = status.get("phase") if live else None
    if isinstance(phase, dict) and phase.get("name"):
        done, of = int(phase.get("done") or 0), phase.get("total")
        st.progress(min(1.0, done / of) if of else 0.0, text=phase_text(phase))
    elif state == "starting":
        st.caption(starting_text(status))
    # a probe's head epochs are its steps: its phase bar already counts them, with its own time left (two bars with
    # two estimates, 5 s and 1 min, one above the other: a review)
    # (each is written on its own timer, so their counts may differ by an epoch: the kind and unit decide, not them)
    same = (run.kind() == "probe" and isinstance(phase, dict) and phase.get("unit") == "epoch"
            and phase.get("total") == total)
    if total and not same:
        unit = "unit" if run.kind() == "compare" else "step"
        left = _left(step - (status.get("loop_start_step") or 0), total - (status.get("loop_start_step") or 0),
                     status.get("loop_started")) if live and step < total else ""
        st.progress(min(1.0, step / total), text=f"{unit} {step} / {total}{left}")
    if status.get("error"):
        st.error(literal(str(status["error"])))
    said = run_warnings(run)
    if said:  # what the run warned on its terminal too (a Dubai split by image: only the terminal said it)
        with st.expander(f"⚠️ The run gave {len(said)} warning(s)", expanded=state not in SHOWN_LIVE):
            st.markdown("\n".join(f"- {literal(w)}" for w in said))
    if state == "died":
        st.warning("Its process is gone without a final status (killed, or the machine restarted). "
                   + ("Resume continues; finished units are kept." if run.kind() == "compare" else
                      "Resume continues from the last checkpoint." if run.last_checkpoint() is not None else
                      "It wrote no checkpoint yet: Resume starts it again from step 0 in the same folder."))
    return state


def watch(run_path: str, key: str = "watch", extra: Callable[[Run], None] | None = None,
          launched: str | None = None) -> None:
    """Draw the run now and, while it is live, redraw it every few seconds (``extra`` too: e.g. its scores).
    ``launched``: the page's "Launched ..." line, drawn above the run while it starts and runs (the fragment redraws
    alone, so a line above it stayed over a stopped run, and "It keeps running" over a completed one)."""
    try:
        live_now = open_run(run_path).is_live()
    except NotARunError as err:
        show_error(err)
        return

    @kept_fragment(run_every=REFRESH_S if live_now else None)
    def body() -> None:
        try:
            run = open_run(run_path)
        except NotARunError as err:
            show_error(err)
            return
        if launched and run.state() in LIVE_STATES:  # "it keeps running": while it does (not once done)
            st.success(launched)
        state = run_header(run)
        run_controls(run, state, key)
        if run.kind() == "pretrain":
            treatment(run)
        if run.kind() in CHARTS:  # a comparison's or a probe's own view draws its records
            _charts(run, run.kind(), live=state in SHOWN_LIVE)
        if extra is not None:
            extra(run)
        if state in SHOWN_LIVE:
            st.caption(f"Live: refreshed every {REFRESH_S:.0f} s · {time.strftime('%H:%M:%S')}")

    body()
