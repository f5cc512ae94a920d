"""The Gradio demo in a real browser: a file that cannot be segmented leaves no earlier image's result on the page
beside its error (all outputs cleared, the reason kept in the info box after the error message fades)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port, require_chromium, screenshot_on_failure

playwright = pytest.importorskip("playwright.sync_api", reason="playwright comes with requirements-dev.txt")
require_chromium()
# gradio's own queue code on pandas 3: not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)"),
              pytest.mark.slow]  # a browser and a server: the full suite, as the other browser tests


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from workbench.gradio_app import build_demo, serve, stop

    mp = pytest.MonkeyPatch()
    mp.setenv("FALSE_WB_RUNS", str(tmp_path_factory.mktemp("no-runs")))  # auto: among the shipped models only
    demo = build_demo(None)
    mp.undo()
    try:
        yield serve(demo, port=free_port(), block=False)
    finally:
        stop(demo)


def test_a_failed_upload_clears_the_previous_result(demo_url: str, tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "notes.png").write_text("this is text, not an image")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.set_default_timeout(60_000)
        with screenshot_on_failure(page, "gradio-failed-upload"):
            page.goto(demo_url)
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "ok.png"))
            page.get_by_text("80 × 64 pixels").wait_for()  # segmented on upload
            body = page.locator("body")
            playwright.expect(body).to_contain_text("%")  # the legend (drawn from the kept result, just after)
            playwright.expect(page.get_by_text("ok_mask")).to_have_count(1)  # and the downloads
            overlay = page.locator("img[src*='gradio_api/file=']")  # served files: the overlay, nothing else
            playwright.expect(overlay).to_have_count(1)
            page.get_by_role("button", name="Clear").first.click()
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "notes.png"))
            page.get_by_text("Not segmented").wait_for()
            text = body.inner_text()
            assert "notes.png: not an image" in text  # the reason stays on the page
            assert "80 × 64 pixels" not in text and "ok_mask" not in text.replace("\n", "")  # nothing of ok.png:
            playwright.expect(overlay).to_have_count(0)
            playwright.expect(body).not_to_contain_text("%")  # and the legend follows: gone
        browser.close()
