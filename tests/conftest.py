"""Shared pytest setup: keep torch to the machine's two cores (the root is importable: ``pythonpath`` in
pyproject.toml, and the project is installed with ``pip install -e .``)."""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

import os  # noqa: E402

# Two xdist workers on two cores: one torch thread each (and in the processes tests start), else four threads fight
# for two cores and every convolution waits on the others. FALSE_WB_TEST_THREADS overrides.
THREADS = int(os.environ.get("FALSE_WB_TEST_THREADS")
              or (1 if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= 2 else 2))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)
# every app the tests start (AppTest in each worker, the browser tests' servers) would import and ready umap-learn's
# code at start (2 s of a core each once numba keeps it on disk, 10 s before); the few tests that draw a map do it then
os.environ.setdefault("FALSE_WB_WARMUP", "0")


import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's script runner (AppTest) puts its page script in ``sys.modules["__main__"]`` and leaves it there;
    a later test in the same worker that spawns processes (torch.multiprocessing) would make each child re-run that
    script as its main module and die. Put the real one back after every test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _no_shared_segment_results():
    """The Segment page shares results between the sessions of one server (``workbench.shared_results``), and every
    AppTest of a worker is one server: each test starts from none, as its counts of model runs expect."""
    shared = sys.modules.get("workbench.shared_results")
    if shared is not None:
        shared.clear()
    yield


@pytest.fixture(autouse=True)
def _system_malloc_kept():
    """Only a training process's entry keeps freed host memory (``core.host_memory``), never a library call: a test
    calling a command's ``main`` in this process must leave the worker's malloc as it was."""
    yield
    import core.host_memory

    assert not core.host_memory._applied, "this test changed the test process's malloc (keep_freed_host_memory)"


@pytest.fixture(scope="session")
def store_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide real run store (see tests/store.py); read it, do not change it. Built once for all the xdist
    workers of a session (the first to ask builds it under a lock, the others wait and share it): it is 30 s of
    training a worker would otherwise repeat."""
    import fcntl
    import shutil

    from tests.store import build_store

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder above every worker's own
    base = shared / "shared-store"
    with open(shared / "shared-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / ".built").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            mp = pytest.MonkeyPatch()
            mp.setenv("FALSE_WB_RUNS", str(base / "runs"))
            mp.setenv("FALSE_WB_DATA", str(base / "data"))
            try:
                build_store(base)
            finally:
                mp.undo()
            (base / ".built").touch()
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest test files first (``tests/durations.json``, made by ``scripts/test_durations.py``): with
    ``--dist loadfile`` each worker takes the next file when it is free, so long files left to the end of the
    alphabet kept one worker busy minutes after the other had finished. A stable sort: each file's tests keep
    their order, and a file not in the table (a new one) runs last."""
    import json

    table = ROOT / "tests" / "durations.json"
    seconds = json.loads(table.read_text()) if table.is_file() else {}
    items.sort(key=lambda item: -float(seconds.get(item.nodeid.split("::")[0], 0.0)))
