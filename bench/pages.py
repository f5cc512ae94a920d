"""First render of every workbench page with 20 runs on disk, in a real browser, side by side in one run.

    python -m bench.pages [--runs 20] [--repeats 3]      # -m from the repository root: it uses tests/browser.py

Builds a run store of ``--runs`` real runs (tiny pretraining and fine-tuning runs made by the engine, copied under
new names), starts ``streamlit run workbench`` on a free port, warms the server with one visit, then for each page
opens a fresh browser session (no Streamlit caches of that session) and times: navigation start -> page heading
visible and the script finished. Also times the page script alone in AppTest (no browser, no network). Target:
under 2 s per page on 2 cores. Needs chromium and playwright (see .ci/run).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_until_idle
from tests.test_browser_e2e import PAGES

TARGET_S = 2.0


def make_store(base: Path, n: int) -> Path:
    os.environ["FALSE_WB_RUNS"], os.environ["FALSE_WB_DATA"] = str(base / "runs"), str(base / "data")
    from core.store.runs import list_runs
    from tests.store import build_store

    runs = build_store(base)
    made = list_runs(runs)
    k = 0
    while len(list_runs(runs)) < n:
        src = made[k % len(made)]
        shutil.copytree(src.path, runs / f"{src.id}-copy{k}")
        k += 1
    return runs


def browser_times(url: str, repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        warm = browser.new_page()
        for path, title in PAGES:  # the server imports each page's modules once
            warm.goto(f"{url}/{path}")
            warm.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=120_000)
            wait_until_idle(warm, 120_000)
        warm.close()
        for _ in range(repeats):
            for path, title in PAGES:
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(f"{url}/{path}")
                page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=60_000)
                wait_until_idle(page, 60_000)
                out.setdefault(path or "overview", []).append(time.perf_counter() - t0)
                ctx.close()
        browser.close()
    return out


def apptest_times(repeats: int) -> dict[str, list[float]]:
    """The page script alone: the router run, then the page (AppTest, no browser)."""
    from streamlit.testing.v1 import AppTest

    from tests.pages import APP

    out: dict[str, list[float]] = {}
    for _ in range(repeats):
        for path, _title in PAGES:
            t0 = time.perf_counter()
            at = AppTest.from_file(APP, default_timeout=120).run()
            if path:
                at.switch_page(f"../pages/{path}.py").run()
            out.setdefault(path or "overview", []).append(time.perf_counter() - t0)
            assert not at.exception, at.exception
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    try:
        runs = make_store(base, args.runs)
        env = {"FALSE_WB_RUNS": str(runs), "FALSE_WB_DATA": str(base / "data")}
        with streamlit_server(env, base / "server.log") as url:
            browser = browser_times(url, args.repeats)
        script = apptest_times(1)
        print(f"\nFirst render per page, {args.runs} runs on disk, median of {args.repeats} fresh browser sessions "
              f"(target {TARGET_S:.0f} s):")
        print(f"{'page':18s} {'browser s':>10s} {'/ target':>9s} {'script s':>9s}")
        for name in browser:
            med = statistics.median(browser[name])
            print(f"{name:18s} {med:10.2f} {med / TARGET_S:8.2f}x {statistics.median(script[name]):9.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
