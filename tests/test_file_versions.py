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


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path) -> None:
    """Issue 29: a few hundred bytes whose aliases expand to 9^9 items made the Runs page take 40-56 s and 10 GB."""
    import time

    import pytest
    import yaml

    from core.config import ConfigError, load_config
    from core.store.file_versions import YamlRefused, load_yaml
    from core.store.runs import NotARunError, Run

    assert len(BOMB) < 600
    with pytest.raises(YamlRefused, match=r"an alias \(\*a\) at line 2"):
        load_yaml(BOMB)
    with pytest.raises(YamlRefused, match="nested deeper than 32 levels"):
        load_yaml("[" * 40 + "]" * 40)
    with pytest.raises(YamlRefused, match="over the 1,048,576"):
        load_yaml("# " + "x" * (1 << 20))
    assert issubclass(YamlRefused, yaml.YAMLError)  # every reader's YAML error path takes it
    run = tmp_path / "20260101-000000-bomb"
    run.mkdir()
    (run / "config.yaml").write_text(BOMB)
    (run / "status.json").write_text('{"state": "completed", "kind": "pretrain"}')
    t0 = time.perf_counter()
    assert Run(run).config() == {} and "unreadable" in Run(run).summary()["method"]
    assert time.perf_counter() - t0 < 2
    with pytest.raises(NotARunError, match="alias"):
        Run(run).stored_config()
    with pytest.raises(ConfigError, match="alias"):
        load_config(run / "config.yaml")
