"""Files read once per version: the pages read every run's status and config, every preset and every model card,
on every view.

A version is (mtime in ns, size, inode): an atomic write (a new file renamed over the old) changes the inode even
when it lands within the same clock tick with the same size. A stat costs a fraction of an open-read-parse here.
"""
from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster, the same safe subset
MAX_ENTRIES = 4096
_CACHE: dict[tuple[str, str], tuple[tuple[int, int, int], Any]] = {}
_LOCK = threading.Lock()


def load_yaml(text: str) -> Any:
    """Safe YAML through libyaml where it is installed."""
    return yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 - a safe loader


def read_once(path: Path, read: Callable[[Path], Any], name: str) -> Any:
    """``read(path)``, from memory while the file is unchanged; a copy, so callers may change it.

    ``name`` tells readers of the same file apart. The reader's errors propagate, and nothing is kept for a file
    that failed. The stat comes first: a file replaced between stat and read is read again next time."""
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    key = (str(path), name)
    hit = _CACHE.get(key)
    if hit is None or hit[0] != version:
        value = read(path)
        with _LOCK:
            if len(_CACHE) >= MAX_ENTRIES:
                _CACHE.clear()
            _CACHE[key] = hit = (version, value)
    return copy.deepcopy(hit[1])


def json_file(path: Path) -> Any:
    """The file's JSON (errors: OSError, UnicodeDecodeError, json.JSONDecodeError)."""
    return read_once(path, lambda p: json.loads(p.read_text(encoding="utf-8")), "json")


def yaml_file(path: Path) -> Any:
    """The file's YAML, safely (errors: OSError, UnicodeDecodeError, yaml.YAMLError)."""
    return read_once(path, lambda p: load_yaml(p.read_text(encoding="utf-8")), "yaml")
