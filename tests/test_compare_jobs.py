"""A comparison's pretraining units several at once (``jobs``), each in its own process: the same table as one at a
time, and a stop reaches every unit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.seg import parallel_pretrain
from core.seg.compare import main as compare_main
from core.store.runs import list_runs
from tests.test_finetune import compare_yaml

pytestmark = pytest.mark.slow  # two small comparisons, processes each


@pytest.fixture()
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """The in-process comparison and the unit processes on one thread each: equal kernels, so equal bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(parallel_pretrain, "threads_per_job", lambda jobs: 1)
    yield
    torch.set_num_threads(before)


def _table(tmp_path: Path, extra: str) -> tuple[dict, Path]:
    tmp_path.mkdir()
    runs = tmp_path / "runs"
    config = compare_yaml(tmp_path, extra, methods="[random, simclr]")  # two pretraining units: one pair at once
    assert compare_main(["--config", str(config), "--runs-root", str(runs)]) == 0
    cmp_run = next(r for r in list_runs(runs) if r.kind() == "compare")
    return cmp_run.read_json("comparison.json"), cmp_run.path


def test_units_at_once_give_the_table_of_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       one_thread: None) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    one, _ = _table(tmp_path / "one", "")
    two, two_path = _table(tmp_path / "two", "jobs: 2\n")
    assert [(m["method"], m["miou_mean"]) for m in two["methods"]] == [(m["method"], m["miou_mean"])
                                                                        for m in one["methods"]]
    log = (two_path / "log.txt").read_text()
    assert "2 of 2 at once" in log and log.count("pretraining into") == 2  # simclr x 2 seeds
    pretrained = [r for r in list_runs(tmp_path / "two" / "runs") if r.kind() == "pretrain"]
    assert len(pretrained) == 2 and all(r.state() == "completed" for r in pretrained)


def test_a_unit_that_fails_fails_the_comparison_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(parallel_pretrain, "_start", lambda run, threads: __import__("subprocess").Popen(
        ["python", "-c", "import sys; sys.exit(3)"]))
    runs = tmp_path / "runs"
    assert compare_main(["--config", str(compare_yaml(tmp_path, "jobs: 2\n")), "--runs-root", str(runs)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pretraining ended before it began training (exit code 3" in errors[0], errors
    assert next(r for r in list_runs(runs) if r.kind() == "compare").state() == "failed"


def test_a_stop_reaches_every_unit_running_at_once(empty_store: Path) -> None:
    from core.store import launch
    from tests.test_launch import _wait, stoppable_compare

    cfg = stoppable_compare("jobs-stop", methods=["simclr", "simclr_false"], jobs=2)
    run = launch.launch("compare", cfg)
    units = lambda: [r for r in list_runs(empty_store) if r.kind() == "pretrain"]  # noqa: E731
    _wait(run, lambda: len(units()) == 2 and all(len(u.metrics()) >= 1 for u in units()))
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live())
    assert run.state() == "stopped", (run.status(), run.log_text()[-2000:])
    assert sorted(u.state() for u in units()) == ["stopped", "stopped"]  # each kept its checkpoint; none left running
    assert not any(u.is_live() for u in units())
