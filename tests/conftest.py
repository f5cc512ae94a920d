"""Shared pytest setup: make the repository root importable and keep torch to the machine's two cores."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def store_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide real run store (see tests/store.py); read it, do not change it."""
    from tests.store import build_store

    base = tmp_path_factory.mktemp("store")
    mp = pytest.MonkeyPatch()
    mp.setenv("FALSE_WB_RUNS", str(base / "runs"))
    mp.setenv("FALSE_WB_DATA", str(base / "data"))
    try:
        build_store(base)
    finally:
        mp.undo()
    return base


@pytest.fixture()
def populated_store(store_base: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the workbench at the shared store (read only); returns its runs root."""
    monkeypatch.setenv("FALSE_WB_RUNS", str(store_base / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    return store_base / "runs"


@pytest.fixture()
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs root and data root in a temp folder; returns the runs root."""
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return tmp_path / "runs"
