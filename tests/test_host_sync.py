"""A training step never waits on the host (issue 28, item 1): between logged steps nothing is read back.

On a GPU every read of a device tensor by the host (``item``, ``tolist``, ``bool``, ``cpu``, a ``nonzero`` whose
size depends on the data, a boolean-mask index) makes the host wait for the GPU to finish all queued work. On the
CPU there is no such wait to measure, so these tests count the reads themselves, on the main thread, during ``fit``:
the only ones allowed are in ``StepRecords.drain`` (a logged step, a checkpoint, the end, a stop), in a checkpoint's
``save`` and in the kNN monitor. ``torch.optim``'s own reads of its step counters are not counted: torch keeps those
on the host (on a GPU too), so they wait for nothing.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.ssl import pretrain as pretrain_mod
from core.ssl.step_records import StepRecords
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
aten = torch.ops.aten
READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.is_nonzero.default,
         aten.masked_select.default}
TINY = ["--no-progress", "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8", "data.name=synthetic",
        "data.num_tiles=24", "data.tile_size=40", "data.image_size=32", "train.batch_size=8", "train.optimizer=adamw",
        "train.lr=0.001", "train.warmup_steps=2", "seed=3", "train.knn_every=0", "loss.threshold=0.3"]


class HostReads(TorchDispatchMode):
    """Counts reads of tensor values by the host on this thread, each with where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed = 0  # > 0 inside drain, save, the kNN monitor
        self.bad: list[str] = []
        self.good = 0

    def note(self, what: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        stack = traceback.extract_stack()
        if any(f"{os.sep}torch{os.sep}optim{os.sep}" in f.filename for f in stack):
            return  # torch.optim reads its host-side step counters (see the module docstring)
        if self.allowed:
            self.good += 1
        else:
            here = [f"{Path(f.filename).name}:{f.lineno}" for f in stack if "/core/" in f.filename][-3:]
            self.bad.append(f"{what} at {' < '.join(reversed(here))}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        index_by_mask = func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))
        if func in READS or index_by_mask:
            self.note(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A HostReads active during the run; Python-level reads (tolist, cpu, numpy, item) counted too."""
    reads = HostReads()
    for name in ("tolist", "cpu", "numpy", "item"):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *a, _original=original, _name=name, **k):
            reads.note(f"Tensor.{_name}")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)

    def allow(owner, name: str) -> None:
        original = getattr(owner, name)

        def wrapped(*a, **k):
            reads.allowed += 1
            try:
                return original(*a, **k)
            finally:
                reads.allowed -= 1

        monkeypatch.setattr(owner, name, wrapped)

    allow(StepRecords, "drain")
    allow(pretrain_mod.Trainer, "save")
    allow(pretrain_mod.KnnMonitor, "measure")
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return reads


def run(tmp_path: Path, reads: HostReads | None, *overrides: str, name: str = "runs") -> Path:
    args = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / name), *TINY, *overrides]
    if reads is None:
        assert pretrain_mod.main(args) == 0
    else:
        with reads:
            assert pretrain_mod.main(args) == 0
    (found,) = list_runs(tmp_path / name)
    return found.path


def test_the_counter_sees_a_read() -> None:
    """Positive control: the reads these tests look for are seen."""
    reads = HostReads()
    with reads:
        torch.ones(3).nonzero()
        bool(torch.ones(1) > 0)
        torch.ones(3)[torch.tensor([True, False, True])]
    assert len(reads.bad) == 3, reads.bad


# step 5 is the one that matters: past the warm-up and the filling of the MoCo queue, neither logged nor a checkpoint
STEPS = ["train.max_steps=6", "train.log_every=3", "train.ckpt_every=4"]
METHODS = {
    "false-global": ["method=simclr", "loss.name=false"],
    "false-per-anchor-k2-symmetric": ["method=simclr", "loss.name=false", "loss.selection=per_anchor",
                                      "loss.topk=2", "loss.symmetric=true"],
    "false-global-symmetric": ["method=simclr", "loss.name=false", "loss.symmetric=true"],
    "nearest-eliminate": ["method=simclr", "loss.name=false", "loss.detector=nearest", "loss.treatment=eliminate"],
    "nearest-similarity-attract": ["method=simclr", "loss.name=false", "loss.detector=nearest",
                                   "loss.similarity=0.5", "loss.treatment=attract"],
    "support-fncc": ["method=simclr", "loss.name=false", "loss.detector=support"],
    "info-nce": ["method=simclr", "loss.name=info_nce"],
    "dcl": ["method=simclr", "loss.name=dcl"],
    "moco-false": ["method=moco", "loss.name=false", "model.queue_size=16", "loss.selection=per_anchor"],
}


# the fast tier covers each form of flags (padded list, dense mask, mirrors of both) and MoCo; the rest run in CI
FAST = {"false-global-symmetric", "moco-false"}  # the default loss and the queue; the other strategies: full suite


# counted in the logging test below, whose every-third run is this test's run
LOGGING_TESTED = {"false-per-anchor-k2-symmetric"}


@pytest.mark.parametrize("method", [m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in METHODS
                                    if m not in LOGGING_TESTED])
def test_a_step_between_logged_steps_reads_nothing(tmp_path: Path, counted: HostReads, method: str) -> None:
    path = run(tmp_path, counted, *STEPS, *METHODS[method])
    assert counted.bad == [], counted.bad
    assert counted.good > 0  # the drains did read (positive control)
    metrics = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6]


@pytest.mark.slow  # a whole run: the full suite (the fast tier is kept under 3 minutes)
def test_the_oracle_reads_nothing_either(tmp_path: Path, counted: HostReads) -> None:
    """The oracle's dense mask path (labels: the synthetic set has them)."""
    run(tmp_path, counted, *STEPS, "method=simclr", "loss.name=false", "loss.detector=oracle",
        "loss.treatment=attract")
    assert counted.bad == [], counted.bad


def _rows(path: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (path / name).read_text().splitlines() if x.strip()]


def _without_clock(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("images_per_s", "time")}


@pytest.mark.parametrize("method", ["false-per-anchor-k2-symmetric", pytest.param("moco-false", marks=pytest.mark.slow)])
def test_logging_every_step_or_every_third_writes_the_same_records(tmp_path: Path, counted: HostReads,
                                                                   method: str) -> None:
    """And the every-third run (``STEPS``: a checkpoint between logged steps) reads nothing between them."""
    every = run(tmp_path, None, "train.max_steps=6", "train.log_every=1", "train.ckpt_every=4", *METHODS[method],
                name="every")
    third = run(tmp_path, counted, *STEPS, *METHODS[method], name="third")
    assert counted.bad == [] and counted.good > 0, counted.bad
    flags = _rows(every, "fns.jsonl")
    assert len(flags) > 6 and flags == _rows(third, "fns.jsonl")  # every field, in the same order
    by_step = {m["step"]: _without_clock(m) for m in _rows(every, "metrics.jsonl")}
    assert [_without_clock(m) for m in _rows(third, "metrics.jsonl")] == [by_step[3], by_step[6]]


@pytest.mark.slow  # a whole run or process start: the full suite, not the fast tier (kept under 3 minutes)
def test_a_stop_between_logged_steps_then_resume_gives_the_straight_runs_records(tmp_path: Path, monkeypatch,
                                                                                    capsys) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    straight = run(tmp_path, None, "train.max_steps=8", "train.log_every=4", "train.ckpt_every=3",
                   *METHODS["false-per-anchor-k2-symmetric"], name="straight")
    original = pretrain_mod.Trainer.train_step

    def stop_at_five(self, step):
        out = original(self, step)
        if step == 4:  # the fifth step: neither logged nor a checkpoint
            os.kill(os.getpid(), signal.SIGTERM)  # the workbench's Stop
        return out

    monkeypatch.setattr(pretrain_mod.Trainer, "train_step", stop_at_five)
    args = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "stopped"), *TINY,
            "train.max_steps=8", "train.log_every=4", "train.ckpt_every=3", *METHODS["false-per-anchor-k2-symmetric"]]
    capsys.readouterr()
    assert pretrain_mod.main(args) == 130  # as an interrupted command: `pretrain && finetune` stops there (it was 0)
    (stopped,) = list_runs(tmp_path / "stopped")
    # the terminal says how to go on; the log says the stop once (it said it twice)
    said = capsys.readouterr().out.strip()
    # the step it stands at (where --resume goes on), not the last logged one (it said "step 4")
    assert said.startswith(f"stopped: {stopped.path}; step 5, last logged loss ") and \
        said.endswith(f" at step 4 (continue it with --resume {stopped.path})"), said
    assert (stopped.path / "log.txt").read_text().count("stopped at step 5") == 1
    assert json.loads((stopped.path / "checkpoints" / "last.json").read_text())["step"] == 5
    assert max(r["step"] for r in _rows(stopped.path, "fns.jsonl")) <= 5
    monkeypatch.setattr(pretrain_mod.Trainer, "train_step", original)
    assert pretrain_mod.main(["--resume", str(stopped.path), "--no-progress"]) == 0
    assert _rows(stopped.path, "fns.jsonl") == _rows(straight, "fns.jsonl")


def test_a_non_finite_loss_between_logged_steps_fails_naming_its_step(tmp_path: Path, monkeypatch) -> None:
    """The check moved to the drain: it names the first bad step, and no checkpoint holds its weights."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    original = StepRecords.add

    def poisoned(self, step, loss, *a, **k):
        return original(self, step, loss * float("nan") if step == 3 else loss, *a, **k)

    monkeypatch.setattr(StepRecords, "add", poisoned)
    args = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"), *TINY,
            "train.max_steps=8", "train.log_every=4", "train.ckpt_every=4", "method=simclr", "loss.name=false"]
    assert pretrain_mod.main(args) != 0
    (found,) = list_runs(tmp_path / "runs")
    assert "loss became nan at step 3" in (found.path / "log.txt").read_text()
    assert not (found.path / "checkpoints" / "last.safetensors").exists()
