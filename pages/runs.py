"""Runs: every run on disk, filtered, with what it is and how it ended first, then its settings and tags as columns;
several runs' curves of one kind on one chart (smoothed, log scale, grouped by a setting; a linear probe's loss per
epoch); two runs' config diff;
one run's config, log, notes and actions."""
from __future__ import annotations

import streamlit as st

from core.analysis.fn_scoring import TreatmentEffect, has_detector, treatment_effect
from core.store import launch
from core.store.run_compare import all_tags, read_notes
from core.store.run_lock import RunBusyError
from core.store.runs import Run, delete_run, runs_root
from workbench.common import has_records, kept_valid, pairs_frame, pick_run, runs_frame, runs_of, show_error
from workbench.monitor import watch
from workbench.trackers_view import trackers_tab
from workbench.run_compare_view import (CURVE_KINDS, METRIC_LABELS, compare_kind, curve_controls, curve_series,
                                        curves_chart, diff_section, hidden_curves, hidden_note, knn_noise_note,
                                        metrics_of, notes_tab, objective_note, settings_of, with_settings,
                                        without_detector, x_title)


def delete(run_id: str) -> None:
    """The Delete button's callback (it runs before the page is drawn again, so it may turn the tabs back to Status)."""
    run = next((r for r in runs_of() if r.id == run_id), None)
    if run is None:
        st.session_state["runs-flash"] = ("error", f"{run_id} is not there any more.")
        return
    try:
        delete_run(run)
    except (RunBusyError, OSError) as err:
        st.session_state["runs-flash"] = ("error", f"Not deleted: {err}")
        return
    st.session_state["runs-flash"] = ("success", f"Deleted {run_id} and all its files.", "🗑")
    st.session_state["runs-tab"] = "Status"


def written_table(run: Run) -> None:
    table_md = run.path / "table.md"
    if table_md.exists():
        st.markdown(table_md.read_text())


def treatment(run: Run) -> str:
    """A pretraining run's treatment (FALSE's FNCC, eliminate, attract) in a table cell ("≈ SimCLR: 1/40 steps,
    0.03/step"); a dash for runs without a detector (InfoNCE, DCL) and the other kinds."""
    effect = effect_of(run)
    return "—" if effect is None else effect.cell()


def effect_of(run: Run) -> TreatmentEffect | None:
    """How much a pretraining run's treatment acted, from its cached pair counts (a long run's fns.jsonl is tens of
    MB: read once per file version, not on every rerun); None without a detector and for the other kinds."""
    if run.kind() != "pretrain" or not has_detector(run.config()):
        return None
    return treatment_effect(run.config(), pairs_frame(run), run.recorded_step())


st.title("📋 Runs")
flash = st.session_state.pop("runs-flash", None)
if flash:
    (st.success if flash[0] == "success" else st.error)(flash[1], icon=flash[2] if len(flash) > 2 else "🚫")
runs = runs_of()
st.caption(f"{len(runs)} run(s) in `{runs_root()}`")
if not runs:
    st.info("No runs yet. Launch one on the **Pretrain** or **Fine-tune** page, or from a terminal: "
            "`python -m core.pretrain --config configs/demo_cpu.yaml`. The shipped models (their cards, how they "
            "were made and their scores) are on the **Overview** page; the runs that made them are not on this "
            "machine.")
    st.stop()

table = runs_frame(runs)
table.insert(list(table.columns).index("value") + 1, "treatment", [treatment(r) for r in runs])
tags_of = {r.id: read_notes(r)["tags"] for r in runs}
c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2])
# short placeholders: Streamlit's "Choose options" / "No options to select" were cut in narrow columns
# kept across pages (``KEPT_KEYS``), less any value no run has any more
kind_options, state_options = sorted(table["kind"].unique()), sorted(table["state"].unique())
method_options, tag_options = sorted(table["method"].astype(str).unique()), all_tags(tags_of.values())
kinds = c1.multiselect("Kind", kind_options, key=kept_valid("runs-kind", kind_options), placeholder="any")
states = c2.multiselect("State", state_options, key=kept_valid("runs-state", state_options), placeholder="any")
methods = c3.multiselect("Method", method_options, key=kept_valid("runs-method", method_options), placeholder="any")
tags = c4.multiselect("Tag", tag_options, key=kept_valid("runs-tags", tag_options),
                      placeholder="any" if tag_options else "none yet",
                      help="Runs with any of these tags (tag a run in its Notes tab below)")
text = c5.text_input("Name contains", key="runs-text")
shown = table
if kinds:
    shown = shown[shown["kind"].isin(kinds)]
if states:
    shown = shown[shown["state"].isin(states)]
if methods:
    shown = shown[shown["method"].astype(str).isin(methods)]
if text:
    shown = shown[shown["run"].str.contains(text, case=False, regex=False)]
if tags:
    shown = shown[[bool(set(tags_of[r]) & set(tags)) for r in shown["run"]]]
filters = hash((tuple(kinds), tuple(states), tuple(methods), tuple(tags), text))
shown_runs = [r for r in runs if r.id in set(shown["run"])]
settings = settings_of(shown_runs)
shown = with_settings(shown, shown_runs, settings, tags_of, key=f"runs-columns-{filters}")
st.dataframe(shown, hide_index=True, width="stretch", placeholder="—", column_config={
    "run": st.column_config.TextColumn("run", pinned=True),
    "value": st.column_config.TextColumn("value", help="The final metric: a pretraining run's last loss; a "
                                         "fine-tuning run's or a probe's test mIoU (whole test scenes, as the "
                                         "Fine-tune page gives it), its best validation mIoU until it is tested"),
    "treatment": st.column_config.TextColumn(
        "treatment", width="medium",
        help="Runs with a detector (the method column names it and its treatment): steps with a "
                          "treated pair (FNCC: calibrated) of the steps trained, and treated pairs per step; ≈ its "
                          "base method where the treatment changed (almost) nothing"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
})

if len(shown_runs) < len(runs):  # the count above is of every run; a filtered table says how many it shows
    st.caption(f"{len(shown_runs)} of {len(runs)} run(s) shown (filtered)")

st.subheader("Curves")
c0, c1, c2 = st.columns([1, 3, 1])
kind = compare_kind(c0, shown_runs, [r for r in shown_runs if r.kind() in CURVE_KINDS and has_records(r)],
                    key=f"runs-compare-kind-{filters}")
of_kind = [r for r in shown_runs if not kind or r.kind() == kind]
with_curves = [r for r in of_kind if r.kind() in CURVE_KINDS and has_records(r)]
# the choice is kept per filter and kind, so a filter that leaves out a chosen run never shows its curve
picked = c1.multiselect("Runs", [r.id for r in with_curves], default=[r.id for r in with_curves[:2]],
                        key=f"runs-curves-{filters}-{kind}",
                        help="The runs of the table above, of the kind compared, that logged training records")
metric = c2.selectbox("Value", metrics_of(kind, with_curves), key=f"runs-metric-{kind}",
                      format_func=lambda m: METRIC_LABELS.get(m, m),
                      help="miou: validation mIoU of fine-tuning runs; knn_acc: the kNN monitor of pretraining runs; "
                           "flagged, calibrated or treated: the pairs of runs with a detector at every step "
                           "(FNCC calibrates; eliminate and attract treat every flag); a linear probe logs its "
                           "head's loss and lr once per epoch")
if picked:
    weight, log_y, group = curve_controls(settings, picked)
    left_out = without_detector(with_curves, picked, metric)
    series = curve_series(with_curves, [i for i in picked if i not in left_out], metric, weight)
    hidden = hidden_curves(series, metric) if group is None else []
    x = x_title(kind, picked, with_curves)  # a probe logs once per epoch
    st.plotly_chart(curves_chart(series, metric, weight, log_y, group, settings, hidden, x), width="stretch",
                    key="runs-curves-chart")
    note = hidden_note(hidden, metric)
    if note:
        st.info(note, icon="🫥")
    if left_out:
        st.caption(f"Not drawn: {', '.join(left_out)} ran no detector, so it has no flagged pairs (a line at 0 would "
                   "read as a detector that found nothing).")
    by_id = {r.id: r for r in with_curves}
    knn = knn_noise_note([by_id[i] for i in picked if i in by_id]) if metric == "knn_acc" else None
    if knn:
        st.caption("🎲 " + knn)
    scales = objective_note(settings, picked, metric, {i: effect_of(by_id[i]) for i in picked if i in by_id}
                            if metric == "loss" else None)
    if scales:
        st.caption("⚖️ " + scales)
elif not with_curves:
    st.caption("No run of this kind in the table has logged training records." if kind else
               "No run in the table has logged training records." if len(shown) < len(table) else
               "No run has logged training records yet.")

st.subheader("Config diff")
diff_section(of_kind, settings, picked)

st.subheader("One run")
run = pick_run("Run", [r for r in runs if r.id in set(shown["run"])], "runs-one", "No run matches the filters.")
if run is not None:
    tab_live, tab_cfg, tab_log, tab_notes, tab_track, tab_delete = st.tabs(
        ["Status", "Config", "Log", "Notes", "Trackers", "Delete"], key="runs-tab")
    with tab_live:
        if run.kind() in ("pretrain", "finetune"):
            watch(str(run.path), key="runs")
        else:  # a comparison or a probe: state, Stop / Resume, and its table once written
            watch(str(run.path), key="runs", extra=written_table)
    with tab_cfg:
        try:
            st.code(run.config_text(), language="yaml")
        except OSError as err:
            show_error(err, "config.yaml")
    with tab_log:
        log = run.log_text()
        st.code(log[-20000:] or "(empty)", language="text")
        console = launch.console_tail(run)
        if console:
            with st.expander("Console output of its process"):
                st.code(console, language="text")
    with tab_notes:
        notes_tab(run, tags_of)
    with tab_track:
        trackers_tab(run)
    with tab_delete:
        if run.is_live():
            st.info("This run is live; stop it before deleting it.")
        else:
            sure = st.checkbox(f"Yes, delete {run.id} and all its files", key=f"runs-sure-{run.id}")
            st.button("🗑 Delete", disabled=not sure, key=f"runs-delete-{run.id}", on_click=delete, args=(run.id,))
