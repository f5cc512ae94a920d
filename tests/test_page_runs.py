"""The Runs page: table, filters, curves, config and log; delete asks first and never takes a live run."""
from __future__ import annotations

from pathlib import Path

from core.store.runs import list_runs
from tests.pages import errors, open_page, texts
from tests.store import copy_store


def test_renders_with_an_empty_store(empty_store: Path) -> None:
    at = open_page("runs")
    assert not at.exception and "No runs yet" in texts(at)


def test_lists_filters_and_draws_runs(populated_store: Path) -> None:
    at = open_page("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 5 and set(table["kind"]) == {"pretrain", "finetune"}
    assert any("died" in s for s in table["state"]) and any("failed" in s for s in table["state"])
    assert len(at.get("plotly_chart")) >= 1  # the two newest runs with curves on one chart
    at.multiselect(key="runs-kind").set_value(["finetune"]).run()
    assert list(at.dataframe[0].value["kind"]) == ["finetune"]
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
