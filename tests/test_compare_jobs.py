"""A comparison's units several at once (``jobs``, ``--jobs``), each in its own process: pretraining units and then
each evaluation once its encoder is recorded. The same table as one at a time, a cap to the machine, one GPU per
unit, a stop that reaches every unit, a resume that keeps the finished ones."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from core.seg import unit_jobs
from core.seg.compare import main as compare_main
from core.store import launch
from core.store.runs import Run, list_runs, read_jsonl
from tests.test_finetune import compare_yaml

pytestmark = pytest.mark.slow  # small comparisons, processes each (the fake-process tests take a second or two)


@pytest.fixture()
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """The in-process comparison and the unit processes on one thread each: equal kernels, so equal bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(unit_jobs, "threads_per_job", lambda jobs: 1)
    yield
    torch.set_num_threads(before)


def _table(tmp_path: Path, extra: str) -> tuple[dict, Path]:
    tmp_path.mkdir()
    runs = tmp_path / "runs"
    config = compare_yaml(tmp_path, extra, methods="[simclr]")  # two pretraining units: one pair at once
    assert compare_main(["--config", str(config), "--runs-root", str(runs)]) == 0
    cmp_run = next(r for r in list_runs(runs) if r.kind() == "compare")
    return cmp_run.read_json("comparison.json"), cmp_run.path


def test_units_at_once_give_the_table_of_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       one_thread: None) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    one, _ = _table(tmp_path / "one", "")
    two, two_path = _table(tmp_path / "two", "jobs: 2\n")
    assert two["methods"] == one["methods"] and two["differences"] == one["differences"]  # bit for bit
    keys = ("method", "pretrain_seed", "seed", "miou", "oa", "kappa", "iou")
    # the units in the one-at-a-time order, whatever order they finished in
    assert [[u[k] for k in keys] for u in two["units"]] == [[u[k] for k in keys] for u in one["units"]]
    log = (two_path / "log.txt").read_text()
    assert "2 of 2 at once" in log and log.count("pretraining into") == 2  # simclr x 2 seeds
    assert log.count(": probe into") == 2  # simclr x 2 seeds, each probe in its own process
    pretrained = [r for r in list_runs(tmp_path / "two" / "runs") if r.kind() == "pretrain"]
    assert len(pretrained) == 2 and all(r.state() == "completed" for r in pretrained)
    probes = list_runs(two_path / "probe_runs")
    assert len(probes) == 2 and all(r.state() == "completed" and r.kind() == "probe" for r in probes)
    assert all(Path(u["record"]).parent == two_path / "probes" for u in two["units"])  # recorded as before


# ------------------------------------------------------------------------------------------------ fake processes
class FakeUnit:
    """A unit's process that completes at once (a probe's record written), or, ``hang``, runs until it is stopped;
    ``on_poll`` runs at its first poll (e.g. the comparison's Stop)."""

    def __init__(self, run: Run, kind: str, hang: bool = False, on_poll: Any = None) -> None:
        self.run, self.pid, self.on_poll = run, os.getpid(), on_poll
        self.returncode: int | None = None if hang else 0
        if not hang:
            if kind == "probe":
                record = {"protocol": "probe", "split": "test", "miou": 0.5, "oa": 0.75, "kappa": 0.25,
                          "iou": {"a": 0.5, "b": 0.5}, "evaluation": "whole scenes", "class_table": []}
                (run.path / "test_metrics.json").write_text(json.dumps(record))
            run.write_status(state="running")  # as a unit's process records itself: running, then its end
            run.write_status(state="completed")

    def poll(self) -> int | None:
        if self.on_poll is not None:
            hook, self.on_poll = self.on_poll, None
            hook()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.run.write_status(state="stopped")
            self.returncode = -sig

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    kill = send_signal


@pytest.fixture()
def fake_spawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """``launch._spawn`` without processes: every start recorded (run name, kind, env); a test may set
    ``starts.hang`` to a run-name suffix whose unit then runs until stopped, and the comparison is stopped (SIGTERM
    to this process, as the app's Stop) when that unit is first polled."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(unit_jobs, "machine_cores", lambda: 2)  # the same caps on any machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    starts: Any = _Starts()

    def spawn(run: Run, args: list[str], kind: str, processes: int = 1, env: dict[str, str] | None = None):
        name = run.config()["name"]  # e.g. tiny-compare-random-p1-s1 (a folder name may have a -1 after it)
        starts.append({"name": name, "kind": kind, "env": dict(env or {})})
        hang = bool(starts.hang) and name.endswith(starts.hang)
        return FakeUnit(run, kind, hang, (lambda: os.kill(os.getpid(), signal.SIGTERM)) if hang else None)

    monkeypatch.setattr(launch, "_spawn", spawn)
    return starts


class _Starts(list):
    hang: str | None = None


def _random_only(tmp_path: Path, extra: str = "") -> Path:
    """A comparison of evaluation units only (random init: no pretraining), two pretraining seeds."""
    return compare_yaml(tmp_path, extra, methods="[random]")


def _compare_run(runs: Path) -> Run:
    return next(r for r in list_runs(runs) if r.kind() == "compare")


@pytest.mark.parametrize("failing", ["pretrain", "probe"])
def test_a_unit_that_fails_fails_the_comparison_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], failing: str) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))

    def spawn(run: Run, args: list[str], kind: str, processes: int = 1, env: dict[str, str] | None = None):
        if kind != failing:
            return FakeUnit(run, kind)
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])

    monkeypatch.setattr(launch, "_spawn", spawn)
    runs = tmp_path / "runs"
    config = compare_yaml(tmp_path, "jobs: 2\n", methods="[simclr, random]")  # simclr p0 and random p0 s0 first
    assert compare_main(["--config", str(config), "--runs-root", str(runs)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    what = {"pretrain": "simclr p0: pretraining", "probe": "random p0 s0: probe"}[failing]
    assert len(errors) == 1 and f"{what} ended before it began training (exit code 3" in errors[0], errors
    assert _compare_run(runs).state() == "failed"


def test_jobs_flag_is_capped_to_the_cores(tmp_path: Path, fake_spawn: list[dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    assert compare_main(["--config", str(_random_only(tmp_path)), "--runs-root", str(runs), "--jobs", "99"]) == 0
    assert capsys.readouterr().out.count("jobs: 99 capped to 2 (2 cores)") == 1
    assert "jobs: 99 capped to 2 (2 cores)" in _compare_run(runs).log_text()
    assert sorted(s["kind"] for s in fake_spawn) == ["probe", "probe"]  # random p0 s0, random p1 s0: at once
    assert all(s["env"]["OMP_NUM_THREADS"] == str(torch.get_num_threads()) for s in fake_spawn)


def test_each_unit_gets_the_gpu_of_its_slot(tmp_path: Path, fake_spawn: list[dict[str, Any]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    runs = tmp_path / "runs"
    assert compare_main(["--config", str(_random_only(tmp_path)), "--runs-root", str(runs), "--jobs", "4"]) == 0
    assert sorted(s["env"]["CUDA_VISIBLE_DEVICES"] for s in fake_spawn) == ["0", "1"]
    assert "jobs: 4 capped to 2 (2 GPUs x 1)" in _compare_run(runs).log_text()  # units_per_gpu: 1


def test_resume_after_a_stop_keeps_the_finished_units(tmp_path: Path, fake_spawn: Any) -> None:
    runs = tmp_path / "runs"
    config = _random_only(tmp_path, "seeds: [0, 1]\njobs: 2\n")  # 4 probes: p0 s0 and p0 s1, then p1 s0 and p1 s1
    fake_spawn.hang = "p1-s1"  # still running when the comparison is stopped
    assert compare_main(["--config", str(config), "--runs-root", str(runs)]) == 130
    cmp_run = _compare_run(runs)
    assert cmp_run.state() == "stopped"
    stopped = next(r for r in list_runs(cmp_run.path / "probe_runs") if r.config()["name"].endswith("p1-s1"))
    assert stopped.state() == "stopped"  # the stop reached the evaluation unit
    finished = [(u["pretrain_seed"], u["seed"]) for u in read_jsonl(cmp_run.path / "units.jsonl")]
    assert (0, 0) in finished and (0, 1) in finished and (1, 1) not in finished
    fake_spawn.hang, before = None, len(fake_spawn)
    assert compare_main(["--resume", str(cmp_run.path), "seeds=[0,1,2]"]) == 2  # dropped without a word before
    assert cmp_run.state() == "stopped" and len(fake_spawn) == before
    assert compare_main(["--resume", cmp_run.path.name, "--runs-root", str(runs)]) == 0  # by name, as every --resume
    again = [s["name"].rsplit("-p", 1)[1] for s in fake_spawn[before:]]
    assert again == ["1-s1"]  # only the unit cut short runs again: none twice
    # p1 s0 completed at once, and the stop may land before its record: then it is recorded from its folder
    assert ((1, 0) in finished) != ("random p1 s0: evaluation had completed in" in cmp_run.log_text())
    units = read_jsonl(cmp_run.path / "units.jsonl")
    assert sorted((u["pretrain_seed"], u["seed"]) for u in units) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert cmp_run.state() == "completed" and len(cmp_run.read_json("comparison.json")["units"]) == 4
    assert (cmp_run.path / "comparison.json").stat().st_mtime >= cmp_run.status()["resumed"]  # its row: this result


def test_a_stop_reaches_every_unit_running_at_once_and_a_resume_continues_each(empty_store: Path) -> None:
    """A pretraining unit and an evaluation (fine-tuning) unit running at once, through the app's launcher: one
    Stop stops both with their checkpoints; a Resume continues each in its own folder from its step."""
    from tests.test_launch import _wait, stoppable_compare

    # unit order: simclr p0's pretraining, then random p0's fine-tuning (no encoder to wait for): both at once
    cfg = stoppable_compare("jobs-stop", methods=["simclr", "random"], jobs=2)
    cfg = cfg.model_copy(update={"finetune_overrides": [*cfg.finetune_overrides, "train.log_every=1",
                                                        "train.batch_size=4", "train.max_steps=500"]})
    run = launch.launch("compare", cfg)
    units = lambda: [r for r in list_runs(empty_store) if r.kind() in ("pretrain", "finetune")]  # noqa: E731
    _wait(run, lambda: len(units()) == 2 and all(len(u.metrics()) >= 1 and u.state() == "running" for u in units()),
          timeout=180)  # both at once
    assert sorted(u.kind() for u in units()) == ["finetune", "pretrain"]
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live())
    assert run.state() == "stopped", (run.status(), run.log_text()[-2000:])
    assert sorted(u.state() for u in units()) == ["stopped", "stopped"]  # each kept its checkpoint; none left running
    assert not any(u.is_live() for u in units())
    # a resume continues each unit cut short in its own folder, from its checkpoint: no new folder, no step lost
    stopped_at = {u.id: u.status()["step"] for u in units()}
    launch.resume(run)
    _wait(run, lambda: run.log_text().count("continued in") == 2
          and all(u.state() == "running" and u.status().get("step", 0) > stopped_at[u.id] for u in units()))
    assert {u.id for u in units()} == set(stopped_at)
    assert all(f"resumed from step {stopped_at[u.id]}" in u.log_text() for u in units()), [
        u.log_text()[-500:] for u in units()]
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live() and not any(u.is_live() for u in units()))


def test_a_comparison_shows_its_data_generation_as_a_phase(tmp_path: Path, fake_spawn: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A comparison's first minute (its evaluation set generated) left its status without a phase: the page showed
    the launch line only."""
    phases: list[dict] = []
    real = Run.write_status

    def write_status(self: Run, **fields: Any) -> None:
        if self.kind() == "compare" and isinstance(fields.get("phase"), dict):
            phases.append(fields["phase"])
        real(self, **fields)

    monkeypatch.setattr(Run, "write_status", write_status)
    runs = tmp_path / "runs"
    assert compare_main(["--config", str(_random_only(tmp_path)), "--runs-root", str(runs)]) == 0
    names = {p.get("name") for p in phases}
    assert any(str(n).startswith("generating") for n in names), names
    assert _compare_run(runs).status().get("phase") is None  # cleared at the end


def test_a_comparison_launched_by_the_app_names_a_command_that_makes_it_again(tmp_path: Path) -> None:
    """A review read "Command: python -m core.compare --run-dir <folder>" under a comparison launched from the page:
    the launcher's form, which names none of the settings picked there. Its folder's config file holds them all."""
    from argparse import Namespace

    from core.config import config_to_yaml, load_config
    from core.seg.compare import _command
    from core.seg.compare_config import CompareConfig
    from core.store.runs import create_run

    cfg = load_config(Path("configs/compare_cpu.yaml"), ["methods=[simclr,simclr_false]", "pretrain_seeds=[0,1]"],
                      CompareConfig)
    run = create_run(cfg.name, config_to_yaml(cfg), tmp_path / "runs", kind="compare", state="starting")
    page = Namespace(run_dir=str(run.path), config=None, out=None)
    command = _command(page, ["--run-dir", str(run.path)], run)
    assert command == f"python -m core.compare --config {run.path / 'config.yaml'}"
    assert load_config(run.path / "config.yaml", [], CompareConfig) == cfg  # the same comparison, every setting
    typed = Namespace(run_dir=None, config="configs/compare_cpu.yaml", out="t.md")
    assert _command(typed, ["--config", "configs/compare_cpu.yaml", "--out", "t.md"], run) == \
        "python -m core.compare --config configs/compare_cpu.yaml --out t.md"  # as typed
