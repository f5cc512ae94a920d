"""Background runs: launched in their own folders, stopped cleanly, resumed, deleted only when finished."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.store import launch
from core.config import FinetuneConfig, load_config
from core.store.lifecycle import StopFlag
from core.store.runs import delete_run, list_runs
from core.store.run_lock import RunBusyError
from core.store.safepaths import PathRefused, resolve_under

pytestmark = pytest.mark.slow  # seconds per test (processes, kills, browsers): the full suite, not the fast tier

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model.proj_hidden=32", "model.proj_dim=16", "data.num_tiles=24", "data.tile_size=48", "data.image_size=32",
        "train.batch_size=8", "train.optimizer=adamw", "train.log_every=1"]


def _wait(run, pred, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not pred() and time.time() < deadline:
        time.sleep(0.2)
    assert pred(), (run.status(), launch.console_tail(run)[-2000:])


def test_a_repeated_sigterm_is_the_same_stop_request_and_a_second_ctrl_c_means_now() -> None:
    flag = StopFlag().install()
    try:
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs between bytecodes
        assert flag.requested and flag.raised is None
        with pytest.raises(KeyboardInterrupt):
            flag.check()  # a single request ends work without step boundaries (the final test): not "at once"
        assert flag.raised is None
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert flag.raised == "second"  # the closing line says "a second Ctrl-C" only then (a review read it after one)
    finally:
        flag.restore()



class _SwallowsInFinaliser:
    """Python ignores what a ``__del__`` raises: a signal handled there loses its KeyboardInterrupt."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowing, on purpose
def test_a_stop_whose_interrupt_is_swallowed_is_still_honoured() -> None:
    flag = StopFlag().install()
    try:
        flag.interrupt()
        _SwallowsInFinaliser()  # dropped at once: the KeyboardInterrupt is raised, and ignored, inside __del__
        assert flag.requested
        with pytest.raises(KeyboardInterrupt):
            flag.check()  # what the comparison does at every unit and the trainers at every step
    finally:
        flag.restore()

def _process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat ('Z': a zombie), None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


def _assert_reaped(run, pid: int) -> None:
    """The finished run's process is gone from the process table: reaped by the launcher, not left <defunct>."""
    deadline, zombie_since = time.time() + 60, None
    while (state := _process_state(pid)) is not None and time.time() < deadline:
        if state == "Z":  # an instant between its exit and the reaping thread's waitpid is fine; seconds are not
            zombie_since = zombie_since or time.time()
            assert time.time() - zombie_since < 3, f"process {pid} of {run.id} is left a zombie"
        time.sleep(0.05)
    assert _process_state(pid) is None, f"process {pid} is still there ({_process_state(pid)})"
    assert pid not in launch._CHILDREN and pid not in launch.reap()  # nothing left to collect


def test_two_launches_at_once_get_two_folders_leave_no_zombie_and_a_failure_says_why(empty_store: Path) -> None:
    """Two tiny runs launched together, one that completes and one that cannot start: two folders; once ended,
    neither process stays a zombie under the launcher (the app lives on after its runs); the failed one says why,
    and says it again when resumed (no checkpoint: it starts again from step 0)."""
    ok = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "train.max_steps=1", "name=same"])
    too_big = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "train.max_steps=1", "name=same",
                                                           "train.batch_size=64"])
    a = launch.launch("pretrain", ok)
    b = launch.launch("pretrain", too_big)
    assert a.path != b.path and {r.path for r in list_runs(empty_store)} == {a.path, b.path}
    pids = {run.id: int(run.status()["pid"]) for run in (a, b)}
    assert all(abs(time.time() - run.status()["launched"]) < 60 for run in (a, b))  # "starting for 40 s" counts from it
    for run in (a, b):
        _wait(run, lambda run=run: not run.is_live())
    assert a.state() == "completed", launch.console_tail(a)
    assert b.state() == "failed" and "larger than the data set" in b.status()["error"]
    for run in (a, b):
        _assert_reaped(run, pids[run.id])
    launch.resume(b)
    _wait(b, lambda: not b.is_live())
    assert b.state() == "failed" and "larger than the data set" in b.status()["error"]


def test_typed_paths_stay_under_the_roots(empty_store: Path, tmp_path: Path) -> None:
    empty_store.mkdir(parents=True)
    inside = empty_store / "x"
    inside.mkdir()
    assert resolve_under(str(inside)) == inside.resolve()
    for bad in ("/etc/passwd", str(empty_store / ".." / ".."), "", "core"):
        with pytest.raises(PathRefused):
            resolve_under(bad)
    with pytest.raises(PathRefused, match=r"^/etc/passwd: outside the folders"):  # the path once, as typed
        resolve_under("/etc/passwd")
    (empty_store / "link").symlink_to("/etc")
    with pytest.raises(PathRefused, match=r"link/passwd \(= /etc/passwd\): outside"):  # and where it leads
        resolve_under(str(empty_store / "link" / "passwd"))


def test_relative_paths_are_read_under_the_data_root(empty_store: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    assert resolve_under("imgs") == (tmp_path / "data" / "imgs").resolve()
    assert resolve_under("configs/classes/dubai.yaml") == (ROOT / "configs/classes/dubai.yaml").resolve()
    with pytest.raises(PathRefused, match="no such file"):
        resolve_under("not-there")


def test_a_comparison_launched_in_the_background_shows_its_table(empty_store: Path, tmp_path: Path) -> None:
    from core.seg.compare import CompareConfig
    from core.config import validate_config
    from tests.pages import open_page

    from tests.test_finetune import TINY_PROBE

    # probe units (a fine-tuning unit's path is test_finetune's and test_compare_jobs'): the launch, its table, the page
    cfg = validate_config({
        "name": "bg-compare", "pretrain_config": str(ROOT / "configs/demo_cpu.yaml"),
        "pretrain_overrides": [*TINY, "train.max_steps=1"],
        "eval": "probe", "probe_config": str(ROOT / "configs/probe_demo_cpu.yaml"),
        "probe_overrides": [*TINY_PROBE, "train.epochs=1"],
        "methods": ["simclr", "simclr_false"], "pretrain_seeds": [0, 1], "seeds": [0]}, CompareConfig)
    run = launch.launch("compare", cfg)
    _wait(run, lambda: not run.is_live(), timeout=300)
    assert run.state() == "completed", launch.console_tail(run)[-3000:]
    assert (run.path / "summary.csv").is_file() and "SimCLR + FALSE (global)" in (run.path / "table.md").read_text()
    at = open_page("finetune")
    assert not at.exception
    assert at.selectbox(key="cmp-run").value == run.id
    table = next(d.value for d in at.dataframe if "method" in d.value)  # the watched unit's values come first
    assert list(table["method"]) == ["SimCLR", "SimCLR + FALSE (global)"]


def stoppable_compare(name: str, **more):
    """A comparison of 500-step pretraining units on a small evaluation set: long enough to be stopped midway."""
    from core.seg.compare import CompareConfig
    from core.config import validate_config

    return validate_config({
        "name": name, "pretrain_config": str(ROOT / "configs/demo_cpu.yaml"),
        "pretrain_overrides": [*TINY, "train.max_steps=500"],
        "finetune_config": str(ROOT / "configs/finetune_demo_cpu.yaml"),
        "finetune_overrides": ["data.num_tiles=24", "data.tile_size=48", "data.val_fraction=0.25",
                               "data.test_fraction=0.25"],
        "methods": ["simclr"], "pretrain_seeds": [0, 1], "seeds": [0], **more}, CompareConfig)


def test_stopping_a_comparison_records_a_stop(empty_store: Path) -> None:
    cfg = stoppable_compare("stop-compare")
    run = launch.launch("compare", cfg)
    children = lambda: [r for r in list_runs(empty_store) if r.id.endswith("stop-compare-simclr-p0")]  # noqa: E731
    _wait(run, lambda: bool(children()) and len(children()[0].metrics()) >= 1)
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live())
    assert run.state() == "stopped" and children()[0].state() == "stopped"
    assert "--resume" in run.log_text()  # the log says how to continue; the app's Resume does the same
    stopped_at = children()[0].status()["step"]
    launch.resume(run)
    # one at a time too, the unit cut short continues in its own folder from its checkpoint: no new folder
    _wait(run, lambda: children()[0].state() == "running" and children()[0].status().get("step", 0) > stopped_at)
    assert len(children()) == 1 and f"resumed from step {stopped_at}" in children()[0].log_text(), children()[0].log_text()
    assert "pretraining continued in" in run.log_text()
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live())
    assert run.state() == "stopped", (run.status(), run.log_text()[-2000:], launch.console_tail(run)[-3000:])


def test_a_stop_right_as_a_comparison_starts_is_a_stop(empty_store: Path) -> None:
    """The Stop may land while the comparison opens its folder: it must end 'stopped', never 'died'."""
    cfg = stoppable_compare("early-stop")
    run = launch.launch("compare", cfg)
    deadline = time.time() + 120
    while run.status().get("state") != "running" and time.time() < deadline:
        time.sleep(0.005)
    assert launch.stop(run)
    _wait(run, lambda: not run.is_live())
    assert run.state() == "stopped", launch.console_tail(run)[-2000:]


def _stop_and_resume_on_two_ranks(kind: str, cfg, steps: int) -> tuple:
    """Launch on 2 ranks, Stop once records arrive (a live run refuses Delete and Resume; a second Stop sends nothing
    more), check the stop, Resume to 2 steps past it; (run, stopped at). The launcher's lifecycle on one rank is the
    Pretrain page's and the browser test's."""
    run = launch.launch(kind, cfg, name=f"two-ranks-{kind}", processes=2)
    _wait(run, lambda: len(run.metrics()) >= 2)  # records reach the folder between checkpoints
    assert run.status()["world_size"] == 2 and run.status()["processes"] == 2
    with pytest.raises(RunBusyError):
        delete_run(run)
    with pytest.raises(RunBusyError):
        launch.resume(run)
    assert not launch.stop_requested(run)
    assert launch.stop(run) and launch.stop_requested(run)
    time.sleep(0.3)
    assert launch.stop(run)  # a double click on Stop: asked already, nothing more is sent
    _wait(run, lambda: not run.is_live() and run.state() != "running")
    assert run.state() == "stopped" and run.last_checkpoint() is not None, launch.console_tail(run)[-2000:]
    stopped_at = run.status()["step"]
    assert 0 < stopped_at < steps
    cfg_short = run.path / "config.yaml"
    cfg_short.write_text(cfg_short.read_text().replace(f"max_steps: {steps}", f"max_steps: {stopped_at + 2}"))
    launch.resume(run)
    assert not launch.stop_requested(run)  # the resumed process has not been asked
    _wait(run, lambda: run.state() == "completed")
    assert run.status()["step"] == stopped_at + 2 and run.status()["world_size"] == 2
    return run, stopped_at


def test_pretraining_on_two_processes_through_the_launcher_stops_and_resumes_together(empty_store: Path) -> None:
    """torchrun with 2 CPU ranks over gloo, as the Pretrain page starts it on 2 GPUs: one run folder, a Stop to the
    first rank stops both at the same step with a checkpoint, and Resume continues on 2 ranks to the end (SimCLR with
    the support detector: its extra views through the DDP-wrapped net; FALSE's loss over ranks is
    tests/test_losses_distributed.py's)."""
    with pytest.raises(ValueError, match="only pretraining and fine-tuning"):
        launch.launch("compare", load_config(ROOT / "configs/finetune_demo_cpu.yaml", [], FinetuneConfig), processes=2)
    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [*TINY, "train.max_steps=300", "train.ckpt_every=1000",
                                                       "loss.threshold=0.3",  # flags from the first steps
                                                       # support views through the DDP-wrapped net under no_grad
                                                       "loss.detector=support", "loss.treatment=attract"])
    run, stopped_at = _stop_and_resume_on_two_ranks("pretrain", cfg, 300)
    steps = [m["step"] for m in run.metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == stopped_at + 2  # one writer: no duplicated records
    assert run.config()["loss"]["detector"] == "support"
    assert "DistributedDataParallel" not in launch.console_tail(run)  # no DDP warning about the no_grad views
    pairs = run.flagged_pairs()  # rows of the gathered batch, named by their indices in the data set
    assert pairs and all(0 <= r["anchor_index"] < 24 and 0 <= r["candidate_index"] < 24 for r in pairs)
    _wait(run, lambda: not run.is_live())  # its ranks may still be exiting (and holding its lock) a moment after
    delete_run(run)  # ended: it may go
    assert not run.path.exists()


TINY_FT = ["data.num_tiles=24", "data.tile_size=48", "data.crop_size=48", "data.val_fraction=0.25",
           "data.test_fraction=0.25", "data.label_fraction=1.0", "train.batch_size=4", "train.log_every=1",
           "train.eval_every=1000", "train.device=cpu"]


def test_fine_tuning_on_two_processes_trains_once_and_tests_once(empty_store: Path) -> None:
    """The Fine-tune page's launch on 2 GPUs, here 2 CPU ranks over gloo: one run folder and one writer (the stop and
    resume over ranks are the pretraining test's, through the same lifecycle), the first rank alone validates and
    tests the best model."""
    cfg = load_config(ROOT / "configs/finetune_demo_cpu.yaml", [*TINY_FT, "train.max_steps=3"], FinetuneConfig)
    run = launch.launch("finetune", cfg, name="two-ranks-ft", processes=2)
    _wait(run, lambda: run.state() == "completed")
    assert run.status()["world_size"] == 2 and run.status()["processes"] == 2 and run.status()["step"] == 3
    train = [m["step"] for m in run.metrics() if "loss" in m]
    assert train == [1, 2, 3]  # one writer: no duplicated records
    assert [m["step"] for m in run.metrics() if m.get("split") == "val"] == [3]
    assert (run.path / "test_metrics.json").exists() and (run.checkpoint_dir / "best.safetensors").exists()
    assert run.log_text().count("testing the best model") == 1, run.log_text()


def test_a_stop_in_interrupt_mode_is_at_once_but_no_second_ctrl_c() -> None:
    """The diff review: a probe (interrupt mode: no checkpoint to stop at) stopped by one Ctrl-C was said to have
    stopped "in its closing work"; before, "a second Ctrl-C"."""
    flag = StopFlag().install()
    try:
        flag.interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert flag.raised == "interrupt"
    finally:
        flag.restore()


def test_a_stop_before_interrupt_mode_is_at_once_too() -> None:
    """The second diff review: a Stop that came just before a probe switched to interrupt mode was said to end
    its closing work."""
    flag = StopFlag()
    flag.requested = True
    with pytest.raises(KeyboardInterrupt):
        flag.interrupt()
    assert flag.raised == "interrupt"
