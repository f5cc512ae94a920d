"""Where data and caches live, and the one error type for bad data.

Why: every dataset writes its cache under one root that a user (or a test) can move with an environment
variable, and every data problem surfaces as one clear line that the CLI can turn into exit code 2.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV_VAR = "FALSE_WB_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]


class DataError(ValueError):
    """A data problem (missing folder, no readable images, broken cache); the message names the path."""


def data_root() -> Path:
    """The data root: ``$FALSE_WB_DATA`` if set, else ``<repo>/data`` (git-ignored)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def temp_dir_for(final: Path) -> Path:
    """A fresh private folder next to ``final`` (same file system, so publishing it is one rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished cache folder into place atomically; if another process won the race, keep theirs.

    Readers only ever see a complete folder: it appears in one rename, or not at all.
    """
    try:
        os.replace(tmp, final)  # on POSIX fails (ENOTEMPTY/EEXIST) when final is a non-empty folder
    except OSError:
        if not (final / "meta.json").is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
