"""Files read once per version: a changed file is read again, a copy is returned, a failed read keeps nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.store.file_versions import json_file, read_once, yaml_file


def test_an_atomically_replaced_file_of_the_same_size_is_read_again(tmp_path: Path) -> None:
    p = tmp_path / "status.json"
    p.write_text(json.dumps({"state": "running"}))
    assert json_file(p) == {"state": "running"}
    stat = p.stat()
    tmp = tmp_path / "status.json.tmp"
    tmp.write_text(json.dumps({"state": "stopped"}))  # same length, same mtime: only the inode differs
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(tmp, p)
    assert json_file(p) == {"state": "stopped"}


def test_callers_get_a_copy_and_reads_are_counted_once_per_version(tmp_path: Path) -> None:
    p = tmp_path / "config.yaml"
    p.write_text("train:\n  lr: 0.1\n")
    calls = []

    def read(path: Path) -> dict:
        calls.append(path)
        return yaml_file(path)

    first = read_once(p, read, "counting")
    first["train"]["lr"] = 99
    assert read_once(p, read, "counting") == {"train": {"lr": 0.1}}
    assert len(calls) == 1
    p.write_text("train:\n  lr: 0.25\n")
    assert read_once(p, read, "counting") == {"train": {"lr": 0.25}}
    assert len(calls) == 2


def test_a_torn_file_is_an_error_each_time_and_its_repair_is_seen(tmp_path: Path) -> None:
    p = tmp_path / "status.json"
    p.write_text('{"state": "runn')
    for _ in range(2):
        with pytest.raises(json.JSONDecodeError):
            json_file(p)
    p.write_text('{"state": "done"}')
    assert json_file(p) == {"state": "done"}
    p.unlink()
    with pytest.raises(FileNotFoundError):
        json_file(p)
