"""Trackers (issue 30): a run's scalars, settings and flagged pairs reach TensorBoard (event files in the run folder)
and MLflow (a local store beside the runs), live through ``train.trackers`` and afterwards through ``false-wb track``;
read back here with TensorBoard's own reader and the MLflow client, never a server."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.pretrain import main as pretrain_main
from core.store.runs import create_run, list_runs
from core.store.track import main as track_main
from core.store.trackers import STATE_FILE, flat_settings, read_rows, row_scalars

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning",
                                        "ignore::FutureWarning")
ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.encoder=resnet18",
        "model.proj_hidden=16", "model.proj_dim=8", "data.name=synthetic", "data.num_tiles=24", "data.tile_size=40",
        "data.image_size=32", "train.batch_size=8", "train.knn_every=0", "train.log_every=1"]


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out["__images__"] = [(e.step, float(e.width)) for e in acc.Images("flagged_pairs")] \
        if "flagged_pairs" in acc.Tags()["images"] else []
    return out


def mlflow_client(uri: str):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_rows_become_named_scalars_and_settings_flat_keys(tmp_path: Path) -> None:
    assert row_scalars({"step": 5, "loss": 1.5, "lr": 0.1, "time": 9.0, "flagged": 3, "ok": True,
                        "bad": float("nan"), "note": "x"}) == {"loss": 1.5, "lr": 0.1, "flagged": 3.0}
    assert row_scalars({"step": 10, "split": "val", "miou": 0.4, "iou": {"road": 0.2}}) == \
        {"val/miou": 0.4, "val/iou/road": 0.2}
    assert row_scalars({"step": 10, "split": "val", "model": "weight average", "miou": 0.5}) == \
        {"val_average/miou": 0.5}
    assert flat_settings({"train": {"lr": 0.1, "trackers": ["mlflow"]}, "seed": 0}) == \
        {"train.lr": 0.1, "train.trackers": '["mlflow"]', "seed": 0}
    f = tmp_path / "m.jsonl"
    f.write_bytes(b'{"step": 1}\n{"step": 2}\n{"step": 3')  # the last line still being written
    rows, offset = read_rows(f, 0)
    assert [r["step"] for r in rows] == [1, 2] and offset == len(b'{"step": 1}\n{"step": 2}\n')
    assert read_rows(f, offset) == ([], offset)
    f.write_bytes(b'{"step": 1}\n')  # cut by a resume: read from its end, not past it
    assert read_rows(f, offset) == ([], len(b'{"step": 1}\n'))


@pytest.mark.slow  # a whole run or process start: the full suite, not the fast tier (kept under 3 minutes)
def test_a_tracked_pretraining_run_and_its_resume_read_back_from_both_trackers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert pretrain_main([*TINY, "--runs-root", str(runs), "train.max_steps=3", "train.ckpt_every=3",
                          "train.trackers=[tensorboard,mlflow]"]) == 0
    run = list_runs(runs)[0]
    state = json.loads((run.path / STATE_FILE).read_text())
    uri, run_id = state["mlflow"]["uri"], state["mlflow"]["run_id"]
    assert uri == (runs / "mlruns").resolve().as_uri()

    # a row that a killed process logged and sent after its last checkpoint: the resume must replace it
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": 999.0}) + "\n")
    from core.store.trackers import RunTracking
    RunTracking(run, ["tensorboard"]).sync()
    assert pretrain_main(["--resume", str(run.path), "--no-progress", "train.max_steps=5"]) == 0

    logged = {m["step"]: m["loss"] for m in run.metrics()}
    assert sorted(logged) == [1, 2, 3, 4, 5] and logged[4] != 999.0
    tb = tb_scalars(run.path / "tensorboard")
    assert [s for s, _ in tb["loss"]] == [1, 2, 3, 4, 5]  # the resume purged the old step 4, none twice
    assert all(v == pytest.approx(logged[s]) for s, v in tb["loss"])
    assert {"lr", "flagged", "calibrated", "pos_cos"} <= set(tb)
    assert tb["__images__"] and all(w > 0 for _, w in tb["__images__"])  # the flagged pairs as pictures

    client = mlflow_client(uri)
    assert json.loads((run.path / STATE_FILE).read_text())["mlflow"]["run_id"] == run_id  # one MLflow run
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params["train.batch_size"] == "8" and found.data.params["loss.name"] == "false"
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert sorted(history) == [1, 2, 3, 4, 5] and history[5] == pytest.approx(logged[5])
    assert [a.path for a in client.list_artifacts(run_id, "flagged_pairs")]


def _finished_finetune_run(root: Path):
    run = create_run("ft", "name: ft\ntrain: {lr: 0.001, max_steps: 20}\n", root=root, kind="finetune",
                     state="completed", pid=None)
    rows = [{"step": 10, "loss": 1.2, "lr": 0.001, "time": 1.0},
            {"step": 20, "loss": 0.9, "lr": 0.0005, "time": 2.0},
            {"step": 20, "split": "val", "miou": 0.41, "iou": {"road": 0.3, "water": 0.52}, "time": 2.1}]
    run.append_jsonl("metrics.jsonl", rows)
    return run


def test_track_sends_a_finished_run_once_and_refuses_a_live_one(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    run = _finished_finetune_run(runs)
    os.environ["FALSE_WB_RUNS"] = str(runs)
    try:
        assert track_main([run.path.name, "--to", "tensorboard", "--to", "mlflow"]) == 0
        first = capsys.readouterr().out
        assert "3 new metric rows" in first and "event files in" in first and "MLflow run" in first
        assert track_main([str(run.path), "--to", "mlflow"]) == 0  # again: nothing new is sent twice
        assert "0 new metric rows" in capsys.readouterr().out
        run.append_jsonl("metrics.jsonl", [{"step": 30, "loss": 0.8}])  # a later row: only it goes
        assert track_main([str(run.path), "--to", "tensorboard"]) == 0
        assert "1 new metric row," in capsys.readouterr().out
        assert track_main(["no-such-run", "--to", "mlflow"]) == 2
        assert "no-such-run" in capsys.readouterr().err
    finally:
        del os.environ["FALSE_WB_RUNS"]
    tb = tb_scalars(run.path / "tensorboard")
    assert tb["loss"] == [(10, pytest.approx(1.2)), (20, pytest.approx(0.9)), (30, pytest.approx(0.8))]
    assert tb["val/miou"] == [(20, pytest.approx(0.41))] and tb["val/iou/water"] == [(20, pytest.approx(0.52))]
    state = json.loads((run.path / STATE_FILE).read_text())
    client = mlflow_client(state["mlflow"]["uri"])
    run_id = state["mlflow"]["run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val.miou")] == [(20, pytest.approx(0.41))]
    assert len(client.get_metric_history(run_id, "loss")) == 2  # the later row went to TensorBoard only
    assert client.get_run(run_id).data.params["train.lr"] == "0.001"

    live = create_run("live", "name: live\n", root=runs, kind="pretrain")  # this process: alive
    assert track_main([str(live.path), "--to", "tensorboard"]) == 2
    assert "still running" in capsys.readouterr().err
    assert not (live.path / "tensorboard").exists()


def test_a_tracker_that_cannot_start_never_stops_the_training(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.warns(UserWarning, match="trackers could not start: MLflow at nope://"):
        assert pretrain_main([*TINY, "--runs-root", str(runs), "train.max_steps=2", "train.ckpt_every=2",
                              "train.trackers=[mlflow]", "train.mlflow_uri=nope://nowhere"]) == 0
    run = list_runs(runs)[0]
    assert run.status()["state"] == "completed"
    assert "training goes on without them" in (run.path / "log.txt").read_text()


def test_trackers_are_validated_at_load() -> None:
    from core.config import ConfigError, FinetuneConfig, load_config

    with pytest.raises(ConfigError, match="train.trackers"):
        load_config(str(ROOT / "configs/demo_cpu.yaml"), ["train.trackers=[wandb]"])
    with pytest.raises(ConfigError, match="name each tracker once"):
        load_config(str(ROOT / "configs/finetune_demo_cpu.yaml"), ["train.trackers=[mlflow,mlflow]"], FinetuneConfig)


def test_hostile_tracking_state_and_records_are_read_safely(tmp_path: Path, capsys) -> None:
    """A second pass over the new surface: a torn, foreign or huge tracking.json starts again from the first row;
    garbage lines in metrics.jsonl are left out; the Runs page's reader never raises."""
    from core.store.trackers import MAX_STATE_BYTES, where_tracked

    runs = tmp_path / "runs"
    run = _finished_finetune_run(runs)
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('not json\n[1, 2]\n{"step": "7", "loss": 1}\n{"step": true, "loss": 1}\n{"step": 40, "loss": "x"}\n')
    for junk in (b"{torn", b"[1, 2, 3]", b'{"tensorboard": [], "mlflow": "x"}', b" " * (MAX_STATE_BYTES + 1)):
        (run.path / STATE_FILE).write_bytes(junk)
        assert where_tracked(run) == {}
    (run.path / STATE_FILE).write_bytes(b"{torn")
    assert track_main([str(run.path), "--to", "tensorboard"]) == 0
    assert "3 new metric rows" in capsys.readouterr().out  # the 3 good rows are sent, the junk lines left out
    assert tb_scalars(run.path / "tensorboard")["loss"] == [(10, pytest.approx(1.2)), (20, pytest.approx(0.9))]


def test_a_slow_tracker_never_holds_the_training_step(tmp_path: Path, monkeypatch) -> None:
    """Records reach a tracker from a thread: a flush returns at once while a send takes its time, a flush during a
    send skips its turn, and the end still sends everything."""
    import threading
    import time as time_

    from core.store.lifecycle import RunLife
    from core.store.trackers import RunTracking

    run = create_run("slow", "name: slow\ntrain: {trackers: [tensorboard]}\n", root=tmp_path, kind="finetune")
    threads: list[str] = []
    real = RunTracking.sync

    def slow_sync(self, final: bool = False) -> int:
        threads.append(threading.current_thread().name)
        time_.sleep(0.5)
        return real(self, final)

    monkeypatch.setattr(RunTracking, "sync", slow_sync)
    with RunLife(run, lambda: 1, 2, progress=False) as life:
        life.record("metrics.jsonl", [{"step": 1, "loss": 2.0}])
        t0 = time_.perf_counter()
        life.flush()
        life.flush()  # during the first send: skipped
        assert time_.perf_counter() - t0 < 0.3
        life.record("metrics.jsonl", [{"step": 2, "loss": 1.5}])
    assert threads[0].startswith("trackers") and len(threads) == 2  # one send from the thread, the final one
    assert tb_scalars(run.path / "tensorboard")["loss"] == [(1, pytest.approx(2.0)), (2, pytest.approx(1.5))]
