"""The Runs page: table, filters, curves, config and log; delete asks first and never takes a live run."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.store.runs import list_runs
from tests.pages import errors, open_page, texts
from tests.store import copy_store


def test_renders_with_an_empty_store(empty_store: Path) -> None:
    at = open_page("runs")
    assert not at.exception and "No runs yet" in texts(at) and "shipped models" in texts(at)


def test_lists_filters_and_draws_runs(populated_store: Path) -> None:
    at = open_page("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 5 and set(table["kind"]) == {"pretrain", "finetune"}
    assert any("died" in s for s in table["state"]) and any("failed" in s for s in table["state"])
    assert len(at.get("plotly_chart")) >= 1  # the two newest runs with curves on one chart
    assert "shown (filtered)" not in texts(at)
    at.multiselect(key="runs-kind").set_value(["finetune"]).run()
    assert list(at.dataframe[0].value["kind"]) == ["finetune"]
    assert "1 of 5 run(s) shown (filtered)" in texts(at)  # the header's count is of every run
    assert "loss" in at.code[0].value or "arch" in at.code[0].value  # the chosen run's config
    curves = next(m for m in at.multiselect if m.label == "Runs")
    assert curves.value and all(v.endswith("tiny-ft") for v in curves.value)  # the curves follow the filter
    at.text_input(key="runs-text").set_value("no-such-run").run()
    assert len(at.dataframe[0].value) == 0 and not at.get("plotly_chart")  # an empty table draws no curves


def test_the_broken_run_shows_a_message_not_a_traceback(populated_store: Path) -> None:
    at = open_page("runs")
    broken = next(r.id for r in list_runs(populated_store) if r.id.endswith("broken"))
    at.selectbox(key="runs-one").set_value(broken).run()
    assert not at.exception
    assert any("unreadable" in e for e in errors(at)), errors(at)


def test_delete_needs_confirmation(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    victim = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-infonce"))
    at = open_page("runs")
    default_a = at.selectbox(key="runs-diff-a").value
    other = next(r.id for r in list_runs(runs_root) if r.id not in (victim.id, default_a))
    # A on the run about to go, B on the run A would fall back to: A fell back onto B's run ("Pick two different")
    at.selectbox(key="runs-diff-b").set_value(default_a if default_a != victim.id else other)
    at.selectbox(key="runs-diff-a").set_value(victim.id).run()
    at.selectbox(key="runs-one").set_value(victim.id).run()
    button = at.button(key=f"runs-delete-{victim.id}")
    assert button.disabled
    at.checkbox(key=f"runs-sure-{victim.id}").check().run()
    at.session_state["runs-tab"] = "Delete"
    at.button(key=f"runs-delete-{victim.id}").click().run()
    assert not at.exception
    assert not victim.path.exists() and len(list_runs(runs_root)) == 4
    assert any(f"Deleted {victim.id}" in m.value for m in at.success)  # said, not only toasted
    assert at.session_state["runs-tab"] == "Status"  # the next run is not left on its Delete tab
    sides = at.selectbox(key="runs-diff-a").value, at.selectbox(key="runs-diff-b").value
    assert victim.id not in sides and sides[0] != sides[1], sides  # it fell back to A's run: "Pick two different"


def test_compares_runs_by_their_settings(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    at = open_page("runs")
    at.multiselect(key="runs-kind").set_value(["pretrain"]).run()
    table = at.dataframe[0].value
    # the settings that differ between the pretraining runs are columns; the ones they share are not
    assert "loss.name" in table and "train.max_steps" in table and "loss.temperature" not in table
    by_run = dict(zip(table["run"], table["loss.name"]))
    assert sorted(set(by_run.values())) == ["false", "info_nce", "—"]  # the broken run has no config: a dash
    steps = dict(zip(table["run"], table["train.max_steps"]))  # a number column: missing is empty, drawn as a dash
    assert sum(s != s for s in steps.values()) == 1 and at.dataframe[0].proto.placeholder == "—"
    curves = next(m for m in at.multiselect if m.label == "Runs")
    pre = sorted(r for r in curves.options if r.endswith(("tiny-false", "tiny-infonce")))
    curves.set_value(pre).run()
    raw = at.get("plotly_chart")[0].proto.spec
    at.slider(key="runs-smooth").set_value(0.9).run()
    assert at.get("plotly_chart")[0].proto.spec != raw and "smoothed 0.90" in at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="runs-group").set_value("loss.name").run()
    spec = at.get("plotly_chart")[0].proto.spec
    assert "loss.name=false (1 run)" in spec and "loss.name=info_nce (1 run)" in spec and "mean" in spec
    # the diff of the two runs lists what differs and nothing else
    at.selectbox(key="runs-diff-a").set_value(pre[0]).run()
    at.selectbox(key="runs-diff-b").set_value(pre[1]).run()
    diff = next(d.value for d in at.dataframe if "setting" in d.value)
    assert {"loss.name", "train.max_steps", "train.log_every"} <= set(diff["setting"])
    assert "loss.temperature" not in set(diff["setting"]) and "name" not in set(diff["setting"])


def test_tags_and_notes_are_kept_and_filter_the_table(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-ft"))
    at = open_page("runs")
    at.selectbox(key="runs-one").set_value(run.id).run()
    at.session_state["runs-tab"] = "Notes"
    at.text_input(key=f"runs-tags-{run.id}").set_value("keep,  dubai, Keep,")  # typed: no Enter needed
    at.text_area(key=f"runs-note-{run.id}").set_value("best so far")
    at.button(key=f"runs-notes-save-{run.id}").click().run()
    assert not at.exception, at.exception
    assert (run.path / "notes.json").is_file()
    assert any(f"Saved {run.id}: 2 tag(s)" in m.value for m in at.success)
    assert at.text_input(key=f"runs-tags-{run.id}").value == "keep, dubai"  # cleaned at once, not after a reload
    table = at.dataframe[0].value
    assert dict(zip(table["run"], table["tags"]))[run.id] == "keep, dubai"
    at.multiselect(key="runs-tags").set_value(["dubai"]).run()
    assert list(at.dataframe[0].value["run"]) == [run.id]  # the tag filters the table
    fresh = open_page("runs")  # another session sees them too
    fresh.selectbox(key="runs-one").set_value(run.id).run()
    assert fresh.text_input(key=f"runs-tags-{run.id}").value == "keep, dubai"
    assert "Tags in use: dubai, keep" in [c.value for c in fresh.caption]
    assert fresh.text_area(key=f"runs-note-{run.id}").value == "best so far"


def test_a_stop_already_asked_for_shows_stopping_instead_of_a_second_stop_button(populated_store: Path, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    import json
    import os

    from core.store import launch

    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    live = next(r for r in list_runs(runs_root) if r.id.endswith("died"))
    live.write_status(pid=os.getpid())  # a process that exists: the run counts as running
    at = open_page("runs")
    at.selectbox(key="runs-one").set_value(live.id).run()
    assert not at.exception
    assert at.button(key="runs-stop")  # not asked yet: the button
    (live.path / launch.STOP_REQUEST).write_text(json.dumps({"pid": os.getpid()}))  # as launch.stop leaves it
    at.run()
    assert not any(b.key == "runs-stop" for b in at.button)
    assert any("stopping at the next step" in c.value for c in at.caption)


def _second_finetuning_run(runs_root: Path) -> str:
    """A copy of tiny-ft as the newest run, trained 6 steps instead of 4 (by its config)."""
    import shutil

    import yaml

    ft = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-ft"))
    copy = runs_root / ("2099" + ft.id[4:] + "-again")
    shutil.copytree(ft.path, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["train"]["max_steps"] = 6
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    return copy.name


def test_the_default_comparison_is_of_one_kind(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    import json

    from workbench.run_compare_view import FIRST_COLUMNS

    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    kinds = {r.id: r.kind() for r in list_runs(runs_root)}
    # the newest run with curves is the one fine-tuning run: one curve compares nothing, so the two pretraining
    # runs are compared
    at = open_page("runs")
    assert next(s for s in at.selectbox if s.label == "Compare runs of").value == "pretrain"
    curves = next(m for m in at.multiselect if m.label == "Runs")
    assert len(curves.value) == 2 and {kinds[r] for r in curves.value} == {"pretrain"}
    again = _second_finetuning_run(runs_root)
    kinds = {r.id: r.kind() for r in list_runs(runs_root)}
    at = open_page("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table.columns)[:len(FIRST_COLUMNS)] == list(FIRST_COLUMNS)  # what a run is before its settings
    # the settings that differ between runs of one kind, not the ~50 a pretraining and a fine-tuning run do not share
    settings = [c for c in table.columns if "." in c]
    assert "train.max_steps" in settings and "loss.name" in settings and "model.arch" not in settings
    # now the newest runs with curves are two fine-tuning runs: curves and diff compare fine-tuning runs only
    assert next(s for s in at.selectbox if s.label == "Compare runs of").value == "finetune"
    curves = next(m for m in at.multiselect if m.label == "Runs")
    assert curves.value and {kinds[r] for r in curves.value} == {"finetune"} and again in curves.value
    assert {kinds[r] for r in curves.options} == {"finetune"}
    a, b = at.selectbox(key="runs-diff-a"), at.selectbox(key="runs-diff-b")
    assert {kinds[a.value], kinds[b.value]} == {"finetune"} and {kinds[o] for o in a.options} == {"finetune"}
    diff = next(d.value for d in at.dataframe if "setting" in d.value)
    assert list(diff["setting"]) == ["train.max_steps"]
    metric = next(s for s in at.selectbox if s.label == "Value")
    assert "miou" in metric.options and "flagged" not in metric.options
    # the user can still choose: pretraining runs, or every kind (then the diff says what mixing means)
    kind = next(s for s in at.selectbox if s.label == "Compare runs of")
    kind.set_value("pretrain").run()
    curves = next(m for m in at.multiselect if m.label == "Runs")
    assert {kinds[r] for r in curves.value} == {"pretrain"} and len(curves.value) == 2
    options = next(s for s in at.selectbox if s.label == "Value").options
    assert "flagged" in options and "calibrated or treated" in options  # eliminate and attract treat, not calibrate
    next(s for s in at.selectbox if s.label == "Compare runs of").set_value("").run()
    assert {kinds[r] for r in next(m for m in at.multiselect if m.label == "Runs").options} == {"pretrain",
                                                                                                "finetune"}
    at.selectbox(key="runs-diff-a").set_value(again).run()
    at.selectbox(key="runs-diff-b").set_value(next(r for r in kinds if r.endswith("tiny-false"))).run()
    assert "most of their settings differ by nature" in texts(at)
    diff = next(d.value for d in at.dataframe if "setting" in d.value)
    assert all(row[1] != row[2] for row in diff.itertuples(index=False)), diff  # no row reads the same both sides
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"]


def test_curves_on_top_of_each_other_are_said_and_dashed(populated_store: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    import json
    import shutil

    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    false_run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-false"))
    twin = runs_root / (false_run.id + "-twin")  # the same records under another name: one curve hides the other
    shutil.copytree(false_run.path, twin)
    at = open_page("runs")
    next(s for s in at.selectbox if s.label == "Compare runs of").set_value("pretrain").run()
    curves = next(m for m in at.multiselect if m.label == "Runs")
    curves.set_value([false_run.id, twin.name]).run()
    note = next(i.value for i in at.info if "coincide" in i.value)
    assert f"The loss curves of {false_run.id} and {twin.name} coincide" in note
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["line"].get("dash") for t in traces] == [None, "dash"]  # the later one dashed
    assert "different objectives" not in texts(at)  # one objective: heights compare
    other = next(r.id for r in list_runs(runs_root) if r.id.endswith("tiny-infonce"))
    next(m for m in at.multiselect if m.label == "Runs").set_value([false_run.id, other]).run()
    assert next(m for m in at.multiselect if m.label == "Runs").value == [false_run.id, other]
    assert not any("coincide" in i.value for i in at.info)
    # FALSE's loss and InfoNCE's on one chart: said, with each run's objective (the walkthrough read their heights)
    assert (f"These runs minimise different objectives ({false_run.id}: simclr / false / fncc; {other}: simclr / "
            "info_nce)") in texts(at)


def test_a_run_whose_treatment_hardly_acted_is_not_said_to_be_on_another_scale(populated_store: Path,
                                                                               tmp_path: Path, monkeypatch) -> None:
    """A walkthrough: FALSE calibrated in 3 of 40 steps, its losses equal InfoNCE's to 4 decimals, and the page said
    "not on one scale: compare each curve's shape, not the heights". A flagged-pairs chart drew the InfoNCE run as a
    line at 0 ("found nothing"), and a value no run logged was offered as an empty chart."""
    import json

    import pandas as pd

    from core.store.runs import Run
    from workbench.common import curve_frame
    from workbench.run_compare_view import metrics_of

    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    false_run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-false"))
    other = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-infonce"))
    flags = [json.loads(line) for line in (false_run.path / "fns.jsonl").read_text().splitlines()]
    for n, f in enumerate(flags):
        f["calibrated"] = n == 0  # one calibrated pair in the whole run
    (false_run.path / "fns.jsonl").write_text("".join(json.dumps(f) + "\n" for f in flags))
    at = open_page("runs")
    next(s for s in at.selectbox if s.label == "Compare runs of").set_value("pretrain").run()
    next(m for m in at.multiselect if m.label == "Runs").set_value([false_run.id, other.id]).run()
    said = texts(at)
    assert "different objectives" not in said
    assert f"The treatment hardly acted ({false_run.id}: calibration fired in 1 of " in said and "heights compare" in said
    options = next(s for s in at.selectbox if s.label == "Value").options
    assert "knn_acc" in options  # the store's runs measure it
    for r in (false_run, other):  # runs shorter than their knn_every: no kNN point, so no kNN chart offered
        rows = [m for m in r.metrics() if "knn_acc" not in m]
        (r.path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in rows))
    assert "knn_acc" not in metrics_of("pretrain", [Run(false_run.path), Run(other.path)])
    assert not any(curve_frame(Run(r.path)).get("knn_acc", pd.Series(dtype=float)).notna().any()
                   for r in (false_run, other))
    next(s for s in at.selectbox if s.label == "Value").set_value("flagged").run()
    assert f"Not drawn: {other.id} ran no detector" in texts(at)
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"] for t in traces] == [false_run.id]


def test_the_table_says_what_falses_calibration_changed(populated_store: Path) -> None:
    from core.analysis import fn_scoring as fn

    at = open_page("runs")
    table = at.dataframe[0].value
    cells = dict(zip(table["run"], table["treatment"]))
    false_run = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-false"))
    assert cells[false_run.id] == fn.treatment_of_run(false_run).cell()
    assert cells[false_run.id].endswith("/16 steps, " + cells[false_run.id].split(", ")[1])
    assert all(v == "—" for r, v in cells.items() if r.endswith(("tiny-infonce", "tiny-ft", "broken")))


def test_a_probes_loss_per_epoch_is_charted(empty_store: Path) -> None:
    """Linear probes write metrics.jsonl every epoch; the page used to say none of them had logged training
    records. Their loss curves are drawn against the epoch."""
    import json

    from core.config import ProbeConfig, config_to_yaml, load_config
    from core.store.runs import create_run

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs/probe_demo_cpu.yaml", [], ProbeConfig)
    losses = {}
    for n, name in enumerate(("probe-a", "probe-b")):
        run = create_run(name, config_to_yaml(cfg), empty_store, state="completed", kind="probe")
        run.write_status(pid=2**22 + 7, step=3, total_steps=3)
        losses[run.id] = [1.5 - 0.3 * e - 0.1 * n for e in range(3)]
        (run.path / "metrics.jsonl").write_text("".join(
            json.dumps({"step": e + 1, "epoch": e + 1, "loss": loss, "lr": 0.01}) + "\n"
            for e, loss in enumerate(losses[run.id])))
    at = open_page("runs")
    assert not at.exception and not errors(at), errors(at)
    assert next(s for s in at.selectbox if s.label == "Compare runs of").value == "probe"
    assert "has logged training records" not in texts(at)
    curves = next(m for m in at.multiselect if m.label == "Runs")
    assert sorted(curves.value) == sorted(losses)
    assert next(s for s in at.selectbox if s.label == "Value").options == ["loss", "lr"]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert {t["name"]: pytest.approx(_array(t["y"])) for t in spec["data"]} == losses
    assert all(_array(t["x"]) == [1, 2, 3] for t in spec["data"])


def _array(value) -> list:
    """A plotly spec's array: a list, or (plotly 6) base64 bytes with their dtype."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"]).tolist()
    return list(value)


def test_a_finished_run_is_sent_to_tensorboard_and_the_tab_says_how_to_open_it(populated_store: Path,
                                                                                tmp_path: Path, monkeypatch) -> None:
    """Issue 30: the Runs page links to the trackers; a run made without them is sent from its Trackers tab."""
    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-ft"))
    at = open_page("runs")
    at.selectbox(key="runs-one").set_value(run.id).run()
    assert any("Not sent to a tracker" in c.value for c in at.caption)
    at.multiselect(key=f"track-to-{run.id}").set_value(["tensorboard"]).run()
    at.button[[b.label for b in at.button].index("Send")].click().run()
    assert not at.exception and not errors(at), errors(at)
    assert any("new metric rows" in s.value for s in at.success)
    assert any(f"tensorboard --logdir {run.path / 'tensorboard'}" in c.value for c in at.code)
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_comparison_stops_and_resumes_from_the_runs_page_and_the_comparisons_tab(empty_store: Path,
                                                                                   monkeypatch) -> None:
    """A running comparison had no Stop anywhere while its Delete tab said "stop it before deleting it", and a stopped
    one no Resume: both are there now, through core.store.launch as for a training run."""
    import os

    from core.store import launch
    from core.store.runs import create_run

    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(launch, "stop", lambda run: calls.append(("stop", run.id)) or True)
    monkeypatch.setattr(launch, "resume", lambda run: calls.append(("resume", run.id)))
    cmp_run = create_run("cmp", "name: cmp\n", empty_store, kind="compare", state="running")
    cmp_run.write_status(pid=os.getpid(), step=1, total_steps=8)  # a process that exists: it counts as running
    at = open_page("runs")
    row = at.dataframe[0].value.set_index("run").loc[cmp_run.id]  # no "best val mIoU —" for a table of methods
    assert (row["metric"], row["value"]) == ("units done (of 8)", "1")
    at.selectbox(key="runs-one").set_value(cmp_run.id).run()
    assert not at.exception
    assert [p.proto.text for p in at.get("progress")] == ["unit 1 / 8"]
    stop = at.button(key="runs-stop")
    assert "finished units are kept" in stop.help
    stop.click().run()
    assert calls == [("stop", cmp_run.id)]
    tab = open_page("finetune")
    assert tab.selectbox(key="cmp-run").value == cmp_run.id
    assert tab.button(key="cmp-stop") and any("Stop keeps the finished units" in c.value for c in tab.caption)
    cmp_run.write_status(state="stopped")
    tab.run()
    tab.button(key="cmp-resume").click().run()
    assert not tab.exception and calls[-1] == ("resume", cmp_run.id)


def test_losses_of_other_batch_sizes_or_data_are_not_said_to_compare() -> None:
    """A review: a Dubai FALSE run at batch 32 beside a synthetic InfoNCE run at batch 64, and the page said "their
    heights compare" (the treatment had hardly acted). InfoNCE's value moves with the number of negatives, the
    temperature and the images."""
    from types import SimpleNamespace

    from workbench.run_compare_view import objective_note

    base = {"method": "simclr", "loss.name": "info_nce", "train.batch_size": 64, "loss.temperature": 0.5,
            "data.name": "synthetic"}
    same = {"a": base, "b": dict(base)}
    assert objective_note(same, ["a", "b"], "loss") is None
    assert objective_note({"a": base, "b": {**base, "train.batch_size": 32}}, ["a", "b"], "loss") == (
        "These runs minimise one objective, but not on one scale. Their batch size (a: 64; b: 32) differ, and a "
        "loss's value moves with them (the number of negatives, the temperature, the images): compare each curve's "
        "shape, not the heights between them.")
    idle = SimpleNamespace(negligible=True, figures=lambda: "calibration fired in 1 of 30 steps")
    dubai = {**base, "loss.name": "false", "loss.treatment": "fncc", "train.batch_size": 32, "data.name": "folder"}
    said = objective_note({"a": dubai, "b": base}, ["a", "b"], "loss", {"a": idle, "b": None})
    assert said.startswith("The treatment hardly acted (a: calibration fired in 1 of 30 steps), so these runs "
                           "minimised, in effect, one objective; but their batch size, data set (a: 32, folder; b: "
                           "64, synthetic) differ") and "heights compare" not in said
    assert "heights compare" in objective_note({"a": {**base, "loss.name": "false", "loss.treatment": "fncc"},
                                                "b": base}, ["a", "b"], "loss", {"a": idle, "b": None})
    moco = {**base, "method": "moco", "model.queue_size": 4096}
    assert "queue size (a: 4096; b: 1024)" in objective_note(
        {"a": moco, "b": {**moco, "model.queue_size": 1024}}, ["a", "b"], "loss")
    assert objective_note({"a": base, "b": {**base, "train.batch_size": 32}}, ["a", "b"], "lr") is None
    assert objective_note({"a": moco, "b": {**moco, "train.batch_size": 32}}, ["a", "b"], "loss") is None  # its queue
    finetune = {"train.batch_size": 8, "data.name": "dubai"}  # a per-pixel loss: no negatives, no temperature
    assert objective_note({"a": finetune, "b": {**finetune, "train.batch_size": 16}}, ["a", "b"], "loss") is None


def test_the_filters_and_the_chosen_run_survive_a_visit_to_another_page(populated_store: Path) -> None:
    """A review set the Kind filter, went to the Overview and came back to an unfiltered table."""
    at = open_page("runs")
    at.multiselect(key="runs-kind").set_value(["pretrain"]).run()
    at.text_input(key="runs-text").set_value("tiny").run()
    second = at.selectbox(key="runs-one").options[-1]
    at.selectbox(key="runs-one").set_value(second).run()
    at.switch_page("../pages/overview.py").run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    assert at.multiselect(key="runs-kind").value == ["pretrain"] and at.text_input(key="runs-text").value == "tiny"
    assert at.selectbox(key="runs-one").value == second
    assert not any("Session State" in w.value for w in at.warning)


def test_two_runs_knn_curves_say_how_far_apart_chance_puts_them(tmp_path: Path) -> None:
    """A review read FALSE's 0.703 against InfoNCE's 0.660 (256 query tiles each) as a gain: under the kNN curves
    the last values' difference comes with its interval and "within noise" when it is inside it."""
    import json

    from core.store.runs import create_run
    from workbench.run_compare_view import knn_noise_note

    def run(name: str, acc: float, queries: int | None) -> object:
        r = create_run(name, "data:\n  name: synthetic\n", tmp_path / "runs", kind="pretrain", state="completed")
        rec = {"step": 50, "loss": 5.0, "knn_acc": acc, "knn_baseline": 0.3}
        if queries is not None:
            rec["knn_queries"] = queries
        (r.path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 6.0}) + "\n" + json.dumps(rec) + "\n")
        return r

    false, infonce = run("false", 0.703, 256), run("infonce", 0.660, 256)
    note = knn_noise_note([false, infonce])
    assert f"{false.id} minus {infonce.id}: within noise: +0.043 [-0.038, +0.123]" in note
    assert "256 and 256 query" in note and "Always answering the majority class scores 30.0% and 30.0%" in note
    far = knn_noise_note([run("far", 0.95, 256), infonce])
    assert ": +0.290 [+" in far and "within noise" not in far
    old = knn_noise_note([run("old", 0.95, None), infonce])  # records made before the count was kept
    assert "+0.290 (its interval is not known" in old and "at most 256 query tiles" in old
    assert knn_noise_note([false]) is None


def test_a_chosen_run_filtered_away_is_replaced_in_the_box_itself(populated_store: Path) -> None:
    """A browser review: after a name filter hid the chosen run, the boxes still showed it while the page showed
    another. The kept choice is now set to the run shown, which the browser is told, not merely dropped."""
    at = open_page("runs")
    ids = at.selectbox(key="runs-one").options
    infonce = next(i for i in ids if i.endswith("tiny-infonce"))
    at.selectbox(key="runs-one").set_value(infonce).run()
    at.text_input(key="runs-text").set_value("tiny-f").run()  # tiny-false and tiny-ft stay
    assert not at.exception
    box = at.selectbox(key="runs-one")
    assert infonce not in box.options and box.value in box.options
    assert box.proto.set_value and box.proto.raw_value == box.value  # the browser is told which run it shows
    assert not any("Session State" in w.value for w in at.warning)


def test_flagged_and_treated_curves_count_every_step_not_the_logged_samples(tmp_path: Path) -> None:
    """A browser review: with logging every 5 steps the Runs chart showed 1 of a run's 10 calibrations."""
    import json

    from core.store.runs import create_run
    from workbench.run_compare_view import curve_series

    run = create_run("fires", "loss:\n  name: false\n", tmp_path / "runs", kind="pretrain", state="completed")
    run.write_status(step=10)
    logged = [{"step": s, "loss": 5.0, "flagged": 1, "calibrated": int(s == 10)} for s in (5, 10)]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    flags = [{"step": s, "anchor_index": 0, "candidate_index": 1, "calibrated": s in (3, 7, 10)} for s in range(1, 11)]
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flags))
    (frame,) = curve_series([run], [run.id], "calibrated", 0.0).values()
    assert frame["calibrated"].sum() == 3 and list(frame["step"]) == list(range(1, 11))
