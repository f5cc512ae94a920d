"""Runs: every run on disk, filtered; several runs' curves on one chart; one run's config, log and actions."""
from __future__ import annotations

import streamlit as st

from core.store import launch
from core.store.runs import delete_run, runs_root
from core.store.run_lock import RunBusyError
from workbench.common import curve_frame, curves_figure, has_records, pick_run, runs_frame, runs_of, show_error
from workbench.monitor import run_header, watch


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
    st.session_state["runs-flash"] = ("success", f"Deleted {run_id} and all its files.")
    st.session_state["runs-tab"] = "Status"


st.title("📋 Runs")
flash = st.session_state.pop("runs-flash", None)
if flash:
    (st.success if flash[0] == "success" else st.error)(flash[1], icon="🗑" if flash[0] == "success" else "🚫")
runs = runs_of()
st.caption(f"{len(runs)} run(s) in `{runs_root()}`")
if not runs:
    st.info("No runs yet. Launch one on the **Pretrain** or **Fine-tune** page, or from a terminal: "
            "`python -m core.pretrain --config configs/demo_cpu.yaml`.")
    st.stop()

table = runs_frame(runs)
c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
kinds = c1.multiselect("Kind", sorted(table["kind"].unique()), key="runs-kind")
states = c2.multiselect("State", sorted(table["state"].unique()), key="runs-state")
methods = c3.multiselect("Method", sorted(table["method"].astype(str).unique()), key="runs-method")
text = c4.text_input("Name contains", key="runs-text")
shown = table
if kinds:
    shown = shown[shown["kind"].isin(kinds)]
if states:
    shown = shown[shown["state"].isin(states)]
if methods:
    shown = shown[shown["method"].astype(str).isin(methods)]
if text:
    shown = shown[shown["run"].str.contains(text, case=False, regex=False)]
st.dataframe(shown, hide_index=True, width="stretch", column_config={
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "value": st.column_config.NumberColumn("value", format="%.4f"),
    "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
})

st.subheader("Curves")
listed = set(shown["run"])
with_curves = [r for r in runs if r.id in listed and r.kind() in ("pretrain", "finetune") and has_records(r)]
c1, c2 = st.columns([3, 1])
# the choice is kept per filter, so a filter that leaves out a chosen run never shows its curve
picked = c1.multiselect("Runs", [r.id for r in with_curves], default=[r.id for r in with_curves[:2]],
                        key=f"runs-curves-{hash((tuple(kinds), tuple(states), tuple(methods), text))}",
                        help="The runs of the table above that logged training records")
metric = c2.selectbox("Value", ["loss", "lr", "images_per_s", "flagged", "calibrated", "pos_cos", "neg_cos",
                                "miou"], key="runs-metric", help="miou: validation mIoU of fine-tuning runs")
if picked:
    series = {r.id: curve_frame(r) for r in with_curves if r.id in picked}
    st.plotly_chart(curves_figure(series, metric, metric), width="stretch", key="runs-curves-chart")
elif not with_curves:
    st.caption("No run in the table has logged training records." if len(shown) < len(table) else
               "No run has logged training records yet.")

st.subheader("One run")
run = pick_run("Run", [r for r in runs if r.id in set(shown["run"])], "runs-one", "No run matches the filters.")
if run is not None:
    tab_live, tab_cfg, tab_log, tab_delete = st.tabs(["Status", "Config", "Log", "Delete"], key="runs-tab")
    with tab_live:
        if run.kind() in ("pretrain", "finetune"):
            watch(str(run.path), key="runs")
        else:
            run_header(run)
            table_md = run.path / "table.md"
            if table_md.exists():
                st.markdown(table_md.read_text())
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
    with tab_delete:
        if run.is_live():
            st.info("This run is live; stop it before deleting it.")
        else:
            sure = st.checkbox(f"Yes, delete {run.id} and all its files", key=f"runs-sure-{run.id}")
            st.button("🗑 Delete", disabled=not sure, key=f"runs-delete-{run.id}", on_click=delete, args=(run.id,))
