"""A checkpoint is written beside the training loop (issue 28: a ResNet-50 checkpoint stalled the step that saved it
for about a second): what is written is the state at the saving step, a finished run's files are on disk when
``fit`` returns, and a write that fails fails the run instead of vanishing in a thread."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from core.pretrain import main
from core.ssl import pretrain as pretrain_mod
from core.store.background import BackgroundJobs
from core.store.checkpoint import (encoder_snapshot, load_checkpoint, read_tensors, snapshot_checkpoint,
                                   write_checkpoint)
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--no-progress", "model.encoder=resnet18", "model.proj_hidden=16", "model.proj_dim=8", "data.name=synthetic",
        "data.num_tiles=24", "data.tile_size=40", "data.image_size=32", "train.batch_size=8", "train.knn_every=0",
        "train.max_steps=4", "train.ckpt_every=2"]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)


def test_a_snapshot_keeps_the_state_of_its_step(tmp_path: Path) -> None:
    net = Net().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.head(torch.ones(1, 4)).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    momentum = opt.state[net.head.weight]["momentum_buffer"].clone()
    snap = snapshot_checkpoint(model=net, card={"step": 1}, optimizer=opt)
    enc = encoder_snapshot(net.encoder, {"step": 1}, of_model=snap)
    assert enc.tensors["encoder.weight"] is snap.tensors["model.encoder.weight"]  # one copy for both files
    with torch.no_grad():  # the next steps change everything in place
        for p in net.parameters():
            p.add_(1.0)
    net.head(torch.ones(1, 4)).sum().backward()
    opt.step()
    write_checkpoint(tmp_path / "c.safetensors", snap)
    write_checkpoint(tmp_path / "e.safetensors", enc)
    fresh = Net()
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    load_checkpoint(tmp_path / "c.safetensors", model=fresh, optimizer=fresh_opt)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(fresh_opt.state[fresh.head.weight]["momentum_buffer"], momentum)
    assert torch.equal(read_tensors(tmp_path / "e.safetensors")["encoder.weight"], before["encoder.weight"])
    assert json.loads((tmp_path / "c.json").read_text())["step"] == 1


def test_a_failed_job_is_raised_at_the_next_call_and_quiet_only_when_asked() -> None:
    jobs = BackgroundJobs("t")
    ran: list[str] = []
    jobs.submit(lambda: (threading.Event().wait(0.2), ran.append("first")))
    jobs.submit(ran.append, "second")  # waits for the first: at most one snapshot held, files land in order
    assert ran == ["first"]
    jobs.wait()
    assert ran == ["first", "second"]

    def fail() -> None:
        raise OSError("No space left on device")

    jobs.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        jobs.submit(ran.append, "never")
    assert ran == ["first", "second"]
    jobs.submit(fail)
    jobs.wait(quiet=True)
    jobs.wait()  # nothing pending any more


def test_a_ctrl_c_during_the_wait_still_lets_the_write_land_first() -> None:
    """A second Ctrl-C while the stop's checkpoint was written: the run was unlocked and "from step 40" printed while
    the step-46 file was still being written (the next --resume read step 46)."""
    import os
    import signal
    import time

    jobs, landed = BackgroundJobs("test-writes"), threading.Event()
    jobs.submit(lambda: (time.sleep(0.6), landed.set()))
    # Python's own Ctrl-C, also where the suite was started with SIGINT ignored (a background job of a shell without
    # job control, nohup), which its workers inherit
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()  # a real Ctrl-C while the main thread waits
        with pytest.raises(KeyboardInterrupt):
            jobs.wait()
    finally:
        signal.signal(signal.SIGINT, before)
    assert landed.is_set()  # the file was written before the interrupt went on
    jobs.wait()  # nothing left pending


def test_a_run_that_returns_has_its_last_checkpoint_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    slow = pretrain_mod.write_checkpoint

    def slow_write(path, snap):  # a slow disk: the run must still wait for its last write
        threading.Event().wait(0.3)
        return slow(path, snap)

    monkeypatch.setattr(pretrain_mod, "write_checkpoint", slow_write)
    assert main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"), *TINY]) == 0
    (run,) = list_runs(tmp_path / "runs")
    for name in ("last", "encoder"):
        assert json.loads((run.checkpoint_dir / f"{name}.json").read_text())["step"] == 4
    assert run.status()["state"] == "completed"


def test_a_checkpoint_that_cannot_be_written_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))

    def full_disk(path, snap):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrain_mod, "write_checkpoint", full_disk)
    code = main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"), *TINY])
    (run,) = list_runs(tmp_path / "runs")
    assert code != 0
    assert run.status()["state"] == "failed"
    assert "No space left on device" in run.status().get("error", "") + capsys.readouterr().err


def test_a_save_made_now_writes_the_training_tensors_without_copies_even_tied_ones(tmp_path: Path) -> None:
    """``save_checkpoint`` writes before the next step: no copy of the state (a fifth of a small model's save), except
    where two names share memory (tied weights), which safetensors refuses."""
    from core.store.checkpoint import save_checkpoint

    net = Net().to(memory_format=torch.channels_last)  # a channels-last kernel is copied to be contiguous
    net.tied = nn.Linear(4, 2)
    net.tied.weight = net.head.weight
    snap = snapshot_checkpoint(model=net, card={}, copy=False)
    assert snap.tensors["model.head.bias"].data_ptr() == net.head.bias.data_ptr()  # the weights' own memory
    assert snap.tensors["model.tied.weight"].data_ptr() != net.head.weight.data_ptr()  # the second name: a copy
    save_checkpoint(tmp_path / "n.safetensors", model=net, card={"arch": "net"})
    other = Net()
    other.tied = nn.Linear(4, 2)
    load_checkpoint(tmp_path / "n.safetensors", model=other)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
