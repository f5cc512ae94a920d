"""The run store: one folder per run, the contract between the engine and the UI.

    <runs root>/<run id>/
        config.yaml     exactly what was asked
        status.json     state (running, completed, failed, stopped), pid, times, step, error text
        metrics.jsonl   one JSON object per logged step
        fns.jsonl       flagged pairs with both tiles' dataset indices
        checkpoints/    last.safetensors (+ last.json card), written atomically
        log.txt         human-readable log

The UI reads runs only through this module.
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

STATES = ("running", "completed", "failed", "stopped")
REPO_ROOT = Path(__file__).resolve().parent.parent


def runs_root() -> Path:
    """Default ``runs/`` beside the code; the ``FALSE_WB_RUNS`` environment variable overrides it."""
    return Path(os.environ.get("FALSE_WB_RUNS") or REPO_ROOT / "runs")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


class NotARunError(ValueError):
    """A folder that is not a run folder was given where one is needed."""


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
        status = self.status()
        status.update(fields)
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
    def status(self) -> dict[str, Any]:
        p = self.path / "status.json"
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, OSError):
            return {"state": "failed", "error": "status.json is unreadable"}

    def config_text(self) -> str:
        return (self.path / "config.yaml").read_text()

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    def flagged_pairs(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "fns.jsonl")

    def last_checkpoint(self) -> Path | None:
        p = self.checkpoint_dir / "last.safetensors"
        return p if p.exists() else None


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "run"


def create_run(name: str, config_yaml: str, root: Path | None = None) -> Run:
    """Make a new, uniquely named run folder (mkdir is atomic, so two launches never share one)."""
    root = Path(root) if root else runs_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = root / (f"{stamp}-{_slug(name)}" + ("" if n == 0 else f"-{n}"))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        run = Run(path)
        atomic_write_bytes(path / "config.yaml", config_yaml.encode())
        run.checkpoint_dir.mkdir()
        run.write_status(state="running", pid=os.getpid(), host=socket.gethostname(), created=time.time(),
                         started=time.time(), ended=None, step=0, total_steps=None, error=None)
        return run
    raise RuntimeError(f"could not create a unique run folder under {root}")


def open_run(path: str | Path) -> Run:
    """Open an existing run folder, or raise NotARunError saying why it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise NotARunError(f"not a run folder (no such folder): {p}")
    if not (p / "config.yaml").is_file() or not (p / "status.json").is_file():
        raise NotARunError(f"not a run folder (no config.yaml and status.json): {p}")
    return Run(p)


def list_runs(root: Path | None = None) -> list[Run]:
    root = Path(root) if root else runs_root()
    if not root.is_dir():
        return []
    runs = [Run(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / "config.yaml").is_file()]
    return runs
