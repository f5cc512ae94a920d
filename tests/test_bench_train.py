"""bench/train.py, the trainer-against-bare-loop benchmark the GPU check runs, on a tiny model: it must run for every
method and for a detector whose step needs more than the two views (it broke once, unseen, when the trainer's
views gained a third value)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from core.config import config_to_yaml, load_config
from core.ssl.pretrain import Trainer
from core.store.runs import create_run
from tests.test_pretrain import TINY

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # both loops of the benchmark, each a few seconds: the full suite, not the fast tier


def bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench/train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("extra", [
    ["method=simclr", "loss.name=false", "loss.detector=support", "loss.support_views=2", "loss.treatment=attract"],
    ["method=moco", "model.queue_size=32", "loss.name=false", "loss.threshold=0.5"],
])
def test_bare_loop_and_trainer_loop_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    bench = bench_train()
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "train.max_steps=100000", *extra])
    trainer = Trainer(cfg, create_run("bench", config_to_yaml(cfg), tmp_path / "runs"), progress=False)
    bare = bench.bare_loop(trainer, 2)
    views: list[float] = []
    trained, last_checkpoint = bench.trainer_loop(trainer, 2, in_step_views=views)
    assert len(views) == 2 and all(v > 0 for v in views)  # the CPU makes each timed step's views in the step
    assert math.isfinite(bare) and bare > 0
    assert math.isfinite(trained) and trained > 0
    assert last_checkpoint > 0  # the run's last checkpoint was timed apart
    assert (trainer.run.checkpoint_dir / "last.safetensors").is_file()
    assert trainer.step == 5  # 3 warm-up steps and the 2 timed ones


def test_rounds_split_the_steps_evenly() -> None:
    split = bench_train().split
    assert split(40, 5) == [8] * 5 and split(10, 4) == [3, 3, 2, 2] and split(3, 8) == [1, 1, 1]


def test_each_trainer_round_is_read_against_the_bare_rounds_beside_it() -> None:
    paired = bench_train().paired_ratios
    assert paired([90.0, 50.0], [100.0, 80.0, 60.0]) == [1.0, 50.0 / 70.0]
    with pytest.raises(ValueError, match="one more bare round"):
        paired([90.0, 50.0], [100.0, 80.0])
