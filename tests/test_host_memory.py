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
from core.host_memory import keep_freed_host_memory

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


@pytest.mark.slow  # two fresh processes: the full suite, not the fast tier
def test_a_training_process_reuses_the_memory_its_last_step_freed() -> None:
    kept = child("keep")
    if not kept["applied"]:
        pytest.skip("not glibc: malloc left as it is")
    system = child("system")
    # the median step after two: 4 KiB pages mapped in again, step after step (6,000-13,000 measured); kept: the
    # pages of the steps before reused (0 in most steps, at most 3,312 in one of 36)
    assert system["median"] > 3_000
    assert kept["median"] < 1_500 and kept["again"] is True


def test_the_training_commands_keep_it_and_the_others_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """``false-wb`` (and the ``python -m core.<command>`` shims, which go through it) before the command's module."""
    import core.cli as cli

    from types import SimpleNamespace

    calls: list[str] = []
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main names the command in sys.argv
    monkeypatch.setattr(cli, "keep_freed_host_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(cli, "check_arguments", lambda *a: None)
    monkeypatch.setattr(cli, "importlib", SimpleNamespace(import_module=lambda name: SimpleNamespace(
        main=lambda rest: calls.append(name))))
    for cmd in ("pretrain", "segment", "finetune", "evaluate", "compare", "probe", "runs"):
        cli.main([cmd])
    assert calls == ["kept", "core.ssl.pretrain", "core.seg.segment_cli", "kept", "core.seg.finetune_cli",
                     "core.seg.evaluate", "kept", "core.seg.compare", "kept", "core.seg.probe", "core.store.runs_cli"]


LAUNCHED = """
import json, runpy, sys
import core.host_memory as hm
from core.store.launch import MODULES

kept = []
hm.keep_freed_host_memory = lambda: kept.append(sys.argv[0])
for module in MODULES.values():
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
print(json.dumps({"modules": list(MODULES.values()), "kept": kept}))
"""


@pytest.mark.slow  # a fresh process importing every training module
def test_every_module_the_launcher_starts_keeps_it() -> None:
    """The app's launcher (and a comparison's units, and torchrun's ranks) run the modules, not the dispatcher; a
    test calling a module's ``main`` in its own process does not change the process's malloc."""
    out = subprocess.run([sys.executable, "-c", LAUNCHED], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    said = json.loads(out.stdout.strip().splitlines()[-1])
    files = [module.replace(".", "/") + ".py" for module in said["modules"]]  # run_module's sys.argv[0]: its file
    assert len(said["kept"]) == len(files) == 4 and all(k.endswith(f) for k, f in zip(said["kept"], files)), said


def test_it_is_harmless_where_it_cannot_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.host_memory as hm

    monkeypatch.setattr(hm, "_applied", False)
    monkeypatch.setattr(hm, "_glibc", lambda: None)
    assert hm.keep_freed_host_memory() is False
    monkeypatch.undo()
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert hm._glibc() is None  # another allocator: glibc's settings would change nothing


@pytest.mark.slow
def test_the_bench_runs_both_ways_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """bench/host_memory.py (a bench nobody runs breaks unseen), one pair of tiny runs: the kept run is a real
    ``bench/train.py`` process read back from its JSON; the returned run beside it is that run's figures again (a
    second real run of the same code path would double the test's minute, and proves nothing more here)."""
    import importlib.util

    import core.host_memory

    if core.host_memory._glibc() is None:
        pytest.skip("not glibc, or LD_PRELOAD set: nothing to compare")
    spec = importlib.util.spec_from_file_location("bench_host_memory", ROOT / "bench/host_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real, runs = bench.one_run, []

    def one_run(kept: bool, steps: int, overrides: list[str], out: Path) -> dict:
        runs.append(kept)
        if kept:
            return real(kept, steps, overrides, out)
        return {**json.loads(next(out.parent.glob("*-True.json")).read_text()), "freed_host_memory_kept": False}

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(bench, "one_run", one_run)
    monkeypatch.setattr(sys, "argv", ["host_memory.py", "--pairs", "1", "--steps", "2", *TINY])
    monkeypatch.chdir(ROOT)
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    assert runs == [True, False]
    assert "freed memory kept" in lines[0] and "freed memory returned" in lines[1], lines
    assert any(line.startswith("trainer: kept / returned = median 1.000") for line in lines), lines


def test_a_benchmark_given_system_malloc_leaves_it_alone() -> None:
    import core.host_memory as hm

    assert hm.keep_unless(True) is False and hm._applied is False
    assert hm.kept_words(True) == "kept (core/host_memory.py)" and hm.kept_words(False).startswith("returned")
