"""The live run view's pure helpers (workbench.monitor) and the charts' own (workbench.common)."""
from __future__ import annotations

import os

from workbench.monitor import percent_ticks


def test_percent_ticks_get_the_decimals_their_spread_needs() -> None:
    assert percent_ticks([0.1, 0.4, 0.7]) == ".0%"  # tens of points apart: whole percents
    assert percent_ticks([0.50, 0.52]) == ".1%"
    assert percent_ticks([0.0887, 0.0889]) == ".3%"  # not "9%" on every tick
    assert percent_ticks([0.3]) == percent_ticks([0.3, 0.3]) == percent_ticks([]) == ".0%"
    assert percent_ticks([0.0, 1e-9]) == ".3%"  # at most three decimals


def test_a_finetune_run_without_evaluations_gets_a_zero_to_one_mIoU_axis(tmp_path) -> None:
    """Before the first evaluation the validation chart has no point: plotly's empty axis (-1 to 4) read as -100 % to
    400 % in percent ticks."""
    import json

    from core.store.runs import create_run
    from workbench.monitor import _figures

    run = create_run("ft", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state="running")
    (run.path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 0.01,
                                                                "images_per_s": 23.8 + s / 100}) + "\n"
                                                    for s in (1, 2, 3)))
    figures = _figures(str(run.path), "finetune", ("v1",))
    speed = next(f for f in figures if f.layout.title.text == "Images / s")
    assert speed.layout.yaxis.rangemode == "tozero"  # 23.81-23.83 drawn from 0, not as a falling curve
    miou = next(f for f in figures if f.layout.title.text == "Validation mIoU")
    assert tuple(miou.layout.yaxis.range) == (0, 1)
    assert "none yet" in miou.layout.annotations[0].text
    loss = next(f for f in figures if f.layout.title.text == "Training loss")
    assert not loss.layout.annotations


def test_a_finetune_run_without_validation_has_no_chart_waiting_for_one(tmp_path) -> None:
    """data.val_fraction 0: no validation ever comes, so no "none yet" chart, and the table's metric is the test's."""
    import json

    from core.store.runs import create_run
    from workbench.monitor import _figures

    run = create_run("ft", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state="running")
    run.write_status(validation=False)
    (run.path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 0.01}) + "\n"
                                                    for s in (1, 2, 3)))
    titles = [f.layout.title.text for f in _figures(str(run.path), "finetune", ("v1",))]
    assert "Training loss" in titles and "Validation mIoU" not in titles
    assert not run.validates() and run.summary()["metric"] == "test mIoU (at the end)"


def test_a_run_that_logged_once_shows_its_values_not_charts_of_one_dot(tmp_path) -> None:
    """A 10-step fine-tune logging every 10 steps drew four charts of a lone dot each (the walkthrough)."""
    import json

    from core.store.runs import create_run
    from workbench.monitor import _figures, single_values

    run = create_run("ft", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state="completed")
    (run.path / "metrics.jsonl").write_text(json.dumps({"step": 10, "loss": 1.25, "lr": 0.01, "images_per_s": 40.0})
                                            + "\n" + json.dumps({"step": 10, "split": "val", "miou": 0.125}) + "\n")
    rows = single_values(_figures(str(run.path), "finetune", ("once",)))
    by_record = {r["record"]: (r["value"], r["step"]) for r in rows}
    assert by_record["Training loss"] == ("1.25", 10) and by_record["Validation mIoU"] == ("12.5%", 10), by_record
    with (run.path / "metrics.jsonl").open("a") as f:  # a second record: curves again
        f.write(json.dumps({"step": 20, "loss": 1.0, "lr": 0.01, "images_per_s": 41.0}) + "\n")
    assert single_values(_figures(str(run.path), "finetune", ("twice",))) is None


def test_the_base_rate_label_sits_beside_the_plot_not_on_its_first_point() -> None:
    """The False negatives page's "base rate" label overprinted the first bin's point (the walkthrough)."""
    import plotly.graph_objects as go

    from workbench.common import base_rate_line

    fig = go.Figure(go.Scatter(x=[5, 15], y=[0.31, 0.6]))
    base_rate_line(fig, 0.3, "(random pair)")
    (label,) = fig.layout.annotations
    assert (label.xref, label.x, label.xanchor, label.y) == ("paper", 1, "left", 0.3)  # right of the plot area
    assert label.text == "base rate 0.30<br>(random pair)"


def test_a_run_that_says_it_has_10_to_the_20_steps_leaves_the_runs_table_whole(tmp_path) -> None:
    """Made before the configs bounded a run's length: its count fits no int64 column, and the Runs table (Arrow) was
    refused for every run. Now its length reads as unknown and the others are listed."""
    import pyarrow as pa

    from core.store.runs import create_run
    from workbench.common import runs_frame

    huge = create_run("huge", "data:\n  name: synthetic\n", tmp_path / "runs", kind="pretrain", state="stopped")
    huge.write_status(step=24, total_steps=99999999999999999999)
    fine = create_run("fine", "data:\n  name: synthetic\n", tmp_path / "runs", kind="pretrain", state="completed")
    fine.write_status(step=5, total_steps=5)
    frame = runs_frame([huge, fine])
    pa.Table.from_pandas(frame)  # what st.dataframe does with it
    assert list(frame["step"]) == [24, 5] and frame["total_steps"].isna().tolist() == [True, False]


def test_a_lone_value_beside_curves_is_named_in_words(tmp_path) -> None:
    """The caption's names: a kNN line by its legend's words, another chart's line with its chart's title (a review
    found "miou 45.0%", a bare record key, where the title had been cut off)."""
    import json

    from core.store.runs import create_run
    from workbench.monitor import _figures, lone_values

    run = create_run("ft", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state="completed")
    records = [{"step": s, "loss": 1.0 / s, "lr": 0.01, "images_per_s": 40.0} for s in range(1, 6)]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records)
                                            + json.dumps({"step": 5, "split": "val", "miou": 0.45}) + "\n")
    figures = _figures(str(run.path), "finetune", ("lone",))
    lone = [v for f in figures if (v := lone_values(f))]
    assert [r["line"] for rows in lone for r in rows] == ["Validation mIoU"], lone
    assert lone_values(next(f for f in figures if f.layout.title.text == "Training loss")) is None


def test_charts_without_a_value_are_not_drawn_while_a_run_is_live(tmp_path, monkeypatch) -> None:
    """A 10-step fine-tune logging every 10 steps drew blank loss, lr and images/s axes (-1 to 4) until it ended."""
    import plotly.graph_objects as go

    import workbench.monitor as monitor
    from core.store.runs import create_run

    run = create_run("ft", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state="running")
    empty = go.Figure(go.Scatter(x=[], y=[]), layout=dict(title="Training loss"))
    waiting = go.Figure(go.Scatter(x=[], y=[]), layout=dict(title="Validation mIoU"))
    waiting.add_annotation(text="none yet")
    drawn = go.Figure(go.Scatter(x=[1, 2], y=[0.5, float("nan")]), layout=dict(title="Learning rate"))
    shown, said = [], []

    class Column:
        def plotly_chart(self, fig, **kwargs):
            shown.append(fig.layout.title.text)

    monkeypatch.setattr(monitor.st, "columns", lambda n: [Column(), Column()])
    monkeypatch.setattr(monitor.st, "caption", said.append)
    for figures, expect in (([empty, waiting], []), ([empty, waiting, drawn], ["Validation mIoU", "Learning rate"])):
        shown.clear()
        said.clear()
        monkeypatch.setattr(monitor, "_figures", lambda *a, f=figures: f)
        monitor._charts(run, "finetune", live=True)
        assert shown == expect
        assert bool(said and "No curves yet" in said[0]) == (not expect)
    assert monitor.has_points(drawn) and not monitor.has_points(empty)


def test_the_launch_line_goes_once_its_run_is_stopped(tmp_path) -> None:
    """The Pretrain page's "Launched X" stayed above its run after a Stop: the live view redraws alone, and the line
    sat above it. It is drawn with the run now, and not once the run is stopped, has failed or died."""
    from streamlit.testing.v1 import AppTest

    from core.store.runs import create_run

    def page(path: str) -> None:
        from workbench.monitor import watch

        watch(path, key="t", launched="Launched it. It keeps running if you close this tab.")

    for state, said in (("running", True), ("completed", False), ("stopped", False), ("failed", False)):
        run = create_run(f"r-{state}", "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state=state,
                         pid=os.getpid())  # a live process: this one
        at = AppTest.from_function(page, args=(str(run.path),), default_timeout=60).run()
        assert not at.exception, at.exception
        assert any("Launched it" in s.value for s in at.success) == said, (state, [s.value for s in at.success])


def test_a_run_that_failed_before_any_checkpoint_offers_no_resume(tmp_path) -> None:
    """A review: a run failed on its data (a folder of text files) offered Resume, which fails the same way; one with
    a checkpoint (a failure mid-run) keeps it."""
    from streamlit.testing.v1 import AppTest

    from core.store.runs import create_run

    def page(path: str) -> None:
        from workbench.monitor import watch

        watch(path, key="t")

    for name, checkpoint, state in (("early", False, "failed"), ("late", True, "failed"), ("halted", False, "stopped")):
        run = create_run(name, "data:\n  name: synthetic\n", tmp_path / "runs", kind="finetune", state=state)
        if checkpoint:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            (run.checkpoint_dir / "last.safetensors").write_bytes(b"")
        at = AppTest.from_function(page, args=(str(run.path),), default_timeout=60).run()
        assert not at.exception, at.exception
        offered = any(b.label == "▶ Resume" for b in at.button)
        assert offered == (name != "early"), name
        assert any("failed before its first checkpoint" in c.value for c in at.caption) == (name == "early")


def test_a_probes_head_epochs_are_one_bar_with_one_time_left(tmp_path) -> None:
    """A review saw "linear head: 4 / 20 epochs, about 5 s left" above "step 4 / 20 · about 1 min left": the probe's
    steps are its head's epochs, so its phase bar alone counts them; other phases keep the step bar."""
    import os
    import time

    from streamlit.testing.v1 import AppTest

    from core.store.runs import create_run

    def page(path: str) -> None:
        from pathlib import Path

        from core.store.runs import Run
        from workbench.monitor import run_header

        run_header(Run(Path(path)))

    now = time.time()
    for phase, bars in (({"name": "linear head", "done": 4, "total": 20, "unit": "epoch", "started": now - 4}, 1),
                        ({"name": "encoder features", "done": 3, "total": 9, "unit": "scene", "started": now - 3}, 2)):
        run = create_run(f"p-{bars}", "data:\n  name: synthetic\n", tmp_path / "runs", kind="probe", state="running")
        run.write_status(pid=os.getpid(), step=3, total_steps=20, phase=phase, loop_started=now - 60,
                         loop_start_step=0)  # the step written a second before the phase: one epoch behind it
        at = AppTest.from_function(page, args=(str(run.path),), default_timeout=60).run()
        assert not at.exception, at.exception
        texts = [str(p.proto.text) for p in at.get("progress")]
        assert len(texts) == bars, texts
        assert texts[0].startswith(phase["name"])


def test_a_starting_run_says_for_how_long_and_how_busy_the_machine_is() -> None:
    """A walkthrough at load 6 read "about 10-20 s" for over a minute of starting."""
    from workbench.monitor import starting_text

    said = starting_text({"state": "starting", "launched": 1000.0}, now=1075.0)
    assert said.startswith("starting for 1 min 15 s: loading Python") and "on an idle machine" in said
    assert "load average" in said or "load unknown" in said
    assert starting_text({"state": "starting"}).startswith("starting: loading Python")  # launched before it was kept
