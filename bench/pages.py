"""Render time of every workbench page with N runs on disk, in a real browser, side by side in one run.

    python -m bench.pages [--runs 20] [--repeats 3]      # -m from the repository root: it uses tests/browser.py

Builds a run store of ``--runs`` real runs (tiny pretraining and fine-tuning runs made by the engine, copied under
new names), starts ``streamlit run workbench`` on a free port, warms the server with one visit, then times for each
page (target: under 2 s with 20 runs, under 3 s with 200, on 2 cores):

- ``click``: a click on the page's link in the sidebar from another page -> heading visible and the script finished
  (how people move through the app: the browser keeps its page and session);
- ``tab``: a new tab of a browser that has opened the app before loading the page's address (a new Streamlit
  session and websocket; Streamlit's front-end files come from the browser's HTTP cache, as for anyone who has
  used the app before);
- ``fresh``: a new browser profile loading the page's address (no HTTP cache, no Streamlit session: a first visit
  ever), and beside ``tab`` and ``fresh`` the same for a bare two-page Streamlit app (a title and a line) served the
  same way: ``- bare`` is what the workbench adds to the browser's own cost of loading Streamlit's front end here.

Also times the page script alone in AppTest (no browser, no network). Prints the load average, since every
figure here moves with what else the machine runs. Needs chromium and playwright (see .ci/run).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server, wait_until_idle
from tests.test_browser_e2e import PAGES



def target_s(runs: int) -> float:
    """Issue 12's targets: under 2 s with 20 runs on disk, under 3 s with 200."""
    return 2.0 if runs <= 20 else 3.0


def make_store(base: Path, n: int) -> Path:
    os.environ["FALSE_WB_RUNS"], os.environ["FALSE_WB_DATA"] = str(base / "runs"), str(base / "data")
    from core.store.runs import list_runs
    from tests.store import build_store

    runs = build_store(base)
    made = list_runs(runs)
    k = 0
    while len(list_runs(runs)) < n:
        src = made[k % len(made)]
        # hard links: 200 runs' checkpoints would otherwise fill gigabytes
        shutil.copytree(src.path, runs / f"{src.id}-copy{k}", copy_function=os.link)
        k += 1
    return runs


BARE_APP = """import streamlit as st
st.set_page_config(page_title="bare", layout="wide")
def first():
    st.title("Bare first")
    st.write("a line")
def second():
    st.title("Bare second")
st.navigation([st.Page(first, title="first", default=True), st.Page(second, title="second", url_path="second")]).run()
"""
NAV_TITLES = {"": "Overview", "pretrain": "Pretrain", "runs": "Runs", "false_negatives": "False negatives",
              "embeddings": "Embeddings", "finetune": "Fine-tune", "segment": "Segment"}


def _shown(page, title: str, timeout_ms: float = 60_000) -> None:
    page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=timeout_ms)
    wait_until_idle(page, timeout_ms)


def _load_time(page, url: str, path: str, title: str) -> float:
    """Navigation start -> heading visible and the script finished."""
    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    _shown(page, title)
    return time.perf_counter() - t0


def fresh_times(browser, url: str, pages: list[tuple[str, str]], repeats: int) -> dict[str, list[float]]:
    """A new browser session (profile) per load."""
    out: dict[str, list[float]] = {}
    for _ in range(repeats):
        for path, title in pages:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            out.setdefault(path or "overview", []).append(_load_time(ctx.new_page(), url, path, title))
            ctx.close()
    return out


def tab_times(browser, url: str, pages: list[tuple[str, str]], repeats: int) -> dict[str, list[float]]:
    """New tabs of one browser profile that has loaded the app once: navigation start -> heading visible and idle."""
    out: dict[str, list[float]] = {}
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    first = ctx.new_page()
    first.goto(f"{url}/{pages[0][0]}")
    _shown(first, pages[0][1], 120_000)
    first.close()
    for _ in range(repeats):
        for path, title in pages:
            page = ctx.new_page()
            out.setdefault(path or "overview", []).append(_load_time(page, url, path, title))
            page.close()
    ctx.close()
    return out


def click_times(browser, url: str, repeats: int) -> dict[str, list[float]]:
    """One browser session moving through the sidebar: click -> heading visible and the script finished."""
    out: dict[str, list[float]] = {}
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    _shown(page, PAGES[0][1], 120_000)
    order = PAGES[1:] + PAGES[:1]  # every page entered from the one before it
    for _ in range(repeats):
        for path, title in order:
            link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=NAV_TITLES[path], exact=True)
            t0 = time.perf_counter()
            link.click()
            page.wait_for_url(re.compile(re.escape(f"{url}/{path}") + r"/?$"), timeout=60_000)
            _shown(page, title)
            out.setdefault(path or "overview", []).append(time.perf_counter() - t0)
    page.context.close()
    return out


def browser_times(url: str, bare_url: str, repeats: int) -> dict[str, dict[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        warm = browser.new_page()
        for path, title in PAGES:  # the server imports each page's modules once
            warm.goto(f"{url}/{path}")
            _shown(warm, title, 120_000)
        warm.goto(bare_url)
        _shown(warm, "Bare first", 120_000)
        warm.close()
        bare_pages = [("", "Bare first"), ("second", "Bare second")]
        bare = fresh_times(browser, bare_url, bare_pages, repeats)
        bare_tab = tab_times(browser, bare_url, bare_pages, repeats)
        out = {"fresh": fresh_times(browser, url, PAGES, repeats), "click": click_times(browser, url, repeats),
               "tab": tab_times(browser, url, PAGES, repeats),
               "bare": {"fresh": bare["overview"] + bare["second"], "tab": bare_tab["overview"] + bare_tab["second"]}}
        browser.close()
    return out


@contextlib.contextmanager
def bare_server(base: Path) -> Iterator[str]:
    """The bare two-page app, served like the workbench (same flags, same machine)."""
    app = base / "bare" / "bare_app.py"
    app.parent.mkdir(parents=True, exist_ok=True)
    app.write_text(BARE_APP)
    with streamlit_server({}, base / "bare.log", app=app) as url:
        yield url


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
        load_before = os.getloadavg()
        with streamlit_server(env, base / "server.log") as url, bare_server(base) as bare_url:
            browser = browser_times(url, bare_url, args.repeats)
        script = apptest_times(1)
        bare = {how: statistics.median(times) for how, times in browser["bare"].items()}
        print(f"\nPage render, {args.runs} runs on disk, median of {args.repeats} (target {target_s(args.runs):.0f} s); "
              f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"bare Streamlit app: new tab {bare['tab']:.2f} s, new profile {bare['fresh']:.2f} s "
              "(the browser's floor on this machine)")
        print(f"{'page':18s} {'click s':>8s} {'tab s':>7s} {'/ target':>9s} {'tab-bare':>9s} {'fresh s':>8s} "
              f"{'fresh-bare':>11s} {'script s':>9s}")
        for name in browser["fresh"]:
            click, tab, fresh = (statistics.median(browser[how][name]) for how in ("click", "tab", "fresh"))
            print(f"{name:18s} {click:8.2f} {tab:7.2f} {max(click, tab) / target_s(args.runs):8.2f}x {tab - bare['tab']:9.2f} "
                  f"{fresh:8.2f} {fresh - bare['fresh']:11.2f} {statistics.median(script[name]):9.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
