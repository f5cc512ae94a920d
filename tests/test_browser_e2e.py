"""End to end in a real browser: every page opens, a tile is segmented and scored against its label mask, Enter in
a field launches nothing, a pretraining run starts and moves, a palette-PNG label mask whose palette holds the class
colours in a shuffled order scores exactly as the same mask saved as RGB (and its scores survive a page trip). One
server and one browser for all of them: each start is seconds of a loaded core.

Needs Debian's chromium and the playwright package (``.ci/run`` installs both). Screenshots of the main pages go
to test-artifacts/screenshots/ (the README shows them); a failing step leaves test-artifacts/failures/<step>.png.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import load_config
from core.data import generate_scene
from core.store.runs import list_runs
from tests.browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, pick_option, require_chromium,
                           screenshot_on_failure, settle, streamlit_server, wait_until_idle)
from tests.store import copy_store

pytestmark = pytest.mark.slow  # seconds per test (processes, kills, browsers): the full suite, not the fast tier

playwright = pytest.importorskip("playwright.sync_api", reason="playwright comes with requirements-dev.txt")
require_chromium()

PAGES = [("", "FALSE workbench"), ("pretrain", "Pretrain"), ("runs", "Runs"),
         ("false_negatives", "False negatives"), ("embeddings", "Embeddings"), ("finetune", "Fine-tune"),
         ("segment", "Segment")]
SHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="module")
def app(store_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app over a private copy of the test run store; yields (url, runs root)."""
    base = tmp_path_factory.mktemp("e2e")
    runs = copy_store(store_base, base)
    env = {"FALSE_WB_RUNS": str(runs), "FALSE_WB_DATA": str(base / "data")}
    with streamlit_server(env, base / "server.log") as url:
        yield url, runs
    for run in list_runs(runs):  # never leave a training process behind
        from core.store import launch
        launch.stop(run)


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


def _open(page, url: str, path: str, title: str) -> None:
    """Go to a page and wait until its heading is there and its script has finished."""
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for()
    wait_until_idle(page)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def test_every_page_opens(app, page) -> None:
    url, runs_root = app
    SHOTS.mkdir(parents=True, exist_ok=True)
    false_run = next(r.id for r in list_runs(runs_root) if r.id.endswith("tiny-false"))
    for path, title in PAGES:
        with screenshot_on_failure(page, f"open-{path or 'overview'}"):
            query = f"?run={false_run}" if path == "false_negatives" else ""  # pages honour ?run= links
            _open(page, url, path + query, title)
            settle(page)
            _no_exception(page)
            page.screenshot(path=str(SHOTS / f"{path or 'overview'}.png"), full_page=True)
            if path == "finetune":  # the finished fine-tuning run's scores
                page.get_by_role("tab", name="Watch and scores").click()
                page.get_by_text(re.compile(r"mIoU \(test\)")).first.wait_for()
                settle(page)
                page.screenshot(path=str(SHOTS / "finetune-scores.png"), full_page=True)


def test_segment_an_uploaded_tile(app, page, tmp_path: Path) -> None:
    url, _ = app
    from core.imaging.imageio import generated_png

    rgb, labels = generate_scene(1, 256)  # a generated scene, saying so: auto sends it to synthetic_seg
    tile, labels_png = tmp_path / "tile.png", tmp_path / "labels.png"
    tile.write_bytes(generated_png(np.ascontiguousarray(rgb), "core.data.generate_scene seed 1"))
    Image.fromarray(np.ascontiguousarray(labels).astype(np.uint8)).save(labels_png)
    with screenshot_on_failure(page, "segment-upload"):
        _open(page, url, "segment", "Segment")
        page.locator('input[type="file"]').first.set_input_files(str(tile))
        page.get_by_text("Overlay opacity").first.wait_for(timeout=120_000)
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=60_000)
        settle(page, 120_000)
        _no_exception(page)
        assert page.get_by_text("tile.png").count() >= 1
        assert page.get_by_text("synthetic_seg").count() >= 1  # the model auto chose, named with its score
        page.screenshot(path=str(SHOTS / "segment-result.png"), full_page=True)
        # the scene's own labels (class indices) as a label mask: IoU per class and the right/wrong overlay
        page.get_by_text("Score against a label mask").click()
        page.locator('input[type="file"]').nth(1).set_input_files(str(labels_png))
        page.get_by_text("green: right").first.wait_for(timeout=120_000)
        page.get_by_text("mIoU").first.wait_for()
        settle(page)
        _no_exception(page)
        page.screenshot(path=str(SHOTS / "segment-label-score.png"), full_page=True)
        # a trip to Runs and back through the sidebar: the result is still there (kept in the session; that it is
        # not computed again is tests/test_page_segment.py's)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_role("heading", name=re.compile("Runs")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        nav.get_by_role("link", name="Segment", exact=True).click()
        page.get_by_role("heading", name=re.compile("Segment")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.get_by_text("tile.png").count() >= 1
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=10_000)
        page.get_by_text("Overlay opacity").first.wait_for(timeout=10_000)
        _no_exception(page)
        page.screenshot(path=str(SHOTS / "segment-after-trip.png"), full_page=True)
        # a generated sample beside the upload: its tab is the one shown (added last, it seemed to do nothing)
        page.get_by_role("button", name=re.compile("Try a generated sample tile")).click()
        page.get_by_role("tab", name=re.compile("sample_scene_")).wait_for(timeout=120_000)
        settle(page, 120_000)
        chosen = page.get_by_role("tab", selected=True)
        assert "sample_scene_" in chosen.inner_text(), chosen.inner_text()
        _no_exception(page)


def test_embeddings_are_computed_and_drawn(app, page) -> None:
    url, _ = app
    with screenshot_on_failure(page, "embeddings-compute"):
        _open(page, url, "embeddings", "Embeddings")
        page.get_by_role("button", name="Compute").click()
        page.locator('[data-testid="stMetric"]').first.wait_for(timeout=300_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 1")
        settle(page)
        _no_exception(page)
        page.screenshot(path=str(SHOTS / "embeddings-umap.png"), full_page=True)


def test_the_flagged_pairs_curve_equals_the_counts_in_fns_jsonl(app, page) -> None:
    """The Pretrain page's live curve of a FALSE run logged every 4th step shows every step's flagged pairs."""
    url, runs_root = app
    run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-false"))
    with screenshot_on_failure(page, "pretrain-pairs-curve"):
        _open(page, url, f"pretrain?run={run.id}", "Pretrain")
        # the charts draw one by one after the script ends: wait for the flagged-pairs chart itself
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(el =>"
                               " el.layout && (el.layout.title.text || '').includes('Flagged') && el._fullData)")
        charts = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
            title: el.layout.title.text, data: el._fullData.map(t => ({name: t.name, x: Array.from(t.x),
                                                                  y: Array.from(t.y)}))}))""")
    chart = next(c for c in charts if "Flagged" in c["title"])
    flagged = next(t for t in chart["data"] if t["name"] == "flagged")
    pairs = run.flagged_pairs()
    steps = sorted({int(m["step"]) for m in run.metrics()})
    assert flagged["x"] == list(range(1, steps[-1] + 1))
    assert flagged["y"] == [sum(p["step"] == s for p in pairs) for s in flagged["x"]] and sum(flagged["y"]) > 0


def _fill(page, values: dict, name: str) -> None:
    """The Pretrain form's number fields and its run name, each confirmed with Tab (a change reruns the page)."""
    for label, value in [*values.items(), ("Run name", name)]:
        box = page.locator(f'input[aria-label="{label}"]')
        box.fill(str(value))
        box.press("Tab")
        wait_until_idle(page)


def test_a_folder_added_in_the_browser_is_pretrained_on(app, page, tmp_path: Path) -> None:
    url, runs_root = app
    mine = tmp_path / "my_tiles"
    mine.mkdir()
    for i in range(6):
        rgb, _ = generate_scene(100 + i, 128)
        Image.fromarray(np.ascontiguousarray(rgb)).save(mine / f"tile_{i}.png")
    with screenshot_on_failure(page, "data-source"):
        _open(page, url, "pretrain", "Pretrain")
        settle(page)  # the watched run's charts draw after the script ends and push the panels down
        folder_box = page.locator('input[aria-label="Folder to add"]')
        for _ in range(2):  # a click that lands while the layout still moves misses the fold; a user clicks again
            page.get_by_text("Data sources: your own image folders").click()
            wait_until_idle(page)
            if folder_box.is_visible():
                break
        folder_box.fill(str(mine))
        folder_box.press("Enter")  # adds it, as the ➕ Add button does (the page tests click that)
        page.get_by_text(re.compile(r"Added .*6 image\(s\)")).wait_for(timeout=60_000)
        page.get_by_role("button", name="Use for pretraining").click()
        page.get_by_text("The form below now pretrains on").wait_for(timeout=60_000)
        wait_until_idle(page)
        page.screenshot(path=str(SHOTS / "pretrain-data-source.png"), full_page=True)
        page.get_by_text("Settings", exact=True).click()  # folded away: the store has runs to watch
        wait_until_idle(page)  # unfolding reruns the page (the expander keeps its state across pages)
        # a detector picked in the loss section (a fragment: it reruns alone), values typed in the form without a
        # Launch, and a trip through the sidebar: the section stays open with the pick (a fragment's own rerun used
        # to drop the page's kept state) and the values (a st.form sent them only with its Launch)
        pick_option(page, "Detector", "nearest")
        wait_until_idle(page)
        values = {"Tile size (px)": 64, "View size (px)": 32, "Batch size": 8, "Steps": 2, "Projection dim": 16,
                  "Projection hidden": 32, "Checkpoint every": 1000}
        _fill(page, values, "folder-run")
        wait_until_idle(page)
        for name in ("Runs", "Pretrain"):
            page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
            wait_until_idle(page)
        settings = page.locator('[data-testid="stExpander"] details').filter(
            has=page.locator("summary", has_text="Settings")).first
        settings.locator("summary").wait_for(timeout=60_000)
        assert settings.get_attribute("open") is not None, "the Settings section closed after a page trip"
        detector = page.locator('input[aria-label="Detector"]').first.input_value()
        assert "nearest" in detector, detector
        kept = {label: page.locator(f'input[aria-label="{label}"]').input_value() for label in values}
        assert kept == {label: str(v) for label, v in values.items()}, kept
        page.get_by_role("button", name=re.compile("Launch")).click()
        page.get_by_text(re.compile("Launched .*folder-run")).wait_for(timeout=60_000)
    run = next(r for r in list_runs(runs_root) if r.id.endswith("folder-run"))
    deadline = time.time() + 240
    while run.is_live() and time.time() < deadline:
        time.sleep(1)
    assert run.state() == "completed", run.log_text()[-2000:]
    assert run.config()["data"]["name"] == "folder" and run.config()["data"]["root"] == str(mine.resolve())
    assert run.config()["loss"]["detector"] == "nearest"  # the pick before the trip reached the launch
    assert run.config()["train"]["max_steps"] == 2 and run.config()["name"] == "folder-run"  # and the typed values
    assert "6 images" in run.log_text() or "tiles" in run.log_text()


def _step(page) -> int:
    text = page.get_by_text(re.compile(r"step \d+ / 400")).first.inner_text()
    return int(re.search(r"step (\d+) / 400", text).group(1))


def _field_shows(page, label: str, value: str, timeout_ms: float = 20_000) -> None:
    """Wait until the text field ``label`` shows ``value``. Read at once after a click, a loaded CI machine gave ''
    (the click's rerun had not reached the browser when the script state still read "not running")."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    script = ("([label, value]) => { const box = document.querySelector(`input[aria-label=\"${label}\"]`);"
              " return box !== null && box.value === value; }")
    try:
        page.wait_for_function(script, arg=[label, value], timeout=timeout_ms)
    except PlaywrightTimeout:
        shown = page.locator(f'input[aria-label="{label}"]').input_value()
        raise AssertionError(f"{label} shows {shown!r} after {timeout_ms / 1000:.0f} s, not {value!r}") from None


def test_the_run_name_follows_the_loss_chosen_in_its_fragment(app, page) -> None:
    """The loss is drawn in a fragment, the Run name in the form: a change of loss reran the fragment alone and the
    field kept "demo-simclr-false" until some other widget reran the page (AppTest reruns every time: only a
    browser sees it)."""
    url, _ = app
    with screenshot_on_failure(page, "pretrain-name-follows"):
        _open(page, url, "pretrain", "Pretrain")
        page.get_by_text("Settings", exact=True).click()
        wait_until_idle(page)
        name = page.locator('input[aria-label="Run name"]')
        _field_shows(page, "Run name", "demo-simclr-false")
        page.get_by_text("InfoNCE", exact=True).click()
        wait_until_idle(page)
        _field_shows(page, "Run name", "demo-simclr-info_nce")
        name.fill("my-baseline")
        name.press("Tab")
        wait_until_idle(page)
        page.get_by_text("DCL", exact=True).click()  # typed: it stays
        wait_until_idle(page)
        time.sleep(1)
        assert name.input_value() == "my-baseline"
        _fill(page, {"Steps": 7, "View size (px)": 48}, "my-baseline")
        # the preset's values back in every field the browser shows: a review's click changed the run name alone,
        # the browser kept showing (and later sent) the typed values of the fields whose state was only deleted
        page.get_by_role("button", name="↺ Preset values").click()
        wait_until_idle(page)
        _field_shows(page, "Run name", "demo-simclr-false")
        preset = load_config(ROOT / "configs/demo_cpu.yaml")
        for label, value in (("Steps", preset.train.max_steps), ("View size (px)", preset.data.image_size)):
            _field_shows(page, label, str(value))
        _no_exception(page)


def test_launch_a_tiny_run_and_see_it_move(app, page) -> None:
    url, runs_root = app
    with screenshot_on_failure(page, "pretrain-launch"):
        _open(page, url, "pretrain", "Pretrain")
        page.get_by_text("Settings", exact=True).click()  # the form is folded away when there are runs to watch
        wait_until_idle(page)  # unfolding reruns the page (the expander keeps its state across pages)
        before = {r.id for r in list_runs(runs_root)}
        box = page.locator('input[aria-label="Batch size"]')
        box.fill("64")
        box.press("Enter")  # Enter in a field must launch nothing (only the Launch button does)
        wait_until_idle(page)
        time.sleep(2)
        assert {r.id for r in list_runs(runs_root)} == before, "Enter in a field launched a run"
        assert page.locator('input[aria-label="Steps"]').is_visible()  # and the settings stay open
        # a set not generated yet (150 tiles of 256 px: 5-8 s, two or more of the page's 2 s refreshes), so the run
        # has a phase before its first step
        values = {"Synthetic tiles": 150, "Tile size (px)": 256, "View size (px)": 32, "Batch size": 16,
                  "Steps": 400, "Projection dim": 16, "Projection hidden": 32, "Log every (steps)": 1,
                  "Checkpoint every": 1000}
        _fill(page, values, "browser-run")
        page.get_by_role("button", name=re.compile("Launch")).click()
        page.get_by_text(re.compile("Launched .*browser-run")).wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"generating 150 synthetic tiles: \d+ / 150")).first.wait_for(timeout=120_000)
        page.screenshot(path=str(SHOTS / "pretrain-phase.png"), full_page=True)
        page.get_by_text(re.compile(r"step \d+ / 400")).first.wait_for(timeout=180_000)
        first = _step(page)
        deadline = time.time() + 180
        while _step(page) <= first and time.time() < deadline:
            time.sleep(1)
        assert _step(page) > first, "the progress did not move"
        _no_exception(page)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4")
        page.screenshot(path=str(SHOTS / "pretrain-live.png"), full_page=True)
        page.get_by_role("button", name=re.compile("Stop")).click()
        page.get_by_text(re.compile(r"stopped")).first.wait_for(timeout=120_000)
    run = next(r for r in list_runs(runs_root) if r.id.endswith("browser-run"))
    assert run.state() == "stopped" and run.last_checkpoint() is not None


# ------------------------------------------------------------------------------------------- label masks
MASK_SIDE = 128  # a tiny tile: the test is about reading the mask, not about the model
MASK_MODEL = "dubai_seg"  # the Dubai set publishes palette PNGs with the class colours in another order per file


def _masks(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tile and labels in the model's classes (half of them shifted to another class, so the scores are neither 0 nor
    100 %) as a palette PNG holding the class colours in a shuffled order and as RGB."""
    rgb, labels = generate_scene(1, MASK_SIDE)
    card = json.loads((ROOT / "checkpoints" / f"{MASK_MODEL}.json").read_text())
    colours = [c["color"] for c in card["classes"]]
    labels = (np.ascontiguousarray(labels) % len(colours)).astype(np.uint8)
    labels[: MASK_SIDE // 2] = (labels[: MASK_SIDE // 2] + 1) % len(colours)
    tile, pal, twin = tmp_path / "tile.png", tmp_path / "labels_palette.png", tmp_path / "labels_rgb.png"
    Image.fromarray(np.ascontiguousarray(rgb)).save(tile)
    order = np.random.default_rng(7).permutation(len(colours))  # palette entry j holds class order[j]
    img = Image.fromarray(np.argsort(order).astype(np.uint8)[labels], mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    img.save(pal)
    assert not np.array_equal(np.asarray(Image.open(pal)), labels)  # its indices are not the classes
    Image.fromarray(np.asarray(colours, np.uint8)[labels]).save(twin)
    return tile, pal, twin


def _scores(page) -> dict[str, str]:
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
    url, _ = app
    tile, pal, twin = _masks(tmp_path)
    with screenshot_on_failure(page, "masks-palette"):
        page.goto(f"{url}/segment")
        page.get_by_role("heading", name=re.compile("Segment")).first.wait_for()
        wait_until_idle(page)
        page.get_by_test_id("stSelectbox").filter(has_text="Model").click()  # the model named: auto may choose another
        page.get_by_role("option", name=f"shipped: {MASK_MODEL}").click()
        wait_until_idle(page)
        page.locator('input[type="file"]').first.set_input_files(str(tile))
        page.get_by_text("Overlay opacity").first.wait_for(timeout=120_000)
        settle(page, 120_000)
        page.get_by_text("Score against a label mask").click()
        labels_input = page.locator('input[type="file"]').nth(1)
        labels_input.set_input_files(str(pal))
        page.get_by_text("read as class colours (palette)").first.wait_for(timeout=60_000)
        wait_until_idle(page)
        by_palette = _scores(page)
        assert set(by_palette) == {"mIoU", "Pixel accuracy", "Left out"}, by_palette
        assert by_palette["Pixel accuracy"] not in ("0.0 %", "100.0 %")
    with screenshot_on_failure(page, "masks-rgb"):
        labels_input.set_input_files(str(twin))
        page.get_by_text(re.compile(r"read as class colours\)")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert _scores(page) == by_palette
    with screenshot_on_failure(page, "masks-page-trip"):
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_role("heading", name=re.compile("Runs")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        assert page.get_by_text("Pixel accuracy").count() == 0  # the scores belong to the Segment page
        nav.get_by_role("link", name="Segment", exact=True).click()
        page.get_by_role("heading", name=re.compile("Segment")).first.wait_for(timeout=60_000)
        wait_until_idle(page)
        page.get_by_text("uploaded before").first.wait_for(timeout=30_000)  # the kept mask, its expander open
        assert page.get_by_text("labels_rgb.png").count() >= 1
        assert _scores(page) == by_palette
        assert page.locator('[data-testid="stException"]').count() == 0
