"""Training processes keep freed host memory (core/host_memory.py): a step's large buffers are not page-faulted in
again every step. Checked in child processes, so the test session's own malloc stays as it was."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pretrain import TINY

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, torch
from core.data.augment import TwoViewAugment

applied = keep_freed_host_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
aug = TwoViewAugment(output_size=64)
tiles = torch.randint(0, 256, (64, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
params = aug.sample(64, 256, 256, torch.Generator().manual_seed(1))

def faults_of_a_step():  # the views of one demo-sized step: buffers of many sizes, made and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    aug.apply(tiles, torch.arange(64), params)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults = [faults_of_a_step() for _ in range(8)]
print(json.dumps({"applied": applied, "again": keep_freed_host_memory(), "median": sorted(faults[2:])[3]}))
"""


def child(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_training_process_reuses_the_memory_its_last_step_freed() -> None:
    kept = child("keep")
    if not kept["applied"]:
        pytest.skip("not glibc: malloc left as it is")
    system = child("system")
    # the median step after two: 4 KiB pages mapped in again, step after step (6,000-13,000 measured); kept: the
    # pages of the steps before reused (0 in most steps, at most 3,312 in one of 36)
    assert system["median"] > 3_000
    assert kept["median"] < 1_500 and kept["again"] is True


def test_the_training_command_lines_keep_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pretrain, finetune and probe (``train_from_cli``) and compare, however started (the app's launcher runs the
    modules, not the dispatcher), once their arguments are read."""
    import argparse

    import core.seg.compare as compare
    import core.store.lifecycle as lifecycle
    from core.config import ConfigError

    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "keep_freed_host_memory", lambda: calls.append("trainer"))
    monkeypatch.setattr(compare, "keep_freed_host_memory", lambda: calls.append("compare"))

    def refused(args: argparse.Namespace, env: object) -> None:
        raise ConfigError("train.lr: refused here")

    assert lifecycle.train_from_cli([], lambda argv: argparse.Namespace(), refused, "training") == (2, None)
    assert compare.main(["--config", str(tmp_path / "none.yaml"), "--jobs", "0"]) == 2
    assert calls == ["trainer", "compare"]


def test_it_is_harmless_where_it_cannot_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.host_memory as hm

    monkeypatch.setattr(hm, "_applied", False)
    monkeypatch.setattr(hm.sys, "platform", "darwin")
    assert hm.keep_freed_host_memory() is False


@pytest.mark.slow
def test_the_bench_runs_both_ways_side_by_side(tmp_path: Path) -> None:
    """bench/host_memory.py (a bench nobody runs breaks unseen), one pair of tiny runs."""
    import os

    env = {**os.environ, "FALSE_WB_DATA": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "bench/host_memory.py", "--pairs", "1", "--steps", "2", *TINY],
                         cwd=ROOT, capture_output=True, text=True, timeout=280, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "freed memory kept" in lines[0] and "freed memory returned" in lines[1], lines
    assert any(line.startswith("trainer: kept / returned = median ") for line in lines), lines
