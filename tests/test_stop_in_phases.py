"""A Stop honoured before the first step too (issue 29): generating the synthetic set ends at its next chunk, the
folder it was writing is removed, a run folder made by the app says ``stopped``; a killed generation's leftovers are
removed at the next start of the same work (a live writer's are kept); a set that cannot fit on its disk is refused
before a byte is written."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.data import paths
from core.data.paths import DataError, remove_dead_temps
from core.data.synthetic import SyntheticAerial
from core.phases import phase_bar, report_phases
from core.pretrain import main as pretrain_main
from core.store.lifecycle import StopFlag, start_or_exit
from core.store.runs import Run, create_run

ROOT = Path(__file__).resolve().parent.parent


def test_a_bar_of_a_stoppable_phase_raises_once_a_stop_is_asked() -> None:
    stop = StopFlag()
    with report_phases(None, stop.check):
        with phase_bar(total=3, disable=True) as bar:
            bar.update()
            stop.requested = True
            with pytest.raises(KeyboardInterrupt):
                bar.update()
    with phase_bar(total=2, disable=True) as bar:  # outside: a bar never raises
        bar.update(2)


def test_a_stop_before_training_marks_the_apps_run_folder_stopped(tmp_path: Path, capsys) -> None:
    run = create_run("starting", "name: x\n", tmp_path, state="starting")
    args = argparse.Namespace(run_dir=str(run.path), resume=None)

    def start():
        raise KeyboardInterrupt  # what the stop check raises mid-generation

    assert start_or_exit(args, start, StopFlag()) == (None, 130)
    assert Run(run.path).status()["state"] == "stopped"
    assert "stopped before training started" in (run.path / "log.txt").read_text()
    assert "nothing was trained" in capsys.readouterr().err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_generations_folder_goes_at_the_next_start_a_live_ones_stays(tmp_path: Path) -> None:
    base = tmp_path / "synthetic"
    final = base / "n24_s40_seed0"
    dead = base / f".{final.name}.tmp-{_dead_pid()}-abcd"
    live = base / f".{final.name}.tmp-{os.getpid()}-efgh"  # this process: a writer still at work
    old_style = base / f".{final.name}.tmp-xyz123"  # no pid in the name: left alone for a day
    for folder in (dead, live, old_style):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"\0" * 1024)
    SyntheticAerial(tmp_path, num_tiles=24, tile_size=40, progress=False)  # the same work starts again
    assert not dead.exists() and live.exists() and old_style.exists()
    os.utime(old_style, (time.time() - 2 * paths.ORPHAN_AFTER_S,) * 2)
    assert remove_dead_temps(final) == [old_style]


def test_a_set_that_cannot_fit_its_disk_is_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match=r"needs 2,500,000\.0 GiB .* lower data\.num_tiles or data\.tile_size"):
        SyntheticAerial(tmp_path, num_tiles=10_000_000, tile_size=8192, progress=False)
    assert not list((tmp_path / "synthetic").iterdir())  # no sparse file started
    code = pretrain_main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(tmp_path / "runs"),
                          "--no-progress", "data.num_tiles=10000000", "data.tile_size=8192", "data.root=" + str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "FALSE_WB_DATA" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sigterm_during_generation_ends_it_within_seconds(tmp_path: Path) -> None:
    env = {**os.environ, "FALSE_WB_DATA": str(tmp_path / "data"), "FALSE_WB_RUNS": str(tmp_path / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "core.pretrain", "--config", str(ROOT / "configs/demo_cpu.yaml"),
                             "--no-progress", "data.num_tiles=6000"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    synthetic = tmp_path / "data" / "synthetic"
    deadline = time.time() + 120
    while not (synthetic.is_dir() and any(synthetic.iterdir())) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the workers at work
    asked = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.time() - asked < 10, "the generation went on after the Stop"
    assert proc.returncode == 130 and "stopped before training started" in err
    assert not any(synthetic.iterdir())  # the half-written set is gone
    assert not (tmp_path / "runs").exists()
