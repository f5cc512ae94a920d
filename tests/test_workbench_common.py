"""Small pieces of the app that need no page: chart axes, form error wording."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.common import curves_figure
from workbench.form_errors import FormErrors


def test_a_one_point_chart_gets_sensible_axes() -> None:
    fig = curves_figure({"run": pd.DataFrame({"step": [4], "miou": [0.12]})}, "miou", "Validation mIoU")
    assert tuple(fig.layout.xaxis.range) == (3, 5) and tuple(fig.layout.yaxis.range) == (0, 0.24)
    two = curves_figure({"run": pd.DataFrame({"step": [4, 8], "miou": [0.12, 0.2]})}, "miou", "m")
    assert two.layout.xaxis.range is None and two.layout.yaxis.range is None  # plotly's own for real curves


def test_learning_rate_ticks_read_alike_on_every_chart() -> None:
    """Plotly's SI ticks wrote "300μ" on one run's chart and "0.0005" on another's."""
    from workbench.common import columns_figure

    frame = pd.DataFrame({"step": [1, 2], "lr": [3e-4, 5e-4], "loss": [1.0, 0.9]})
    for fig in (curves_figure({"a": frame, "b": frame}, "lr", "lr"), columns_figure(frame, ["lr"], "Learning rate")):
        assert fig.layout.yaxis.tickformat == "~g"
    assert columns_figure(frame, ["loss"], "Loss").layout.yaxis.tickformat is None


def test_config_keys_in_messages_become_the_forms_labels() -> None:
    fe = FormErrors("t", {"Tile size (px)": "data.tile_size", "Data folder": "data.root"})
    assert fe.in_words("data.tile_overlap must be smaller than data.tile_size") == \
        "data.tile_overlap must be smaller than “Tile size (px)”"
    assert fe.in_words("name=folder needs data.root, the data set folder") == \
        "name=folder needs “Data folder”, the data set folder"


def test_the_records_version_changes_when_a_resume_rewrites_the_records_at_the_same_size(tmp_path: Path) -> None:
    import os

    from core.store.runs import Run
    from workbench.common import records_version

    run = Run(tmp_path)
    assert records_version(run) == ((-1, 0), (-1, 0))
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    before = records_version(run)
    metrics.write_text('{"step": 1, "loss": 3.0}\n')  # same size, as a resume's truncate-and-grow can leave it
    stat = metrics.stat()
    os.utime(metrics, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert records_version(run) != before


def test_the_weight_average_is_a_point_of_its_own_on_the_validation_curve(tmp_path: Path) -> None:
    import json

    from core.store.runs import Run
    from workbench.common import AVERAGE_MIOU, columns_figure, curve_frame

    rows = [{"step": 2, "loss": 1.0}, {"step": 2, "split": "val", "miou": 0.3},
            {"step": 4, "split": "val", "miou": 0.4},
            {"step": 4, "split": "val", "model": "weight average", "miou": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame = curve_frame(Run(tmp_path))
    assert frame["miou"].dropna().tolist() == [0.3, 0.4] and frame[AVERAGE_MIOU].dropna().tolist() == [0.5]
    fig = columns_figure(frame, ("miou", AVERAGE_MIOU), "Validation mIoU")
    assert [t.name for t in fig.data] == ["miou", AVERAGE_MIOU] and list(fig.data[1].y) == [0.5]


def test_errors_are_shown_verbatim() -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        from workbench.common import show_error

        show_error(ValueError("must be in (0, 1], got $2 or $3 in runs/*_s1"), "Not launched")

    at = AppTest.from_function(page).run()
    [box] = at.error
    from tests.pages import shown

    assert shown(box.value) == "Not launched: must be in (0, 1], got $2 or $3 in runs/*_s1"
    assert r"\$2" in box.value and r"\*\_s1" in box.value and r"1\]" in box.value  # no LaTeX, emphasis, link


def test_a_false_runs_treatment_is_drawn_by_one_helper(tmp_path: Path, monkeypatch) -> None:
    """The live view and the False negatives page draw a FALSE run's treatment through ``common.show_treatment``
    from per-step counts: figures in a caption, a warning with the advice when it is in effect its base method,
    nothing for InfoNCE or before the first step."""
    import streamlit as st

    from core.config import PretrainConfig, config_to_yaml, load_config
    from core.store.runs import create_run
    from workbench import common, monitor

    drawn: list = []
    monkeypatch.setattr(st, "warning", lambda text, icon=None: drawn.append(("warning", text)))
    monkeypatch.setattr(st, "caption", lambda text: drawn.append(("caption", text)))

    def run_of(name: str, overrides: list[str], step: int):
        cfg = load_config(Path(__file__).resolve().parent.parent / "configs/demo_cpu.yaml", overrides, PretrainConfig)
        run = create_run(name, config_to_yaml(cfg), tmp_path, kind="pretrain", state="completed")
        run.write_status(step=step)
        return run

    fires = pd.DataFrame({"step": [1, 2, 3, 4], "flagged": [3, 3, 3, 3], "calibrated": [2, 2, 2, 2]})
    common.show_treatment(run_of("fires", ["loss.name=false", "loss.alpha=0.5"], 4), fires)
    assert drawn == [("caption", "FNCC's treatment: calibration fired in 4 of 4 steps (2.00 calibrated pairs per "
                                 "step).")], drawn
    drawn.clear()
    never = pd.DataFrame({"step": list(range(1, 21)), "flagged": [1] * 20, "calibrated": [0] * 20})
    common.show_treatment(run_of("never", ["loss.name=false", "loss.alpha=0.5"], 20), never, top_cos_pos=0.42)
    ((how, text),) = drawn
    assert how == "warning" and "the highest was 0.42" in text and "this run is, in effect, SimCLR." in text
    assert text.endswith("SimCLR. A lower threshold calibrates more of them.")  # the advice, the gate named once
    assert text.count("threshold 0.90") == 1
    drawn.clear()
    eliminate = run_of("eliminate", ["loss.name=false", "loss.detector=nearest", "loss.treatment=eliminate"], 4)
    common.show_treatment(eliminate, fires)  # every flag treated: "treated", not FNCC's "calibrated"
    assert drawn == [("caption", "The treatment (eliminate) applied in 4 of 4 steps (2.00 treated pairs per "
                                 "step).")], drawn
    drawn.clear()
    common.show_treatment(run_of("info", ["loss.name=info_nce"], 20), never)
    common.show_treatment(run_of("fresh", ["loss.name=false"], 0), never.iloc[:0])
    assert drawn == []  # no detector; no step yet
    from core.store.run_lock import lock_run, unlock_run

    ahead = run_of("ahead", ["loss.name=false", "loss.alpha=0.5"], 0)
    ahead.write_status(state="running", step=14)  # its status runs ahead of the 4 steps of flags written
    lock_run(ahead)
    try:
        common.show_treatment(ahead, fires)
    finally:
        unlock_run(ahead)
    assert drawn == [("caption", "FNCC's treatment: calibration fired in 4 of 4 steps (2.00 calibrated pairs per "
                                 "step). (Counted over steps 1-4: the run is at step 14, and the flags of the steps "
                                 "since are written at its next logged step.)")], drawn
    drawn.clear()
    seen: list = []
    monkeypatch.setattr(monitor, "show_treatment", lambda run, counts, top_cos_pos=None: seen.append(run.id))
    run = run_of("live", ["loss.name=false"], 4)
    monitor.treatment(run)
    assert seen == [run.id]


def test_pair_counts_draw_one_line_for_treatments_of_every_flag_and_dash_fnccs_twin_line() -> None:
    from workbench.common import pair_counts_figure

    counts = pd.DataFrame({"step": [1, 2, 3], "flagged": [2, 0, 1], "calibrated": [2, 0, 1]})
    one = pair_counts_figure(counts, "eliminate")
    assert [t.name for t in one.data] == ["flagged"] and "each one treated: eliminate" in one.layout.title.text
    both = pair_counts_figure(counts, "fncc")
    assert [t.name for t in both.data] == ["flagged", "calibrated"] and "coincide" in both.layout.title.text
    assert both.data[1].line.dash == "dash" and both.data[0].line.dash is None
    apart = pair_counts_figure(counts.assign(calibrated=[1, 0, 0]), "fncc")
    assert apart.layout.title.text == "Flagged and calibrated pairs per step" and apart.data[1].line.dash is None


def test_scored_images_are_counted_as_scenes_only_when_each_is_one() -> None:
    from core.seg.scene_role import scored_scenes_text

    dubai = [f"tile_3/image_part_00{i}" for i in range(1, 10)]
    assert scored_scenes_text(dubai, ["tile_3"]) == "9 images of 1 scene (tile_3)"
    dglc = ["train/104113", "train/180902", "train/3484"]
    assert scored_scenes_text(dglc, dglc) == "3 scenes"  # each image is a named scene
    # named where the line lists them nowhere else (the Fine-tune page of a share-based split said "3 scenes")
    assert scored_scenes_text(dglc, None, name_them=True) == f"3 scenes ({', '.join(dglc)})"
    assert scored_scenes_text([f"s{i}" for i in range(8)], None, name_them=True) == \
        "8 scenes (s0, s1, s2, s3, s4, s5 and 2 more)"
    assert scored_scenes_text(dubai, ["tile_3"], name_them=True) == "9 images of 1 scene (tile_3)"
    assert scored_scenes_text(dglc, None) == "3 scenes" and scored_scenes_text([], ["x"]) == ""
    assert scored_scenes_text(["a/1", "b/1", "b/2"], ["a", "b"]) == "3 images of 2 scenes (a, b)"
    # whole folders held out by share (data.split_unit folder): each folder one scene; split by image: images
    assert scored_scenes_text(["b/1", "a/1", "b/2"], None, unit="folder") == "3 images of 2 scenes (a, b)"
    assert scored_scenes_text(["a/1", "b/1", "b/2"], None, unit="file") == "3 scenes"


def test_final_metrics_read_as_every_table_gives_them() -> None:
    from workbench.common import metric_values_text

    got = metric_values_text(["last loss", "best val mIoU", "best val mIoU", "test mIoU", "last loss"],
                             [4.23841, 0.37591, None, float("nan"), "—"])
    assert got == ["4.2384", "37.6 %", "—", "—", "—"]


def test_files_of_one_name_get_tabs_that_tell_them_apart() -> None:
    """Two tiles' image_part_001.jpg gave two tabs of one label (the review)."""
    from workbench.common import tab_names

    assert tab_names(["a.jpg", "image_part_001.jpg", "image_part_001.jpg"]) == \
        ["a.jpg", "image_part_001.jpg (1)", "image_part_001.jpg (2)"]
    assert tab_names(["a.png", "b.png"]) == ["a.png", "b.png"]


def test_a_fragments_own_rerun_keeps_the_pages_kept_values(monkeypatch) -> None:
    """Watching a live run (a fragment every 2 s) closed Pretrain's Settings at the next page trip: a fragment's
    own rerun forgets the widgets it does not draw. Every fragment of the app keeps them again on its reruns."""
    import workbench.common as common

    kept: list[str] = []
    monkeypatch.setattr(common, "keep_widget_values", lambda: kept.append("kept"))
    monkeypatch.setattr(common.st, "fragment", lambda func, run_every=None: func)  # the body as Streamlit runs it
    body = common.kept_fragment(run_every=2)(lambda x: x + 1)
    for rerun, expected in ((False, []), (True, ["kept"])):  # a whole run: the router has kept them already
        kept.clear()
        monkeypatch.setattr(common, "fragment_rerun", lambda rerun=rerun: rerun)
        assert body(1) == 2 and kept == expected
    import pathlib
    import re

    root = pathlib.Path(common.__file__).resolve().parent.parent
    bare = [str(p.relative_to(root)) for d in ("pages", "workbench") for p in (root / d).glob("*.py")
            if re.search(r"@st\.fragment", p.read_text())]
    assert bare == [], f"use kept_fragment: {bare}"


def test_a_refused_setting_leaves_no_traceback_in_the_server_log(monkeypatch, capsys) -> None:
    """Each refused comparison form wrote a full traceback to the app's console: a user's wrong value is not a bug."""
    import streamlit as st

    from core.config import ConfigError
    from workbench.common import show_error

    shown: list[str] = []
    monkeypatch.setattr(st, "error", lambda text, icon=None: shown.append(text))
    for err in (ConfigError("seeds: name at least 1 evaluation seed, got []"), RuntimeError("a real bug")):
        try:
            raise err
        except Exception as caught:  # noqa: BLE001 - as the pages catch them
            show_error(caught, "Not launched")
    assert len(shown) == 2 and shown[0].startswith("Not launched: seeds: name at least 1") and \
        shown[1] == "Not launched: a real bug"
    log = capsys.readouterr().out
    assert log.count("Traceback") == 1 and "RuntimeError: a real bug" in log and "ConfigError" not in log


def test_a_kept_step_range_at_the_end_follows_a_live_runs_new_steps() -> None:
    """The False negatives page's step slider is kept across pages: one left at its upper end must grow with a live
    run (it stayed at the old end and hid every later flag), one the user narrowed must stay."""
    from streamlit.testing.v1 import AppTest

    def page(hi: int) -> None:
        import streamlit as st

        from workbench.common import kept_range

        st.slider("Steps", 0, hi, key=kept_range("fn-steps-r", 0, hi))

    at = AppTest.from_function(page, args=(10,)).run()
    assert at.slider(key="fn-steps-r").value == (0, 10)
    for hi in (20, 30):
        at.args = (hi,)
        at.run()
        assert not at.exception and at.slider(key="fn-steps-r").value == (0, hi)
    at.slider(key="fn-steps-r").set_value((5, 12)).run()
    at.args = (40,)
    at.run()
    assert at.slider(key="fn-steps-r").value == (5, 12)  # narrowed by the user: kept as it is
