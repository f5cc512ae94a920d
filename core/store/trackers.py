"""A run's records sent on to the trackers researchers already keep their experiments in: TensorBoard and MLflow.

Why they follow the run folder: ``metrics.jsonl`` stays the record (offline, it drives every page); a tracker gets a
copy of its rows, the config as hyper-parameters, and pictures of the flagged pairs, through one path for a live run
(``RunLife.flush`` hands ``RunTracking.sync`` to a thread as records reach the folder) and for a run made before
(``false-wb track RUN --to ...`` syncs it from its first row). What has been sent is counted in ``tracking.json``, so a
resumed run goes on where its tracker stopped: TensorBoard drops the steps after the checkpoint it resumed from
(``purge_step``), MLflow keeps its run id; rows a kill cut from the folder are sent again when trained again (a
resume is bit-exact, so MLflow then holds the same value twice at those steps).

Nothing contacts a server unless ``train.mlflow_uri`` names one: the default MLflow store is the folder
``<runs root>/mlruns`` (MLflow's file store; MLflow 3 keeps it in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``,
which this module sets for that folder only), TensorBoard's event files live in the run's ``tensorboard/``.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .run_compare import flat_settings
from .runs import Run, atomic_write_json, runs_root

TRACKERS = ("tensorboard", "mlflow")
STATE_FILE = "tracking.json"
MAX_STATE_BYTES = 64 * 1024  # a few offsets and ids: anything bigger is not ours
EXPERIMENT = "false-workbench"
PAIRS_PER_PICTURE = 8  # flagged pairs drawn per picture
PICTURE_EVERY_S = 10.0  # a live run sends at most one picture this often (records reach the folder every second)
RECORDS = ("metrics.jsonl", "fns.jsonl")
NOT_SCALARS = ("step", "time", "split", "model")  # row keys that are the row's place, not a measurement

Pictures = Callable[[list[dict[str, Any]]], np.ndarray | None]  # fns.jsonl rows -> an (H, W, 3) uint8 grid


class TrackerError(RuntimeError):
    """A tracker cannot be reached or written; the message says which and why in one line."""


class Sink(Protocol):
    def params(self, flat: Mapping[str, Any]) -> None: ...
    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...
    def picture(self, step: int, tag: str, rgb: np.ndarray) -> None: ...
    def close(self, state: str | None) -> None: ...


# ------------------------------------------------------------------------------------------------ rows
def row_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of one ``metrics.jsonl`` row, named as a tracker shows them: a validation row's under
    ``val/`` (its per-class IoU as ``val/iou/<class>``), a weight average's under ``val_average/``."""
    split = row.get("split")
    prefix = "" if not split else f"{split}_average/" if row.get("model") == "weight average" else f"{split}/"
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                put(f"{name}/{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)

    for key, value in row.items():
        if key not in NOT_SCALARS:
            put(prefix + key, value)
    return out


def read_rows(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole JSON lines of ``path`` after byte ``offset``, and the offset reached (a line still being written,
    without its newline, waits for the next read; a file cut shorter than ``offset`` is read from its end)."""
    if not path.is_file():
        return [], 0
    with open(path, "rb") as f:
        offset = min(offset, f.seek(0, os.SEEK_END))
        f.seek(offset)
        data = f.read()
    whole = data[:data.rfind(b"\n") + 1]
    rows: list[dict[str, Any]] = []
    for line in whole.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + len(whole)


# ------------------------------------------------------------------------------------------------ sinks
class TensorBoardSink:
    """Event files in the run's ``tensorboard/``: scalars, the config as text and as hyper-parameters, pictures."""

    def __init__(self, folder: Path, purge_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise TrackerError(f"tensorboard is not installed ({err}): pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def params(self, flat: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        kept = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
        for summary in hparams(kept, {}):  # the HParams tab, in this run's own event file
            self.writer.file_writer.add_summary(summary)
        text = "\n".join(f"    {k}: {v}" for k, v in flat.items())
        self.writer.add_text("config", text, 0)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def picture(self, step: int, tag: str, rgb: np.ndarray) -> None:
        self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def close(self, state: str | None) -> None:  # noqa: ARG002 - TensorBoard has no run state
        self.writer.flush()
        self.writer.close()


class MLflowSink:
    """One MLflow run per run folder (its id kept in ``tracking.json``) in the experiment ``false-workbench``."""

    def __init__(self, uri: str, run_name: str, run_id: str | None) -> None:
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif uri.startswith(("http:", "https:")):  # a server that is down: a line in seconds, not minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise TrackerError(f"mlflow is not installed ({err}): pip install mlflow-skinny") from None
        self._Metric, self._Param = Metric, Param
        try:
            self.client = MlflowClient(tracking_uri=uri)
            if run_id is None:
                found = self.client.get_experiment_by_name(EXPERIMENT)
                experiment = found.experiment_id if found else self.client.create_experiment(EXPERIMENT)
                run_id = self.client.create_run(experiment, run_name=run_name).info.run_id
        except Exception as err:  # noqa: BLE001 - a server down, a bad URI: one line, never the trainer's traceback
            raise TrackerError(f"MLflow at {uri}: {type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
        self.run_id = run_id

    def params(self, flat: Mapping[str, Any]) -> None:
        items = [self._Param(k[:250], str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._Metric(k.replace("/", "."), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def picture(self, step: int, tag: str, rgb: np.ndarray) -> None:
        self.client.log_image(self.run_id, rgb, artifact_file=f"{tag}/step_{step:07d}.png")

    def close(self, state: str | None) -> None:
        if state is not None:
            status = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}.get(state)
            if status:
                self.client.set_terminated(self.run_id, status)


def default_mlflow_uri(root: Path | None = None) -> str:
    return (Path(root) if root else runs_root()).resolve().joinpath("mlruns").as_uri()


# ------------------------------------------------------------------------------------------------ one run
class RunTracking:
    """The trackers of one run folder, each with what it was sent (byte offsets in ``tracking.json``), and ``sync``
    for what is new. Offsets are kept per tracker, so a run tracked live to TensorBoard can be sent to MLflow later."""

    def __init__(self, run: Run, names: Iterable[str], mlflow_uri: str | None = None,
                 pictures: Pictures | None = None, resume_step: int | None = None) -> None:
        self.run, self.pictures = run, pictures
        self._pictured = -math.inf
        self.state = _read_state(run)
        self.sinks: dict[str, Sink] = {}
        self.sent: dict[str, dict[str, int]] = {}
        for name in names:
            known = self.state.get(name) if isinstance(self.state.get(name), dict) else {}
            if name == "tensorboard":
                self.sinks[name] = TensorBoardSink(run.path / "tensorboard", purge_step=_purge(resume_step))
            elif name == "mlflow":
                uri = mlflow_uri or known.get("uri") or default_mlflow_uri(run.path.parent)
                if known.get("uri") != uri:  # another store: everything goes there from the start
                    known = {}
                sink = MLflowSink(uri, run.path.name, known.get("run_id"))
                known.update(uri=uri, run_id=sink.run_id, experiment=EXPERIMENT)
                self.sinks[name] = sink
            else:
                raise TrackerError(f"unknown tracker {name!r}: choose from {', '.join(TRACKERS)}")
            self.state[name] = known
            sent = known.get("sent") if isinstance(known.get("sent"), dict) else {}
            # a resume cut the records past its checkpoint: those are sent again when trained again
            self.sent[name] = {f: min(int(sent.get(f, 0)), _size(run.path / f)) for f in RECORDS}
        flat = None
        for name, sink in self.sinks.items():
            if not self.state[name].get("params_sent"):
                flat = flat if flat is not None else flat_settings(run.config())
                sink.params(flat)
                self.state[name]["params_sent"] = True
        self._save()

    def sync(self, final: bool = False) -> int:
        """Send each tracker the rows added since it was last sent some (and a picture of the newest flagged pairs
        at most every ``PICTURE_EVERY_S``, and at the ``final`` sync); the most metric rows any tracker was sent (lines that are not a logged step
        with numbers are left out)."""
        count = 0
        picture_due = self.pictures is not None and (final or time.monotonic() - self._pictured >= PICTURE_EVERY_S)
        for name, sink in self.sinks.items():
            rows, self.sent[name]["metrics.jsonl"] = read_rows(self.run.path / "metrics.jsonl",
                                                               self.sent[name]["metrics.jsonl"])
            sent = 0
            for row in rows:
                step, values = row.get("step"), row_scalars(row)
                if isinstance(step, int) and not isinstance(step, bool) and values:
                    sink.scalars(step, values)
                    sent += 1
            count = max(count, sent)
            if picture_due:
                pairs, self.sent[name]["fns.jsonl"] = read_rows(self.run.path / "fns.jsonl",
                                                                self.sent[name]["fns.jsonl"])
                self._send_picture(sink, pairs)
        if picture_due:
            self._pictured = time.monotonic()
        self._save()
        return count

    def _send_picture(self, sink: Sink, pairs: list[dict[str, Any]]) -> None:
        """The flagged pairs of the last step among ``pairs`` with any, as one grid."""
        if not pairs or self.pictures is None:
            return
        last = max(int(p.get("step", 0)) for p in pairs)
        grid = self.pictures([p for p in pairs if int(p.get("step", 0)) == last][:PAIRS_PER_PICTURE])
        if grid is not None:
            sink.picture(last, "flagged_pairs", grid)

    def pictures_over_time(self, count: int) -> int:
        """A finished run's flagged pairs at up to ``count`` steps spread over its training, for the trackers that
        have no pictures of it yet (``false-wb track``); the number of pictures made."""
        waiting = [n for n in self.sinks if not self.state[n].get("pictures_sent")]
        if self.pictures is None or count <= 0 or not waiting:
            return 0
        by_step: dict[int, list[dict[str, Any]]] = {}
        for row in read_rows(self.run.path / "fns.jsonl", 0)[0]:
            chosen = by_step.setdefault(int(row.get("step", 0)), [])
            if len(chosen) < PAIRS_PER_PICTURE:
                chosen.append(row)
        steps = sorted(by_step)
        picked = sorted({steps[round(i * (len(steps) - 1) / max(count - 1, 1))] for i in range(count)}) if steps else []
        for step in picked:
            grid = self.pictures(by_step[step])
            for name in waiting:
                if grid is not None:
                    self.sinks[name].picture(step, "flagged_pairs", grid)
        for name in waiting:
            self.state[name]["pictures_sent"] = True
            self.sent[name]["fns.jsonl"] = _size(self.run.path / "fns.jsonl")
        self._save()
        return len(picked)

    def close(self, state: str | None = None) -> None:
        try:
            self.sync(final=True)
        finally:
            for sink in self.sinks.values():
                sink.close(state)
            self._save()

    def _save(self) -> None:
        for name, sent in self.sent.items():
            self.state[name]["sent"] = dict(sent)
        atomic_write_json(self.run.path / STATE_FILE, self.state)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _purge(resume_step: int | None) -> int | None:
    return resume_step + 1 if resume_step else None


def _read_state(run: Run) -> dict[str, Any]:
    """What was sent, or {} (send from the start) for a missing, torn, foreign or oversized file."""
    path = run.path / STATE_FILE
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            return {}
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def tracking_for(run: Run | None, pictures: Pictures | None = None,
                 resume_step: int | None = None) -> RunTracking | None:
    """The trackers a run's config names (``train.trackers``), or None when it names none."""
    if run is None:
        return None
    train = run.config().get("train")
    names = (train.get("trackers") or []) if isinstance(train, dict) else []
    if not names:
        return None
    return RunTracking(run, names, train.get("mlflow_uri"), pictures=pictures, resume_step=resume_step)


def where_tracked(run: Run) -> dict[str, tuple[str, str]]:
    """For each tracker a run was sent to: where it is, and the command that opens it there (what the Runs page and
    ``false-wb track`` say)."""
    state = _read_state(run)
    out: dict[str, tuple[str, str]] = {}
    if isinstance(state.get("tensorboard"), dict):
        folder = run.path / "tensorboard"
        out["tensorboard"] = (f"event files in {folder}", f"tensorboard --logdir {folder}")
    known = state.get("mlflow")
    if isinstance(known, dict) and known.get("run_id"):
        out["mlflow"] = (f"MLflow run {known['run_id']} (experiment {known.get('experiment', EXPERIMENT)}) in "
                         f"{known.get('uri')}", f"mlflow ui --backend-store-uri {known.get('uri')}")
    return out
