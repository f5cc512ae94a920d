"""A comparison's unit in the comparison's own process (``core.seg.unit_inline``): a folder cut short that cannot be
continued is said in one line and the unit starts again in a new one; the unit's run is not left locked (the app
would show it running for as long as the comparison lives); a fine-tuning unit stopped mid-run continues in its folder.
A pretraining unit continued after a real stop: tests/test_launch.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import config_to_yaml, load_config
from core.seg.unit_inline import pretrain_unit
from core.store.run_lock import run_locked
from core.store.runs import create_run
from tests.test_pretrain import ROOT, TINY

pytestmark = pytest.mark.slow  # two tiny pretraining runs, a fine-tuning run in two parts


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


def test_a_fine_tuning_unit_cut_short_continues_in_its_folder(empty_store: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A comparison's Stop during a fine-tuning unit: the trainer keeps its stop checkpoint, and the unit, given
    that folder, continues there (the pretraining twin of this runs in tests/test_launch.py, through a real stop)."""
    from core.config import FinetuneConfig
    from core.seg.finetune import FinetuneTrainer
    from core.seg.unit_inline import finetune_unit
    from core.store.lifecycle import StopFlag
    from core.store.runs import Run

    cfg = load_config(ROOT / "configs/finetune_demo_cpu.yaml", [
        "data.num_tiles=40", "data.tile_size=64", "data.crop_size=64", "data.val_fraction=0.2", "data.test_fraction=0.2",
        "data.label_fraction=1.0", "train.batch_size=4", "train.max_steps=4", "train.eval_every=2", "name=ft-unit"],
        FinetuneConfig)
    stop, real_step = StopFlag(), FinetuneTrainer.train_step

    def step_then_stop(self: FinetuneTrainer, step: int) -> float:
        loss = real_step(self, step)
        stop.requested = True  # the comparison's Stop, landing during the first step
        return loss

    monkeypatch.setattr(FinetuneTrainer, "train_step", step_then_stop)
    started: list[Path] = []
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # no score to read: the comparison records nothing for it
        finetune_unit(cfg, empty_store, None, started.append, lines.append, "random p0 s0", stop)
    (folder,) = started
    stopped_at = Run(folder).status()["step"]
    assert Run(folder).state() == "stopped" and Run(folder).last_checkpoint() is not None and 0 < stopped_at < 4
    assert not run_locked(folder)
    monkeypatch.setattr(FinetuneTrainer, "train_step", real_step)
    run = finetune_unit(cfg, empty_store, folder, started.append, lines.append, "random p0 s0", StopFlag())
    assert run.path == folder and started == [folder]  # the same folder, no new one
    assert lines[-1] == f"random p0 s0: fine-tuning continued in {folder.name} from step {stopped_at}", lines
    assert run.state() == "completed" and run.status()["step"] == 4 and run.read_json("test_metrics.json")
    assert f"resumed from step {stopped_at}" in run.log_text() and not run_locked(folder)
