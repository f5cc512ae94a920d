"""A closed pipe or a second Ctrl-C: the run still ends with a true status, and the terminal says how to go on."""
from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest

from core.console import QuietWhenClosed, say
from core.store.lifecycle import RunLife
from core.store.runs import create_run, list_runs

ROOT = Path(__file__).resolve().parent.parent


class _GoneReader(io.StringIO):
    """stderr after `| head` has exited: every write fails as a closed pipe does."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error


def test_a_bar_stream_goes_quiet_when_its_reader_has_gone() -> None:
    gone = QuietWhenClosed(_GoneReader(BrokenPipeError(32, "Broken pipe")))
    assert gone.write("step 3") == len("step 3") and gone.lost
    gone.flush()  # silent from now on
    alive = QuietWhenClosed(io.StringIO())
    alive.write("step 1")
    assert not alive.lost and alive.getvalue() == "step 1"  # everything else is the stream's own


def test_a_full_disk_is_not_mistaken_for_a_closed_pipe() -> None:
    with pytest.raises(OSError, match="No space"):
        QuietWhenClosed(_GoneReader(OSError(28, "No space left on device"))).write("x")


def test_a_closing_line_to_a_closed_pipe_is_no_traceback(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", _GoneReader(BrokenPipeError(32, "Broken pipe")))
    say("completed: runs/x")  # nothing raised


def test_a_run_whose_console_closed_mid_training_ends_with_its_true_state(tmp_path: Path, monkeypatch) -> None:
    """It stayed "running" for ever: the bar's redraw raised inside a step, and its close again before the status."""
    run = create_run("piped", "method: simclr\n", root=tmp_path)
    steps = {"n": 0}
    monkeypatch.setattr(sys, "stderr", _GoneReader(BrokenPipeError(32, "Broken pipe")))
    with RunLife(run, lambda: steps["n"], 5, progress=True) as life:
        for _ in range(5):
            steps["n"] += 1
            life.stepped(loss="1.000")  # the bar draws on a console nobody reads
    assert run.status()["state"] == "completed" and run.status()["step"] == 5


def test_a_phase_bar_given_its_own_stream_goes_quiet_too() -> None:
    """The probe drew its phases on sys.stderr itself: piped into `head`, it failed where pretraining went on."""
    from core.phases import phase_bar

    gone = _GoneReader(BrokenPipeError(32, "Broken pipe"))
    gone.isatty = lambda: True  # a terminal that went away: bars are drawn on terminals only
    bar = phase_bar(total=3, desc="features", file=gone, mininterval=0)
    for done in range(1, 4):
        bar.step_to(done, 3)
    bar.close()


def test_bars_are_drawn_on_a_terminal_and_not_into_a_pipe_or_file() -> None:
    """`fn_report | less` showed every redraw of three bars as one long line, "26843545.60it/s" among them."""
    from core.phases import phase_bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        bar = phase_bar(total=3, desc="features", file=stream, mininterval=0)
        for done in range(1, 4):
            bar.step_to(done, 3)
        bar.close()
        assert ("features" in stream.getvalue()) == drawn


@pytest.mark.slow  # a whole pretraining run: the full suite, not the fast tier
def test_a_second_ctrl_c_says_where_a_resume_continues(tmp_path: Path, monkeypatch, capsys) -> None:
    """The second Ctrl-C stops mid-step, without the stop's own checkpoint: it printed nothing, and the status's step
    is not where a resume goes on."""
    from core.ssl import pretrain as pretrain_mod

    from tests.test_host_sync import TINY

    original = pretrain_mod.Trainer.train_step

    def interrupted_twice(self, step):
        if step == 4:  # after the checkpoint of step 3
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, step)

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(pretrain_mod.Trainer, "train_step", interrupted_twice)
    args = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"), *TINY,
            "train.max_steps=8", "train.ckpt_every=3"]
    assert pretrain_mod.main(args) == 130
    (run,) = list_runs(tmp_path / "runs")
    err = capsys.readouterr().err
    assert f"stopped at once (a second Ctrl-C): {run.path}; continue it with --resume {run.path} (from step 3" in err
    assert run.state() == "stopped"
    monkeypatch.undo()
    assert pretrain_mod.main(["--resume", str(run.path), "--no-progress"]) == 0 and run.status()["step"] == 8


def test_a_command_interrupted_or_read_by_a_closed_pipe_ends_in_one_line(monkeypatch, capsys) -> None:
    """Ctrl-C in `core.evaluate` printed torch's whole stack and died of the signal; `--json | true` ended in a
    BrokenPipeError traceback after 30 s of work. The dispatcher answers both for every command."""
    import core.seg.evaluate as evaluate
    from core.cli import main

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "main", interrupted)
    assert main(["evaluate", "dubai_seg"]) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted"

    def piped(argv):
        print("a line written by plain print")
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(evaluate, "main", piped)
    assert main(["evaluate", "dubai_seg"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_evaluate_writes_its_figures_with_say(monkeypatch) -> None:
    """Its JSON and its lines go through say(): a reader gone mid-output ends it quietly, with status 0."""
    import core.seg.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", lambda *a, **k: {"split": "test", "data": "x"})
    monkeypatch.setattr(sys, "stdout", _GoneReader(BrokenPipeError(32, "Broken pipe")))
    assert evaluate.main([str(ROOT / "checkpoints/dubai_seg.safetensors"), "--json"]) == 0
