"""A real browser against a real ``streamlit run``: the server on a free localhost port and headless Chromium.

Debian's chromium is used (``.ci/run`` installs it with apt-get); Playwright never downloads a browser here.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("FALSE_WB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict[str, str], log: Path, timeout: float = 90,
                     app: str | Path = "workbench") -> Iterator[str]:
    """``streamlit run workbench`` (or another ``app``, run from the repository with its settings) on a free port;
    yields its URL and stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.address", "localhost", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    """Save what the browser showed when a step failed (test-artifacts/failures/<name>.png)."""
    try:
        yield
    except BaseException:
        out = ARTIFACTS / "failures"
        out.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        raise


def wait_until_idle(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app has finished running the script: the app root's script state (which Streamlit's front
    end keeps for tests) is "notRunning". (The "Running..." status widget appears only after a delay, so its
    absence proves nothing about a script that has just started.)"""
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.getAttribute('data-test-script-state') === 'notRunning'; }", timeout=timeout_ms)


def settle(page, timeout_ms: float = 60_000) -> None:
    """Script finished, every image decoded and every plotly chart drawn: what a screenshot should show."""
    wait_until_idle(page, timeout_ms)
    for _ in range(2):  # elements still arriving after the first check get a second look
        page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=timeout_ms)
        page.wait_for_timeout(250)
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
                           ".every(c => c.querySelector('.main-svg'))", timeout=timeout_ms)


def pick_option(page, label: str, option: str, tries: int = 3) -> None:
    """Open the select box ``label`` and click ``option``; again when the list was redrawn under the click (on a
    loaded machine a rerun still arriving re-mounts the open list, and the click waits on a detached element)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        wait_until_idle(page)
        page.locator('[data-testid="stSelectbox"]', has_text=label).first.click()
        try:
            page.get_by_role("option").filter(has_text=option).first.click(timeout=15_000)
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
            continue
        if option in page.locator(f'input[aria-label="{label}"]').first.input_value():
            return
    raise AssertionError(f"{label}: {option!r} not picked after {tries} tries")


def require_chromium() -> None:
    """Skip a browser test module without chromium, except in CI, where its absence is an error."""
    import pytest

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium with apt-get")
        pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs it with apt-get)", allow_module_level=True)
