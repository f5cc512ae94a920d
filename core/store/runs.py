"""The run store: one folder per run, the contract between the engine and the UI.

    <runs root>/<run id>/
        config.yaml     exactly what was asked
        status.json     state (running, completed, failed, stopped), pid, times, step, error text
        metrics.jsonl   one JSON object per logged step
        fns.jsonl       flagged pairs with both tiles' dataset indices
        checkpoints/    last.safetensors (+ last.json card), written atomically
        log.txt         human-readable log
        data.json       pretraining: tiles, split scenes and the scenes trained on (to rebuild its batches)
        splits.json     fine-tuning: the scenes of each split (a resume must find them again)
        flag_quality.json  pretraining: the cached flag report of core.analysis.fn_report
        units.jsonl     comparison: finished pretraining and evaluation units (kept by --resume)
        stop_request.json  the pid a Stop was sent to (launch.stop), so it is sent once

The UI reads runs only through this module.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from ..repo import REPO_ROOT
from .file_versions import json_file, load_yaml, yaml_file
from .old_runs import as_made
from .run_lock import RunBusyError, pid_alive, run_locked
from .run_state import SHOWN_LIVE, next_status, shown_state
from .run_create import STAGING_PREFIX, RunsRootError, create_run, remove_stale_staging  # noqa: F401 (read from here)

STOP_REQUEST = "stop_request.json"  # the app's Stop: its own file, as status.json belongs to the trainer
KINDS = ("pretrain", "finetune", "compare", "probe")


def runs_root() -> Path:
    """Default ``runs/`` beside the code; the ``FALSE_WB_RUNS`` environment variable overrides it."""
    return Path(os.environ.get("FALSE_WB_RUNS") or REPO_ROOT / "runs")


def atomic_write_with(path: Path, fill: Callable[[str], None], sha256: bool = False) -> str | None:
    """``fill(tmp)`` writes ``tmp``, a file in a private ``.<name>.*.tmp`` folder beside ``path``; it is fsynced, then
    renamed over ``path``: readers see the old or the new file, whole. The folder holds whatever ``fill`` leaves if
    it is killed (safetensors' ``save_file`` writes a temp file of its own beside ``tmp`` and renames it), so one
    sweep of ``.*.tmp`` (``run_lock.remove_stale_temps``) removes it all. With ``sha256``, the digest of the bytes
    written, read back from the page cache: a writer that streams to the file never holds it whole in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp = folder / path.name
    try:
        fill(str(tmp))
        with open(tmp, "r+b") as f:  # writable: fsync of a read-only descriptor fails on some systems
            digest = hashlib.file_digest(f, "sha256").hexdigest() if sha256 else None
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # run files are meant to be read by others
        os.replace(tmp, path)
        return digest
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically (``atomic_write_with``)."""
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


class NotARunError(ValueError):
    """A folder that is not a run folder was given where one is needed."""


class AmbiguousRunName(NotARunError):
    """A name that several runs were made with: the caller says it rather than falling back to a file path."""


class NoSuchRun(NotARunError):
    """Nothing of that path or name: a caller that also takes files (``model.init``) may look for one instead."""


@dataclass
class Run:
    """A run folder on disk."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    # ------------------------------------------------------------------ writing
    def write_status(self, **fields: Any) -> dict[str, Any]:
        """Update ``status.json``; a ``state`` among the fields must be a move the state machine allows
        (``core.store.run_state``: IllegalTransition otherwise)."""
        status = next_status(self.status(), fields)
        atomic_write_json(self.path / "status.json", status)
        return status

    def append_jsonl(self, name: str, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in records)
        if lines:
            with open(self.path / name, "a") as f:
                f.write(lines)

    def log(self, message: str) -> None:
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def truncate_after(self, step: int) -> None:
        """Drop logged records past ``step`` (written after the last checkpoint of a killed run)."""
        for name in ("metrics.jsonl", "fns.jsonl"):
            p = self.path / name
            if p.exists():
                kept = [r for r in read_jsonl(p) if r.get("step", 0) <= step]
                atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in kept).encode())

    # ------------------------------------------------------------------ reading
    def validates(self) -> bool:  # False: fine-tuned without a validation split, its only scores the test's
        return self.status().get("validation") is not False

    def status(self) -> dict[str, Any]:
        p = self.path / "status.json"
        try:
            return json_file(p)
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            return {"state": "failed", "error": "status.json is unreadable"}

    def config_text(self) -> str:
        return (self.path / "config.yaml").read_text()

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    def flagged_pairs(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "fns.jsonl")

    def pair_counts(self) -> list[dict[str, int]]:
        """Flagged and calibrated pairs of every step (from ``fns.jsonl``, which holds every step's pairs, not only
        the logged steps of ``metrics.jsonl``), steps without pairs as zeros, up to the last step recorded."""
        counts: dict[int, list[int]] = {}
        for rec in self.flagged_pairs():
            c = counts.setdefault(int(rec.get("step", 0)), [0, 0])
            c[0] += 1
            c[1] += bool(rec.get("calibrated"))
        last = max([*counts, *(int(m["step"]) for m in self.metrics() if "step" in m and "split" not in m), 0])
        return [{"step": s, "flagged": counts.get(s, [0, 0])[0], "calibrated": counts.get(s, [0, 0])[1]}
                for s in range(1, last + 1)]

    def recorded_step(self) -> int | None:
        """The steps a count over the run's records should read: the status step once it has ended; while live, the
        last step with records on disk (written at logged steps; the status step runs ahead of them)."""
        if not self.is_live():
            return self.status().get("step")
        counts = self.pair_counts()
        return counts[-1]["step"] if counts else 0

    def last_checkpoint(self) -> Path | None:
        p = self.checkpoint_dir / "last.safetensors"
        return p if p.exists() else None

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON result file of the run (test_metrics.json, confusion.json, ...), None if absent or torn."""
        return read_json_file(self.path / name)

    def stored_config(self) -> dict[str, Any]:
        """The run's config.yaml for resuming it; NotARunError in one line when it is missing, not UTF-8, not
        YAML (a python tag included) or not a mapping."""
        where = self.path / "config.yaml"
        try:
            raw = load_yaml(where.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotARunError(f"run {self.path} has no config.yaml") from None
        except UnicodeDecodeError:
            raise NotARunError(f"{where} is not UTF-8 text") from None
        except OSError as err:
            raise NotARunError(f"{where} cannot be read: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise NotARunError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from None
        if not isinstance(raw, dict) or not raw:
            raise NotARunError(f"{where} does not hold a config (a mapping of settings)")
        return as_made(raw)

    def config(self) -> dict[str, Any]:
        """The run's config as a dict ({} when config.yaml is missing or unreadable); parsed once per file version
        in this process (the pages ask for every run on every view)."""
        try:
            raw = yaml_file(self.path / "config.yaml")
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return {}
        return as_made(raw) if isinstance(raw, dict) else {}

    def kind(self) -> str:
        """pretrain, finetune, compare or probe: from status.json, else from the shape of the config."""
        kind = self.status().get("kind")
        return kind if kind in KINDS else kind_of_config(self.config())

    def state(self) -> str:
        """The recorded state as shown (``run_state.shown_state``): 'died' for a live record whose process is gone
        on this host, 'stopping' for a running one whose process was asked to stop."""
        s = self.status()
        alive = s.get("host") not in (None, socket.gethostname()) or pid_alive(s.get("pid"))
        return shown_state(s.get("state"), alive, s.get("state") == "running" and self.stop_asked(s.get("pid")))

    def stop_asked(self, pid: Any = None) -> bool:
        """Whether a Stop was sent to the run's current process (a resumed run has a new one, so an old Stop is
        forgotten)."""
        pid = self.status().get("pid") if pid is None else pid
        asked = read_json_file(self.path / STOP_REQUEST) or {}
        return pid is not None and asked.get("pid") == pid

    def is_live(self) -> bool:
        """Being trained now: its writer holds the lock, or its status says so and its process exists."""
        return run_locked(self.path) or self.state() in SHOWN_LIVE

    def log_text(self, max_chars: int = 200_000) -> str:
        return tail_text(self.path / "log.txt", max_chars)

    def summary(self) -> dict[str, Any]:
        """One row for a table of runs: what it is, where it stands, its best number (``run_summary``)."""
        from .run_summary import summary_row

        return summary_row(self)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping a torn last line (a run killed mid-write)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when it is absent, torn or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def tail_text(path: Path, max_chars: int) -> str:
    """The last ``max_chars`` bytes of a text file (a log may be long; only its end matters), '' if absent."""
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - max_chars))
        return f.read().decode(errors="replace")


def kind_of_config(raw: dict[str, Any]) -> str:
    """Which run a config describes, from its shape: compare, finetune, probe (a preset, not a run) or pretrain."""
    if "pretrain_config" in raw:
        return "compare"
    model = raw.get("model")
    if isinstance(model, dict) and "arch" in model:
        return "finetune"
    if isinstance(model, dict) and "init" in model:
        return "probe"
    return "pretrain"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "run"


def open_run(path: str | Path) -> Run:
    """Open an existing run folder, or raise NotARunError saying why it is not one."""
    p = Path(path)
    if not p.is_dir():  # a file: a review gave a checkpoint and read "no such folder" of a file that exists
        if p.is_file():
            raise NotARunError(f"not a run folder (a file): {p}; give the run's folder (`false-wb runs` lists them)")
        raise NoSuchRun(f"not a run folder (no such folder): {p}")
    if not (p / "config.yaml").is_file() or not (p / "status.json").is_file():
        raise NotARunError(f"not a run folder (no config.yaml and status.json): {p}")
    return Run(p)


def list_runs(root: Path | None = None) -> list[Run]:
    """Run folders under the root, oldest first (folder names start with a time stamp)."""
    root = Path(root) if root else runs_root()
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()]


def find_run(run_id: str, root: Path | None = None) -> Run:
    """The run folder called ``run_id`` directly under the root; NotARunError for anything else."""
    root = Path(root) if root else runs_root()
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise NotARunError(f"not a run name: {run_id!r}")
    return open_run(root / run_id)




def open_run_arg(text: str | Path, root: Path | None = None) -> Run:
    """A run as a command line names it: a run folder's path, or a run's name under the runs root (as the Runs page
    lists it), bare or as ``runs/<run>`` (as the README writes it, when ``FALSE_WB_RUNS`` puts the runs elsewhere: a
    review's ``--resume runs/<id>`` failed there while ``model.init=runs/<id>`` worked); NotARunError saying both
    where it looked."""
    path = Path(text)
    if not path.exists() and not isinstance(text, Path) and path.parts[:1] == ("runs",) and len(path.parts) == 2:
        text = path.parts[1]  # runs/<run> not here: looked up under the runs root
    elif path.exists() or isinstance(text, Path) or "/" in str(text) or "\\" in str(text):
        return open_run(path)
    where = Path(root) if root else runs_root()
    if (where / str(text)).is_dir():
        return find_run(str(text), root)  # one under the runs root: a run, or why it is none
    named = runs_named(str(text), where)
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(r.id for r in reversed(named[-5:])) + (f" (and {len(named) - 5} older)" * (len(named) > 5))
        raise AmbiguousRunName(f"{len(named)} runs are named {text!r} in {where}: {ids}; give one of these")
    raise NoSuchRun(f"not a run folder (no such folder): {text}, nor a run of that name in {where} "
                       "(`false-wb runs` lists them)")


def runs_named(name: str, root: Path | None = None) -> list[Run]:
    """Runs made with ``name=NAME``, oldest first: the name their first status recorded, or for a run made before
    it did, their folder's (time stamp, the name, ``-N`` when two began in one second, so there ``seg-2`` may be a
    second ``seg``)."""
    slug = _slug(name)
    old_style = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(slug)}(-\d{{1,3}})?")
    out = []
    for r in list_runs(root):
        made = r.status().get("name")
        if isinstance(made, str) and _slug(made) == slug or made is None and old_style.fullmatch(r.id):
            out.append(r)
    return out


def delete_run(run: Run) -> None:
    """Delete a finished run folder; RunBusyError for a live one. Renamed aside first, so it vanishes whole."""
    if run.is_live():
        state = run.state()
        busy = state if state in SHOWN_LIVE else "being trained by another process"
        raise RunBusyError(f"run {run.id} is {busy}; stop it before deleting it")
    trash = run.path.with_name(f".deleted-{run.id}-{time.time_ns()}")
    os.replace(run.path, trash)
    shutil.rmtree(trash, ignore_errors=True)
