"""One writer per run (issue 10): a second resume of a live run is refused in one line and leaves its records
intact; the lock dies with its process (kill -9 included); the app's resume and delete see it too."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.store.launch import resume as app_resume
from core.ssl.pretrain import main as pretrain_main
from core.store.runs import delete_run, open_run
from core.store.run_lock import RunBusyError, run_locked

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.num_tiles=16", "data.tile_size=48", "data.image_size=32", "train.batch_size=8", "model.proj_hidden=32",
        "model.proj_dim=16", "train.log_every=1", "train.ckpt_every=2"]


def holder(run: Path) -> subprocess.Popen:
    """Another process that holds the run's lock (as a training process does) until it is killed."""
    code = ("import sys, time; from core.store.runs import open_run; from core.store.run_lock import lock_run; lock_run(open_run(sys.argv[1])); "
            "print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.slow  # a whole run or process start: the full suite, not the fast tier (kept under 3 minutes)
def test_a_second_writer_is_refused_and_the_records_stay_intact(tmp_path: Path, capsys) -> None:
    assert pretrain_main(["--config", str(ROOT / "configs" / "demo_cpu.yaml"), "--runs-root", str(tmp_path),
                          "--no-progress", "train.max_steps=4", *TINY]) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    capsys.readouterr()
    before = {name: (run / name).read_bytes() for name in ("metrics.jsonl", "status.json", "log.txt")}
    proc = holder(run)
    try:
        assert run_locked(run) and open_run(run).is_live()
        assert pretrain_main(["--resume", str(run), "--no-progress", "train.max_steps=8"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is being written by process {proc.pid}" in err and "Traceback" not in err
        assert {name: (run / name).read_bytes() for name in before} == before  # nothing touched
        # --run-dir on the live run (issue 29): refused, and the live run's status is not marked failed
        assert pretrain_main(["--run-dir", str(run), "--no-progress"]) == 2
        assert "has already trained" in capsys.readouterr().err
        assert {name: (run / name).read_bytes() for name in before} == before
        with pytest.raises(RunBusyError, match="another process"):
            app_resume(open_run(run))
        with pytest.raises(RunBusyError, match="stop it before deleting"):
            delete_run(open_run(run))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the lock dies with its process, kill -9 included
        proc.wait()
    deadline = time.time() + 10
    while run_locked(run) and time.time() < deadline:
        time.sleep(0.05)
    assert not run_locked(run)
    stale = [run / "checkpoints" / ".last.safetensors.k1ll3d.tmp", run / ".status.json.k1ll3d.tmp"]
    for p in stale:  # what a kill -9 in the middle of an atomic write leaves (older versions: a file)
        p.write_bytes(b"half")
    torn = run / "checkpoints" / ".encoder.safetensors.t0rn.tmp"  # now: a folder, with safetensors' own temp file
    torn.mkdir()
    (torn / ".tmpAb12Cd").write_bytes(b"half")
    stale.append(torn)
    assert pretrain_main(["--resume", str(run), "--no-progress", "train.max_steps=6"]) == 0
    assert not any(p.exists() for p in stale)
    steps = [r["step"] for r in open_run(run).metrics() if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # one record per step, in order


def test_resume_with_a_broken_config_or_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    assert pretrain_main(["--config", str(ROOT / "configs" / "demo_cpu.yaml"), "--runs-root", str(tmp_path),
                          "--no-progress", "train.max_steps=2", *TINY]) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    good = (run / "config.yaml").read_text()
    for text, why in (("!!python/object/apply:os.system ['echo hi']\n", "is not valid YAML"),
                      ("name: [unclosed\n", "is not valid YAML"), ("", "does not hold a config")):
        (run / "config.yaml").write_text(text)
        capsys.readouterr()
        assert pretrain_main(["--resume", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1 and "Traceback" not in err
    (run / "config.yaml").write_text(good)
    (run / "checkpoints" / "last.safetensors").write_bytes(b"\x00" * 40)
    assert pretrain_main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unreadable" in err and err.count("\n") == 1



def test_a_resumed_run_is_starting_not_died_before_its_process_has_an_id(tmp_path: Path, monkeypatch) -> None:
    """Between the Resume and the new process there is no new process id: the run must read 'starting' (a Stop or a
    page must not take it for dead), not 'died' from its previous process's id."""
    from core.store import launch
    from core.store.runs import create_run

    run = create_run("resumable", "method: simclr\n", tmp_path / "runs", kind="pretrain")
    run.write_status(state="stopped", pid=2**22 + 12345)
    seen: list[str] = []
    monkeypatch.setattr(launch, "_spawn", lambda r, *a, **k: seen.append(r.state()))
    app_resume(run)
    assert seen == ["starting"] and run.is_live()


def test_a_writer_killed_inside_its_fill_leaves_one_folder_that_the_sweep_removes(tmp_path: Path) -> None:
    """``atomic_write_with`` gives ``fill`` a file in a private folder: whatever a writer killed there leaves (a
    streaming writer's own temp file included) is in that folder, and ``remove_stale_temps`` removes it whole."""
    from core.store.run_lock import remove_stale_temps

    target = tmp_path / "checkpoints" / "last.safetensors"
    target.parent.mkdir()
    target.write_bytes(b"the previous checkpoint")
    script = ("import os, sys; from pathlib import Path; from core.store.runs import atomic_write_with\n"
              "def fill(tmp):\n"
              "    (Path(tmp).parent / '.tmpXy12Zw').write_bytes(b'x' * 1000)  # as save_file's own temp file\n"
              "    os._exit(137)  # killed mid-write: no cleanup\n"
              "atomic_write_with(Path(sys.argv[1]), fill, sha256=True)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(target)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 137, proc.stderr[-2000:]
    left = [p for p in target.parent.iterdir() if p != target]
    assert len(left) == 1 and left[0].is_dir() and left[0].name.startswith(".last.safetensors.") and \
        left[0].name.endswith(".tmp"), left
    assert target.read_bytes() == b"the previous checkpoint"
    assert remove_stale_temps(tmp_path) == left and sorted(target.parent.iterdir()) == [target]
