"""The start page of `streamlit run workbench` renders, with and without runs on disk."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.runs import create_run

APP = str(Path(__file__).resolve().parent.parent / "workbench" / "streamlit_app.py")


def test_start_page_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "FALSE workbench"
    assert any("No runs yet" in i.value for i in at.info)


def test_start_page_lists_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    run = create_run("demo", "method: simclr\n", tmp_path / "runs")
    run.write_status(state="completed", step=5, total_steps=5)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == [run.id] and list(table["state"]) == ["completed"]
