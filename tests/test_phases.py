"""Long phases (generating data, tiling, testing) reach the run's status for the app, with an ETA."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.config import load_config
from core.data import build_dataset
from core.phases import eta_seconds, phase_bar, phase_text, report_phases, rough_duration
from core.store.lifecycle import phase_listener
from core.store.runs import create_run
from tests.pages import open_page

ROOT = Path(__file__).resolve().parent.parent


def test_a_bar_tells_the_listener_and_the_phase_is_cleared_at_the_end() -> None:
    told: list = []
    with report_phases(told.append):
        with phase_bar(total=3, desc="tiling x", disable=True) as bar:
            for _ in range(3):
                bar.update()
    assert told[0]["name"] == "tiling x" and told[0]["done"] == 0 and told[0]["total"] == 3
    assert told[-3]["done"] == 3 and told[-2] is None  # the end is always told, then the closed phase is cleared
    assert told[-1] is None  # and again when the listener goes
    with phase_bar(total=2, disable=True) as bar:  # no listener: a plain bar
        bar.update(2)
    assert told[-1] is None
    told.clear()
    with report_phases(told.append):
        stale = phase_bar(total=5, desc="left open by an error", disable=True)
        with phase_bar(total=2, desc="validating", disable=True) as live:
            stale.close()  # closed late (e.g. by the garbage collector): the live phase stays
            assert told[-1]["name"] == "validating"
            live.update(2)
        assert told[-1] is None  # the live one's own close ends it


def test_generating_the_synthetic_set_is_a_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", ["data.num_tiles=12", "data.tile_size=32"])
    told: list = []
    with report_phases(told.append):
        build_dataset(cfg.data, progress=False)
    names = {t["name"] for t in told if t}
    assert "generating 12 synthetic tiles" in names and max(t["done"] for t in told if t) == 12


def test_the_listener_writes_the_phase_into_the_run_status(tmp_path: Path) -> None:
    run = create_run("x", "method: simclr\n", tmp_path / "runs", state="starting", kind="pretrain")
    tell = phase_listener(run.path)
    tell({"name": "tiling y", "done": 2, "total": 5, "started": 1.0})
    assert run.status()["phase"]["done"] == 2 and run.status()["state"] == "starting"
    tell(None)
    assert run.status()["phase"] is None
    assert phase_listener(None) is None


def test_eta_is_the_pace_so_far() -> None:
    assert eta_seconds(0, 10, 0.0, now=5.0) is None and eta_seconds(3, None, 0.0, now=5.0) is None
    assert eta_seconds(2, 10, 100.0, now=110.0) == pytest.approx(40.0)
    assert eta_seconds(16, 2000, 0.0, now=12.0) is None  # under 5 % done: the start-up is still in the pace
    assert eta_seconds(100, 2000, 0.0, now=10.0) == pytest.approx(190.0)


def test_the_live_view_shows_the_phase_and_an_eta_before_the_first_step(empty_store: Path) -> None:
    run = create_run("phasing", (ROOT / "configs/demo_cpu.yaml").read_text(), empty_store, state="starting",
                     kind="pretrain")
    run.write_status(pid=os.getpid(), total_steps=300, step=0,
                     phase={"name": "generating 2000 synthetic tiles", "done": 500, "total": 2000,
                            "started": time.time() - 60, "unit": "tile"})
    at = open_page("pretrain")
    bars = [p.proto.text for p in at.get("progress")]
    assert "generating 2000 synthetic tiles: 500 / 2000 tiles, about 3 min left" in bars, bars
    assert any(t.startswith("step 0 / 300") for t in bars), bars


def test_a_phase_is_said_with_its_total_unit_and_time_left_or_says_its_total_is_not_known() -> None:
    now = 1000.0
    testing = {"name": "testing the best model", "done": 3, "total": 9, "started": now - 30, "unit": "scene"}
    assert phase_text(testing, now) == "testing the best model: 3 / 9 scenes, about 1 min left"
    assert phase_text({**testing, "done": 0}, now) == "testing the best model: 0 / 9 scenes, 30 s so far"
    assert phase_text({**testing, "done": 9}, now) == "testing the best model: 9 / 9 scenes"
    assert phase_text({**testing, "total": None, "done": 0}, now) == \
        "testing the best model: total not known yet, 30 s so far"  # not "testing the best model: 0"
    assert phase_text({**testing, "total": None, "done": 1}, now) == \
        "testing the best model: 1 scene done (total not known yet), 30 s so far"
    assert phase_text({"name": "BatchNorm", "done": 1, "total": 4, "started": now - 1, "unit": "batch"}, now) == \
        "BatchNorm: 1 / 4 batches, about 5 s left"
    assert phase_text({"name": "linear head", "done": 7, "total": 20, "started": now - 7, "unit": "epoch"}, now) == \
        "linear head: 7 / 20 epochs, about 15 s left"  # not "epoches" (the review saw it)
    assert phase_text({"name": "x", "done": 2, "total": 4}, now) == "x: 2 / 4"  # tqdm's default unit, no start
    assert [rough_duration(s) for s in (0, 33, 61, 150, 3599, 7300)] == \
        ["5 s", "35 s", "1 min", "2 min", "1 h 00 min", "2 h 02 min"]


def test_a_total_learnt_on_the_way_reaches_the_watcher_at_once() -> None:
    """The test of whole scenes learns its total from the first scene's progress call; the watcher must not wait a
    second (or to the end) to hear it."""
    told: list = []
    with report_phases(told.append):
        with phase_bar(total=None, desc="testing the best model", unit="scene", disable=True) as bar:
            assert told[-1]["total"] is None and told[-1]["unit"] == "scene"
            bar.step_to(1, 9)
            assert told[-1]["done"] == 1 and told[-1]["total"] == 9
            bar.step_to(2, 9)  # within the second: throttled, as before
            assert told[-1]["done"] == 1


def test_the_live_view_says_a_phase_without_its_total_in_words(empty_store: Path) -> None:
    run = create_run("testing", (ROOT / "configs/finetune_demo_cpu.yaml").read_text(), empty_store,
                     state="running", kind="finetune")
    run.write_status(pid=os.getpid(), total_steps=4, step=4,
                     phase={"name": "testing the best model", "done": 3, "total": 9, "started": time.time() - 30,
                            "unit": "scene"})
    at = open_page("runs")
    at.selectbox(key="runs-one").set_value(run.id).run()
    bars = [p.proto.text for p in at.get("progress")]
    assert "testing the best model: 3 / 9 scenes, about 1 min left" in bars, bars
    run.write_status(phase={"name": "testing the best model", "done": 0, "total": None, "started": time.time() - 5,
                            "unit": "scene"})
    at.run()
    bars = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("testing the best model: total not known yet, ") for t in bars), bars
