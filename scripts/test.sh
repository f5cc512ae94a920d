#!/usr/bin/env bash
# Quickstart command 2: set up, then run the whole test suite.
# Two pytest workers (pytest-xdist), each test file whole in one worker (its module fixtures, e.g. the browser
# test's server, made once), the longest files first (tests/durations.json). Each worker, and the processes its
# tests start, uses one torch thread (tests/conftest.py: two threads per worker on two cores made every convolution
# wait). The suite is bound by CPU, not by waits (three workers were no faster, side by side, and on 2026-12-07 they
# held 17 of 24 GB between them and waited on the disk): on 2 idle cores it took 446 s (a working copy) to 545 s
# (a fresh clone) on 2026-12-07/08 (10.5 to 13.4 min of CPU for nearly the same work), `-m "not slow"` 131-162 s,
# as this machine's speed varied.
# FALSE_WB_TEST_WORKERS=0 runs them in one process; further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/browser.sh   # chromium for the browser tests, installed where it can be, else said
# the suite starts some 100 Python processes (launched runs, torchrun ranks, kills): with PYTHONDONTWRITEBYTECODE set
# (as on our CI machine), each compiled every module of the project it imports again, and each worker rewrote every
# test file's asserts again; their caches (__pycache__/, ignored by git) are written once here instead
unset PYTHONDONTWRITEBYTECODE
# --no-loadscope-reorder: xdist would otherwise hand out the files with the most tests first, not the longest
exec "${PYTHON:-python3}" -m pytest -q -n "${FALSE_WB_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
