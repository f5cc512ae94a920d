"""Files read once per version: the pages read every run's status and config, every preset and every model card,
on every view.

A version is (mtime in ns, size, inode): an atomic write (a new file renamed over the old) changes the inode even
when it lands within the same clock tick with the same size. A stat costs a fraction of an open-read-parse here.
"""
from __future__ import annotations

import copy
import hashlib
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


MAX_YAML_CHARS = 1 << 20  # a run config or card is a few KiB
MAX_YAML_DEPTH = 32


class YamlRefused(yaml.YAMLError):
    """A YAML text refused before it is built: too long, too deep, or with aliases (ours never use them)."""


def load_yaml(text: str) -> Any:
    """Safe YAML through libyaml where it is installed, bounded before anything is built: at most 1 MiB, 32 levels,
    no aliases. Why: a 470-byte alias bomb (each alias a reference to the one before) parses small and then expands
    to gigabytes in whatever walks or dumps it (the Runs page's settings table did)."""
    if len(text) > MAX_YAML_CHARS:
        raise YamlRefused(f"{len(text):,} characters is over the {MAX_YAML_CHARS:,} a settings file may have")
    depth = 0
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(f"an alias (*{event.anchor}) at line {event.start_mark.line + 1}: settings files here "
                              "do not use anchors and aliases (write the value out)")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlRefused(f"nested deeper than {MAX_YAML_DEPTH} levels at line {event.start_mark.line + 1}")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
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


_SHA: dict[tuple[str, int, int], str] = {}
SHA_MEMO = 4096  # hashes remembered (a server hashing every upload must not grow without end)


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, remembered per (path, size, mtime) so page reruns do not reread it (checkpoints,
    the embeddings' cache keys, the probe's, the Gradio demo's kept results)."""
    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_size, st.st_mtime_ns)
    if memo not in _SHA:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        while len(_SHA) >= SHA_MEMO:
            _SHA.pop(next(iter(_SHA)))
        _SHA[memo] = h.hexdigest()
    return _SHA[memo]
