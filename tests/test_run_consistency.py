"""A run folder stays consistent whatever write a kill -9 lands on (issue 10): it resumes, ends with no temp file,
cards that match their checkpoints and an encoder export from the same step, and ends as a straight run ends; and
fine-tuning resumes bit for bit.

The kills are real: a child process whose ``os.replace`` (the last act of every atomic write) exits on the spot
with ``os._exit`` at the chosen write, so nothing is cleaned up, as with kill -9."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.store.runs import list_runs

pytestmark = pytest.mark.slow  # real kills of real runs, seconds each: the full suite, not the fast tier

ROOT = Path(__file__).resolve().parent.parent
PRE = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "data.num_tiles=16", "data.tile_size=48",
       "data.image_size=32", "train.batch_size=8", "model.proj_hidden=32", "model.proj_dim=16", "train.log_every=1",
       "train.ckpt_every=1", "train.max_steps=3", "name=kill"]  # a checkpoint every step: the second is at step 2, one step to go after it
FT = ["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress", "data.num_tiles=24",
      "data.tile_size=48", "data.crop_size=48", "data.val_fraction=0.25", "data.test_fraction=0.25",
      "data.label_fraction=1.0", "train.batch_size=4", "train.max_steps=4", "train.eval_every=2", "train.log_every=1",
      "name=ftkill"]
KILLER = """
import os, sys
target, nth, seen, real = sys.argv[1], int(sys.argv[2]), [0], os.replace
def replace(src, dst, *a, **k):
    if os.path.basename(str(dst)) == target:
        seen[0] += 1
        if seen[0] == nth:
            os._exit(137)  # no cleanup, no status: what kill -9 leaves
    return real(src, dst, *a, **k)
os.replace = replace
module = __import__("core." + sys.argv[3], fromlist=["main"])
sys.exit(module.main(sys.argv[4:]))
"""


def killed_at(target: str, nth: int, module: str, args: list[str], runs: Path) -> int:
    env = {"FALSE_WB_RUNS": str(runs), "FALSE_WB_DATA": str(runs.parent / "data"), "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", KILLER, target, str(nth), module, "--runs-root", str(runs), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode


def assert_consistent(run: Path, last_step: int) -> None:
    assert not [p for p in run.rglob("*.tmp")], "temp files left behind"
    ckpts = run / "checkpoints"
    for f in ckpts.glob("*.safetensors"):
        card = json.loads(f.with_suffix(".json").read_text())
        assert card["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest(), f"{f.name}: its card is of another file"
    last = json.loads((ckpts / "last.json").read_text())
    assert last["step"] == last_step
    if (ckpts / "encoder.json").exists():
        assert json.loads((ckpts / "encoder.json").read_text())["step"] == last_step
    steps = [r["step"] for r in (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert steps == sorted(set(steps)), "records duplicated or out of order"


@pytest.mark.parametrize("target,nth,what", [
    ("last.safetensors", 2, "inside the second checkpoint write"),
    ("last.json", 2, "between the second checkpoint and its card"),
    ("encoder.safetensors", 2, "between the second checkpoint and its encoder export"),
    ("last.safetensors", 1, "before the first checkpoint"),
])
def test_a_kill_at_any_write_of_pretraining_leaves_a_run_that_resumes(tmp_path: Path, target: str, nth: int,
                                                                      what: str, monkeypatch) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))  # the killed process's data cache
    assert killed_at(target, nth, "pretrain", PRE, runs) == 137, what
    [run] = list_runs(runs)
    assert run.state() == "died" and not run.is_live()
    # the resume and the straight run in processes started as the killed one was: under xdist the test process's
    # kernels differed from a fresh process's by 1e-4 after three steps on this machine (both at d5076f3 and after)
    assert killed_at("no-such-file", 0, "pretrain", ["--resume", str(run.path), "--no-progress"], runs) == 0, what
    assert run.state() == "completed" and run.status()["step"] == 3
    assert_consistent(run.path, 3)
    if (target, nth) == ("last.safetensors", 2):  # and it ends where a straight run ends (same threads: same kernels)
        assert killed_at("no-such-file", 0, "pretrain", PRE, tmp_path / "straight") == 0
        [straight] = list_runs(tmp_path / "straight")
        assert [m["step"] for m in run.metrics()] == [1, 2, 3]  # the records past the checkpoint dropped, none twice
        a, b = load_file(str(straight.last_checkpoint())), load_file(str(run.last_checkpoint()))
        for k in a:
            if k.startswith("model."):
                assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5, rtol=1e-4), k
        assert [m["loss"] for m in run.metrics()] == pytest.approx([m["loss"] for m in straight.metrics()],
                                                                   rel=1e-4, abs=1e-5)


def test_a_kill_inside_run_creation_leaves_no_half_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert killed_at("config.yaml", 1, "pretrain", PRE, runs) == 137
    assert list_runs(runs) == []  # only a hidden staging folder, which a later creation clears when it is stale
    assert [p.name.startswith(".creating-") for p in runs.iterdir()] == [True]


@pytest.fixture()
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """This process and the killed one on one thread: the same kernels, so the same bits."""
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fine_tuning_killed_and_resumed_equals_the_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     one_thread: None) -> None:
    """Weight averaging from step 2 on (0.3 of 4 steps): the running mean of step 2 must survive a kill in the step-4
    write of the average, and the resumed run's last weights and average must both be the straight run's. (A kill in
    the step-4 last.safetensors write, with or without averaging, resumes from step 2 the same way: those cases were
    dropped to keep the suite under 10 minutes.) The straight run and the resume run in this process; the kill needs
    its own."""
    from core.seg.finetune_cli import main as finetune_main

    extra = ["train.average_from=0.3"]
    broken, whole = tmp_path / "broken", tmp_path / "whole"
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))  # the killed process's data cache too
    assert finetune_main([*FT, *extra, "--runs-root", str(whole)]) == 0
    assert killed_at("average-4.safetensors", 1, "finetune", [*FT, *extra], broken) == 137
    [run] = list_runs(broken)
    assert json.loads((run.path / "checkpoints/last.json").read_text())["step"] == 2
    # resumed with a random state that is not the killed one's: the checkpoint must restore it
    assert finetune_main(["--resume", str(run.path), "--no-progress"]) == 0
    [ref] = list_runs(whole)
    for name in ("last", "best"):  # with averaging, best is the average
        a = load_file(str(ref.path / f"checkpoints/{name}.safetensors"))
        b = load_file(str(run.path / f"checkpoints/{name}.safetensors"))
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert differ == [], f"{name}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
    losses = lambda r: [m["loss"] for m in r.metrics() if "loss" in m]  # noqa: E731
    assert losses(run) == losses(ref) and len(losses(ref)) == 4
    assert_consistent(run.path, 4)
