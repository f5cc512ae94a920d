"""A comparison's unit in the comparison's own process (``core.seg.unit_inline``): a folder cut short that cannot be
continued is said in one line and the unit starts again in a new one; the unit's run is not left locked (the app
would show it running for as long as the comparison lives). Continuing one: tests/test_launch.py (a real stop)."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import config_to_yaml, load_config
from core.seg.unit_inline import pretrain_unit
from core.store.run_lock import run_locked
from core.store.runs import create_run
from tests.test_pretrain import ROOT, TINY

pytestmark = pytest.mark.slow  # two tiny pretraining runs


def test_a_folder_that_cannot_be_continued_is_said_and_the_unit_starts_again(empty_store: Path) -> None:
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "train.max_steps=1", "name=unit"])
    other = create_run("unit", config_to_yaml(cfg.model_copy(update={"seed": cfg.seed + 1})), empty_store,
                       kind="pretrain", state="stopped")  # made before its preset changed
    broken = create_run("unit", config_to_yaml(cfg), empty_store, kind="pretrain", state="stopped")
    (broken.path / "checkpoints").mkdir(exist_ok=True)
    (broken.path / "checkpoints" / "last.safetensors").write_bytes(b"not a checkpoint")
    for cut_short, says in ((other.path, "was made with other settings"), (broken.path, "cannot continue")):
        lines: list[str] = []
        started: list[Path] = []
        run = pretrain_unit(cfg, empty_store, cut_short, started.append, lines.append, "simclr p0")
        assert run is not None and run.path not in (other.path, broken.path) and started == [run.path]
        assert says in lines[0] and "starts again in a new folder" in lines[0], lines
        assert run.state() == "completed" and not run_locked(run.path)
        assert not run_locked(cut_short)  # the folder it could not continue is not held either
