"""What a resumed comparison takes from a unit's folder (``core.seg.compare_units.Units``): a unit that completed
but that a kill left unrecorded is recorded from its folder, only when it was made with the comparison's settings
(and, for an evaluation, holds its test scores); anything else is trained again. The whole path: tests/test_finetune.py
(a comparison resumed after its last record was lost)."""
from __future__ import annotations

import json
from pathlib import Path

from core.config import config_to_yaml, load_config
from core.seg.compare_units import Units
from core.store.runs import create_run
from tests.test_pretrain import ROOT, TINY


def test_a_completed_unrecorded_unit_is_taken_only_with_the_same_settings_and_scores(empty_store: Path) -> None:
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "name=unit"])
    units = Units(create_run("cmp", "name: cmp\n", empty_store, kind="compare"))
    pre, ev = ("pretrain", "simclr", 0, None), ("eval", "simclr", 0, 0)
    assert units.completed(pre, cfg) is None  # never started
    run = create_run("unit", config_to_yaml(cfg), empty_store, kind="pretrain", state="stopped")
    units.mark_started(pre, run.path)
    assert units.completed(pre, cfg) is None and units.cut_short(pre) == run.path  # stopped: continued, not taken
    run = create_run("unit", config_to_yaml(cfg), empty_store, kind="pretrain", state="completed")
    units.mark_started(pre, run.path)  # its last folder is the one that counts
    assert units.completed(pre, cfg) == run.path and units.cut_short(pre) is None
    assert units.completed(pre, cfg.model_copy(update={"seed": cfg.seed + 1})) is None  # its preset changed since
    units.mark_started(ev, run.path)  # an evaluation needs its scores
    assert units.completed(ev, cfg) is None
    (run.path / "test_metrics.json").write_text(json.dumps({"miou": 0.5}))
    assert units.completed(ev, cfg) == run.path
    (run.path / "config.yaml").write_text("not: [yaml")  # unreadable settings: trained again
    assert units.completed(pre, cfg) is None
