"""The Runs page's Trackers tab: where a run was sent (TensorBoard, MLflow) and how to open it there, and sending a
finished run that was not (``core.store.track``, the same path as ``false-wb track``)."""
from __future__ import annotations

import streamlit as st

from core.store.runs import Run
from core.store.track import track
from core.store.trackers import TRACKERS, where_tracked

from .common import literal, show_error


def trackers_tab(run: Run) -> None:
    top = st.container()  # filled last, so a run sent just now is shown as sent
    if run.is_live():
        st.info("A live run is sent by its own trainer (train.trackers); send this one once it has ended.")
    else:
        _send_form(run)
    with top:
        _where(run)


def _where(run: Run) -> None:
    where = where_tracked(run)
    if not where:
        st.caption("Not sent to a tracker. Launch with `train.trackers: [tensorboard, mlflow]` to track a run as it "
                   "trains, or send it now that it has ended.")
        return
    for name, (what, command) in where.items():
        st.markdown(f"**{name}**: {literal(what)}")
        st.code(command, language="bash")
    if "mlflow" in where:
        st.caption("The MLflow UI comes with the full `mlflow` package (`pip install mlflow`); the workbench "
                   "itself needs only `mlflow-skinny`.")


def _send_form(run: Run) -> None:
    with st.form(f"track-{run.id}", border=False):
        names = st.multiselect("Send to", list(TRACKERS), default=["tensorboard"], key=f"track-to-{run.id}")
        uri = st.text_input("MLflow tracking URI", "", key=f"track-uri-{run.id}",
                            placeholder="empty: the local store <runs root>/mlruns")
        flags = (run.path / "fns.jsonl").is_file() and (run.path / "fns.jsonl").stat().st_size > 0
        pictures = st.checkbox("With pictures of the flagged pairs (rebuilds the run's data set)", value=False,
                               key=f"track-pictures-{run.id}", disabled=not flags,
                               help=None if flags else "This run flagged no pairs (no detector, or not a pretraining)")
        sent = st.form_submit_button("Send")
    if not sent:
        return
    if not names:
        st.warning("Choose a tracker first.")
        return
    try:
        with st.spinner("Sending the run's records"):
            st.success(track(run, names, uri.strip() or None, 8 if pictures else 0))
    except Exception as err:  # noqa: BLE001 - one line on the page, never a traceback
        show_error(err, "sending the run")
