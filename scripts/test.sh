#!/usr/bin/env bash
# Quickstart command 2: set up, then run the whole test suite.
# Two pytest workers (pytest-xdist), each test file whole in one worker (its module fixtures, e.g. the browser
# test's server, made once): most tests wait on subprocesses, servers and the browser, so two share 2 cores well;
# each worker, and the processes its tests start, uses one torch thread (tests/conftest.py: two threads per worker
# on two cores made every convolution wait)
# (10-11 min on 2 idle cores of a slow machine, the longest files first: tests/durations.json; `-m "not slow"`, the
# fast tier, about 2.5). FALSE_WB_TEST_WORKERS=0 runs them in one process; further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/browser.sh   # chromium for the browser tests, installed where it can be, else said
exec "${PYTHON:-python3}" -m pytest -q -n "${FALSE_WB_TEST_WORKERS:-2}" --dist loadfile "$@"
