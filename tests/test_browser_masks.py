"""Label masks in a real browser: on the Segment page a palette-PNG label mask whose palette holds the class colours
in a shuffled order scores exactly as the same mask saved as RGB, and the scores are still there after a visit to
another page.

Needs Debian's chromium and the playwright package, as tests/test_browser_e2e.py; the server runs over empty run and
data roots (the shipped models are all the Segment page needs). A failing step leaves
test-artifacts/failures/<step>.png.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import generate_scene
from tests.browser import (CHROMIUM, CHROMIUM_ARGS, ROOT, require_chromium, screenshot_on_failure, settle,
                           streamlit_server, wait_until_idle)

pytestmark = pytest.mark.slow  # seconds per test (processes, kills, browsers): the full suite, not the fast tier

playwright = pytest.importorskip("playwright.sync_api", reason="playwright comes with requirements-dev.txt")
require_chromium()

SIDE = 128  # a tiny tile: the test is about reading the mask, not about the model


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("masks")
    with streamlit_server({"FALSE_WB_RUNS": str(base / "runs"), "FALSE_WB_DATA": str(base / "data")},
                          base / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


MODEL = "dubai_seg"  # the Dubai set publishes palette PNGs with the class colours in another order per file


def masks(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tile and labels in the model's classes (half of them shifted to another class, so the scores are neither 0 nor
    100 %) as a palette PNG holding the class colours in a shuffled order and as RGB."""
    rgb, labels = generate_scene(1, SIDE)
    card = json.loads((ROOT / "checkpoints" / f"{MODEL}.json").read_text())
    colours = [c["color"] for c in card["classes"]]
    labels = (np.ascontiguousarray(labels) % len(colours)).astype(np.uint8)
    labels[: SIDE // 2] = (labels[: SIDE // 2] + 1) % len(colours)
    tile, pal, twin = tmp_path / "tile.png", tmp_path / "labels_palette.png", tmp_path / "labels_rgb.png"
    Image.fromarray(np.ascontiguousarray(rgb)).save(tile)
    order = np.random.default_rng(7).permutation(len(colours))  # palette entry j holds class order[j]
    img = Image.fromarray(np.argsort(order).astype(np.uint8)[labels], mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    img.save(pal)
    assert not np.array_equal(np.asarray(Image.open(pal)), labels)  # its indices are not the classes
    Image.fromarray(np.asarray(colours, np.uint8)[labels]).save(twin)
    return tile, pal, twin


def scores(page) -> dict[str, str]:
    """The label score's metrics as shown, once all three are drawn: {label: value}. (The caption that names how the
    mask was read can be on screen a moment before the metrics of the same run are: wait for them.)"""
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMetricValue\"]').length >= 3",
                           timeout=60_000)
    wait_until_idle(page)
    out = {}
    for m in page.locator('[data-testid="stMetric"]').all():
        label = m.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        out[label] = m.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return out


def test_a_palette_label_mask_scores_as_its_rgb_twin_and_survives_a_page_trip(app, page, tmp_path: Path) -> None:
    tile, pal, twin = masks(tmp_path)
    with screenshot_on_failure(page, "masks-palette"):
        page.goto(f"{app}/segment")
        page.get_by_role("heading", name=re.compile("Segment")).first.wait_for()
        wait_until_idle(page)
        page.get_by_test_id("stSelectbox").filter(has_text="Model").click()  # the model named: auto may choose another
        page.get_by_role("option", name=f"shipped: {MODEL}").click()
        wait_until_idle(page)
        page.locator('input[type="file"]').first.set_input_files(str(tile))
        page.get_by_text("Overlay opacity").first.wait_for(timeout=120_000)
        settle(page, 120_000)
        page.get_by_text("Score against a label mask").click()
        labels_input = page.locator('input[type="file"]').nth(1)
        labels_input.set_input_files(str(pal))
        page.get_by_text("read as class colours (palette)").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        by_palette = scores(page)
        assert set(by_palette) == {"mIoU", "Pixel accuracy", "Left out"}, by_palette
        assert by_palette["Pixel accuracy"] not in ("0.0 %", "100.0 %")
    with screenshot_on_failure(page, "masks-rgb"):
        labels_input.set_input_files(str(twin))
        page.get_by_text(re.compile(r"read as class colours\)")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert scores(page) == by_palette
    with screenshot_on_failure(page, "masks-page-trip"):
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_role("heading", name=re.compile("Runs")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.locator('[data-testid="stMetric"]').count() == 0
        nav.get_by_role("link", name="Segment", exact=True).click()
        page.get_by_role("heading", name=re.compile("Segment")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        page.get_by_text("uploaded before").first.wait_for(timeout=30_000)  # the kept mask, its expander open
        assert page.get_by_text("labels_rgb.png").count() >= 1
        assert scores(page) == by_palette
        assert page.locator('[data-testid="stException"]').count() == 0
