"""Long phases (generating data, tiling, testing) reach the run's status for the app, with an ETA."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.config import load_config
from core.data import build_dataset
from core.phases import eta_seconds, phase_bar, report_phases
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


def test_the_live_view_shows_the_phase_and_an_eta_before_the_first_step(empty_store: Path) -> None:
    run = create_run("phasing", (ROOT / "configs/demo_cpu.yaml").read_text(), empty_store, state="starting",
                     kind="pretrain")
    run.write_status(pid=os.getpid(), total_steps=300, step=0,
                     phase={"name": "generating 2000 synthetic tiles", "done": 500, "total": 2000,
                            "started": time.time() - 60})
    at = open_page("pretrain")
    bars = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("generating 2000 synthetic tiles: 500 / 2000 · about 3 min") for t in bars), bars
    assert any(t.startswith("step 0 / 300") for t in bars), bars
