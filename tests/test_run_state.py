"""The run state machine (issue 30): its moves tested directly, not only through kills; every write of a state goes
through it; every state a run can be left in is one a resume continues; the shown states a record cannot say."""
from __future__ import annotations

import os

import pytest

from core.store.lifecycle import RunLife
from core.store.resume import open_for_resume
from core.store.run_lock import unlock_run
from core.store.run_state import (COMPLETED, ENDED_STATES, FAILED, RUNNING, STARTING, STATES, STOPPED, TRANSITIONS,
                                  IllegalTransition, check_transition, shown_state)
from core.store.runs import create_run

DEAD_PID = 2**22 + 4321


@pytest.mark.parametrize("old, new", [(None, STARTING), (None, RUNNING), (STARTING, RUNNING), (STARTING, STOPPED),
                                      (STARTING, FAILED), (RUNNING, COMPLETED), (RUNNING, STOPPED),
                                      (RUNNING, FAILED), (RUNNING, RUNNING), (STOPPED, STARTING), (STOPPED, RUNNING),
                                      (FAILED, RUNNING), (COMPLETED, STARTING), (COMPLETED, COMPLETED)])
def test_the_moves_a_run_makes(old, new) -> None:
    check_transition(old, new)


@pytest.mark.parametrize("old, new", [(None, COMPLETED), (None, STOPPED), (STARTING, COMPLETED),
                                      (COMPLETED, FAILED), (COMPLETED, STOPPED), (STOPPED, COMPLETED),
                                      (FAILED, COMPLETED), (RUNNING, "stopping"), (RUNNING, "died"),
                                      (RUNNING, "paused")])
def test_moves_the_machine_refuses(old, new) -> None:
    with pytest.raises(IllegalTransition, match="cannot become|not a state a run records"):
        check_transition(old, new)


def test_every_recorded_state_has_its_moves_and_every_ended_state_can_start_again() -> None:
    assert set(TRANSITIONS) == {None, *STATES}
    for state in ENDED_STATES:  # the app's Resume and a command line's --resume
        check_transition(state, STARTING)
        check_transition(state, RUNNING)
    check_transition("no-such-state", RUNNING)  # a foreign record is read as failed: a start repairs it


def test_shown_states() -> None:
    assert shown_state(RUNNING, process_alive=False, stop_asked=False) == "died"
    assert shown_state(STARTING, process_alive=False, stop_asked=False) == "died"
    assert shown_state(RUNNING, process_alive=True, stop_asked=True) == "stopping"
    assert shown_state(COMPLETED, process_alive=False, stop_asked=True) == COMPLETED
    assert shown_state(None, process_alive=True, stop_asked=False) == FAILED


def test_a_write_that_breaks_the_machine_fails_where_it_happens(tmp_path) -> None:
    run = create_run("x", "name: x\n", tmp_path, kind="pretrain", state=COMPLETED)
    with pytest.raises(IllegalTransition, match="a completed run cannot become stopped"):
        run.write_status(state=STOPPED)
    assert run.status()["state"] == COMPLETED  # nothing written
    run.write_status(step=3)  # progress fields are no move
    with pytest.raises(ValueError, match="a run records one of"):
        create_run("y", "name: y\n", tmp_path, state="stopping")


def _stopping_run(tmp_path):
    run = create_run("s", "name: s\n", tmp_path, kind="pretrain", state=RUNNING)
    (run.path / "stop_request.json").write_text(f'{{"pid": {os.getpid()}}}')
    return run


def test_a_stop_asked_of_a_running_run_is_shown_as_stopping_and_still_live(tmp_path) -> None:
    run = _stopping_run(tmp_path)
    assert run.state() == "stopping" and run.is_live()
    run.write_status(pid=DEAD_PID)  # a new process (e.g. a resume) was not asked
    assert run.state() == "died" and not run.is_live()


@pytest.mark.parametrize("left_as", [STARTING, RUNNING, STOPPED, COMPLETED, FAILED])
def test_every_state_a_run_can_be_left_in_is_resumed(tmp_path, left_as) -> None:
    """The resume invariant, directly: whatever state a dead process left, --resume opens the folder and its
    trainer's frame moves it to running and on to an end."""
    run = create_run("r", "name: r\n", tmp_path, kind="pretrain", state=left_as, pid=DEAD_PID)
    resumed, checkpoint = open_for_resume(run.path)
    try:
        assert checkpoint is None  # no checkpoint yet: from step 0
        with RunLife(resumed, lambda: 0, 4, progress=False) as life:
            assert resumed.status()["state"] == RUNNING and resumed.status()["pid"] == os.getpid()
            life.state = COMPLETED
        assert resumed.status()["state"] == COMPLETED and resumed.state() == COMPLETED
    finally:
        unlock_run(resumed)


def test_a_live_run_is_not_resumed(tmp_path) -> None:
    import subprocess
    import sys

    run = create_run("live", "name: live\n", tmp_path, kind="pretrain", state=RUNNING)
    opened, _ = open_for_resume(run.path)  # this process takes the lock: no second writer may
    try:
        code = ("import sys; from core.store.resume import open_for_resume\n"
                "try:\n    open_for_resume(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__)\n")
        out = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=60)
        assert out.stdout.strip() == "RunBusyError", out.stderr
        assert run.status()["state"] == RUNNING  # the refused command wrote nothing
    finally:
        unlock_run(opened)


@pytest.mark.parametrize("state, message", [("failed", "could not start"), ("stopped", "stopped before training")])
def test_an_early_exit_never_moves_a_completed_run_backwards(tmp_path, state, message) -> None:
    """A resume of a completed run that cannot start (a broken config) or is stopped while its data loads leaves the
    run completed, with the reason in its log; before, the stop raised IllegalTransition over the exit."""
    import argparse

    from core.store.lifecycle import _record_early

    run = create_run("done", "name: done\n", tmp_path, kind="pretrain", state=COMPLETED, pid=DEAD_PID)
    _record_early(argparse.Namespace(resume=str(run.path), run_dir=None), state, message)
    unlock_run(run)
    assert run.status()["state"] == COMPLETED
    assert f"{message} (the run stays completed)" in (run.path / "log.txt").read_text()


def test_resuming_a_completed_run_without_more_steps_says_how_to_train_on(tmp_path) -> None:
    """It used to rebuild the data and say "completed" again (the review); now one line names train.max_steps."""
    from core.config import ConfigError
    from core.store.resume import refuse_if_complete

    run = create_run("done", "name: done\n", tmp_path, kind="pretrain", state=COMPLETED, pid=DEAD_PID)
    run.write_status(step=20)
    with pytest.raises(ConfigError, match=r"train.max_steps: the run is complete at step 20; to train on, "
                                          r"resume it with train.max_steps=N \(N above 20\)"):
        refuse_if_complete(run, 20)
    refuse_if_complete(run, 30)  # more steps: it trains on
    refuse_if_complete(run, None)  # a length in epochs: the trainer decides
    stopped = create_run("stop", "name: stop\n", tmp_path, kind="pretrain", state="stopped", pid=DEAD_PID)
    stopped.write_status(step=20)
    refuse_if_complete(stopped, 20)  # a stopped run at its last step still finishes (its test, its export)
    refuse_if_complete(stopped, 10)  # no checkpoint: it starts again from step 0, which 10 steps lengthen
    import json

    import torch

    from core.store.checkpoint import write_safetensors

    stopped.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(stopped.checkpoint_dir / "last.safetensors", {"w": torch.zeros(1)},
                      {"card": json.dumps({"step": 18})})  # its status (20) ran ahead of its last checkpoint
    refuse_if_complete(stopped, 19)  # continues from 18: one more step
    with pytest.raises(ConfigError, match=r"train.max_steps=10 is below the step the run continues from \(18\)"):
        refuse_if_complete(stopped, 10)  # was marked completed at step 20, "steps 20->10" (a review)
    # a run set by epochs: the trainer passes the steps they make once its data is built (it was never refused)
    with pytest.raises(ConfigError, match=r"train.epochs=0.5 \(10 steps\) is below the step the run continues from"):
        refuse_if_complete(stopped, 10, epochs=0.5)
    with pytest.raises(ConfigError,
                       match=r"train.epochs: the run is complete at step 20 \(train.epochs=1 \(20 steps\)"):
        refuse_if_complete(run, 20, epochs=1.0)


def test_a_device_out_of_memory_names_the_settings_to_lower(tmp_path) -> None:
    import torch

    run = create_run("oom", "name: oom\n", tmp_path, kind="finetune", state=STARTING)
    try:
        with pytest.raises(torch.OutOfMemoryError), RunLife(run, lambda: 3, 4, progress=False):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        error = run.status()["error"]
        assert run.state() == FAILED and error.startswith("the step did not fit the device's memory: lower "
                                                          "train.batch_size")
        assert error.endswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    finally:
        unlock_run(run)


def test_a_runs_folder_that_cannot_take_a_run_is_one_line(tmp_path) -> None:
    """A review: a read-only runs folder, or a file of that name, ended a trainer in a traceback after its data."""
    from core.store.runs import RunsRootError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunsRootError, match=r"the runs folder .*afile cannot take a new run \(.*\): give another with "
                                            "--runs-root or FALSE_WB_RUNS"):
        create_run("x", "name: x\n", tmp_path / "afile")


def test_a_resume_with_no_checkpoint_starts_its_records_afresh(tmp_path) -> None:
    """Its step-0 kNN record (the untrained encoder) too: a second one was written beside it (a diff review)."""
    import json

    run = create_run("r0", "name: r0\n", tmp_path, kind="pretrain", state=STOPPED, pid=DEAD_PID)
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 0, "knn_acc": 0.2}, {"step": 3, "loss": 4.0})))
    resumed, checkpoint = open_for_resume(run.path)
    try:
        assert checkpoint is None and resumed.metrics() == []
    finally:
        unlock_run(resumed)


def test_a_new_length_says_what_it_does_to_the_learning_rate_schedule() -> None:
    """Longer: stretched (the rate rises again after the old end); shorter: compressed (a review); a probe's epochs
    are its head's, with no schedule to move."""
    from core.store.resume import refuse_changed_settings

    before = {"train": {"max_steps": 20, "log_every": 5}}
    assert "schedule is stretched" in refuse_changed_settings(before, {"train": {"max_steps": 30, "log_every": 5}})[0]
    assert "schedule is compressed" in refuse_changed_settings(before, {"train": {"max_steps": 10, "log_every": 5}})[0]
    assert refuse_changed_settings(before, {"train": {"max_steps": 20, "log_every": 2}}) == [
        "train.log_every: 5 -> 2"]
    assert refuse_changed_settings({"train": {"epochs": 2}}, {"train": {"epochs": 3}}, kind="probe") == [
        "train.epochs: 2 -> 3"]
