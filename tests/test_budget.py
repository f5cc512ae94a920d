"""Bounded work per request (issue 10): a decompression-bomb PNG is refused from its header by the CLI, the Segment
page and the Gradio API while small images are answered; a request over its time budget stops early with the
reason; a small request is answered while a big one runs; a client that goes away stops the work."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imaging.budget import Deadline, WorkStopped, max_pixels
from core.seg.segment_cli import main as segment_main
from tests.oversized import bomb_png, bomb_png_bytes

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")
ROOT = Path(__file__).resolve().parent.parent
SYNTH = str(ROOT / "checkpoints/synthetic_seg.safetensors")


def small_png(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_the_budget_comes_from_the_argument_the_environment_or_50_megapixels(monkeypatch) -> None:
    monkeypatch.delenv("FALSE_WB_MAX_MEGAPIXELS", raising=False)
    assert max_pixels() == 50_000_000 and max_pixels(2.5) == 2_500_000
    monkeypatch.setenv("FALSE_WB_MAX_MEGAPIXELS", "120")
    assert max_pixels() == 120_000_000
    monkeypatch.setenv("FALSE_WB_MAX_MEGAPIXELS", "lots")
    with pytest.raises(ValueError, match="FALSE_WB_MAX_MEGAPIXELS='lots' is not a number"):
        max_pixels()
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="pixel budget"):
            max_pixels(bad)


def test_the_cli_refuses_a_bomb_from_its_header_and_segments_the_rest(tmp_path: Path, capsys) -> None:
    bomb, ok = bomb_png(tmp_path / "bomb.png"), small_png(tmp_path / "ok.png")
    t0 = time.perf_counter()
    code = segment_main([str(bomb), str(ok), "--checkpoint", SYNTH, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - t0 < 60  # 2: some image failed; the others are written
    [line] = [x for x in err.splitlines() if "bomb.png" in x]
    assert "image too large (10000x9999 = 100.0 megapixels; the pixel budget is 50 megapixels)" in line
    assert "before decoding" in line and "--max-megapixels" in line
    assert (tmp_path / "out" / "ok_mask.png").is_file() and not (tmp_path / "out" / "bomb_mask.png").exists()
    assert segment_main([str(ok), "--checkpoint", SYNTH, "--out", str(tmp_path / "o2"), "--max-megapixels",
                         "0.001", "--no-progress"]) == 2  # 3072 px > 1000: the budget is the user's to set
    assert "the pixel budget is 0.001 megapixels" in capsys.readouterr().err


def test_the_segment_page_refuses_a_bomb_and_segments_the_other_file(empty_store: Path) -> None:
    from tests.pages import errors, open_page

    at = open_page("segment")
    assert at.number_input(key="segment_max_mp").value == 50.0
    ok = small_png(empty_store.parent / "ok.png").read_bytes()
    at.file_uploader(key="segment_files").set_value([("bomb.png", bomb_png_bytes(), "image/png"),
                                                      ("ok.png", ok, "image/png")]).run()
    assert not at.exception
    [error] = errors(at)
    assert error.startswith("bomb.png: image too large") and "before decoding" in error
    assert error.endswith('raise "Largest image (megapixels)" under Inference settings')  # the page's way, no flag
    assert "--max-megapixels" not in error
    assert len(at.image) == 1 and at.image[0].captions[0].startswith("ok.png")


def test_a_deadline_stops_work_that_will_not_fit_and_work_whose_client_left() -> None:
    clock = [100.0]
    d = Deadline(10.0, started=100.0, clock=lambda: clock[0])
    clock[0] = 104.0
    d.check(1, 10)  # 4 s of decoding, model choice and a first batch: no window's rate (it projected 40 s)
    clock[0] = 107.0
    d.check(5, 10)  # then 4 windows in 3 s: 7 + 5 x 0.75 = 10.75 s, within 1.25 x 10 s
    clock[0] = 110.0
    with pytest.raises(WorkStopped, match=r"needs about 51 s on this machine, over the time budget .* \(10 s\)"):
        d.check(6, 40)  # 5 windows in 6 s since the first batch: 10 + 34 x 1.2 = 50.8 s
    with pytest.raises(WorkStopped, match="stopped after 11 s"):
        Deadline(10.0, started=time.monotonic() - 11).check(9, 10)
    gone = [False]
    c = Deadline(None, cancelled=lambda: gone[0])
    c.check(1, 100)
    gone[0] = True
    with pytest.raises(WorkStopped, match="client went away"):
        c.wrap(None)(2, 100)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_gradio_api_answers_small_requests_while_a_big_one_runs_and_stops_it_on_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import workbench.gradio_app as app
    from workbench.gradio_app import build_demo, serve, stop

    real = app.segment_choosing

    def slowed(*args, progress, **kwargs):  # every window at least 0.5 s, so that 15 of them overrun the 4 s budget
        def tick(done: int, total: int) -> None:  # on any machine (an idle one ran them within it, unslowed)
            time.sleep(0.5)
            progress(done, total)
        return real(*args, progress=tick, **kwargs)

    monkeypatch.setattr(app, "segment_choosing", slowed)
    demo = build_demo(SYNTH, time_budget_s=4.0)
    url = serve(demo, port=_free_port(), block=False, concurrency=2)
    try:
        client = Client(url, download_files=str(tmp_path / "dl"), verbose=False, analytics_enabled=False)
        with pytest.raises(AppError, match=r"bomb\.png: image too large .* before decoding; this demo's server sets"):
            client.predict(handle_file(str(bomb_png(tmp_path / "bomb.png"))), api_name="/segment")
        big = small_png(tmp_path / "big.png", 2400, 2400, seed=1)  # 5.8 MP, 36 windows: far over 4 s on 2 cores
        t0 = time.perf_counter()
        with pytest.raises(AppError, match=r"big\.png: this image \(2400x2400, 36 windows\) needs about \d+ s"):
            client.predict(handle_file(str(big)), api_name="/segment")  # refused from its header's window count
        assert time.perf_counter() - t0 < 20
        tif = tmp_path / "big.tif"  # a TIFF is sized from its header too (issue 29: it used to run 6-9 s first)
        Image.open(big).save(tif)
        t0 = time.perf_counter()
        with pytest.raises(AppError, match=r"big\.tif: this image \(2400x2400, 36 windows\) needs about \d+ s"):
            client.predict(handle_file(str(tif)), api_name="/segment")
        assert time.perf_counter() - t0 < 20
        few = small_png(tmp_path / "few.png", 1200, 1800, seed=2)  # 15 windows: too few to estimate, >= 7.5 s slowed
        t0 = time.perf_counter()
        job = client.submit(handle_file(str(few)), api_name="/segment")
        time.sleep(0.5)
        small = client.predict(handle_file(str(small_png(tmp_path / "s.png"))), api_name="/segment")
        big_still_running = not job.done()  # the small one did not wait for the big one to end
        assert Image.open(small[0]).size == (64, 48) and big_still_running
        with pytest.raises(AppError, match=r"few\.png: stopped (early: this image needs about|after)"):
            job.result(timeout=120)
        assert time.perf_counter() - t0 < 30  # stopped by the deadline, not after its whole run
    finally:
        stop(demo)


@pytest.mark.slow
def test_a_client_that_leaves_stops_its_work_through_gradios_public_api(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client gone mid-segmentation (a closed tab; here an API client that closes): Gradio's public ``unload``
    event flags its session's work, which stops within a few windows (no time budget here to stop it)."""
    from gradio_client import Client, handle_file

    import workbench.gradio_app as app

    seen: dict[str, object] = {"windows": 0, "error": None, "ended": None}
    real = app.segment_choosing

    def watched(*args, progress, **kwargs):
        def tick(done: int, total: int) -> None:
            seen["windows"] = done
            time.sleep(0.5)  # fewer windows computed while Gradio notices the client left (its CPU is the suite's)
            progress(done, total)
        try:
            return real(*args, progress=tick, **kwargs)
        except BaseException as err:
            seen["error"] = err
            raise
        finally:
            seen["ended"] = time.monotonic()

    monkeypatch.setattr(app, "segment_choosing", watched)
    demo = app.build_demo(SYNTH, time_budget_s=None)
    url = app.serve(demo, port=_free_port(), block=False)
    try:
        big = small_png(tmp_path / "big.png", 2400, 2400, seed=1)  # 36 windows: about 25 s here
        client = Client(url, download_files=str(tmp_path / "dl"), verbose=False, analytics_enabled=False)
        client.submit(handle_file(str(big)), api_name="/segment")
        t0 = time.monotonic()
        while not seen["windows"] and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        client.close()  # its heartbeat stops, as a closed tab's does
        left = time.monotonic()
        while seen["ended"] is None and time.monotonic() - left < 30:
            time.sleep(0.1)
        assert seen["ended"] is not None and seen["ended"] - left < 12, "the work went on after its client left"
        assert "client went away" in str(seen["error"]) and seen["windows"] < 36
    finally:
        app.stop(demo)


def test_empty_upload_leftovers_are_swept_but_fresh_or_real_files_stay(tmp_path: Path) -> None:
    import os

    from workbench.gradio_app import sweep_upload_leftovers

    old, fresh, real = tmp_path / "tmpold", tmp_path / "tmpfresh", tmp_path / "tmpreal"
    old.touch()
    fresh.touch()
    real.write_bytes(b"data")
    for p in (old, real):
        os.utime(p, (time.time() - 600, time.time() - 600))
    assert sweep_upload_leftovers(tmp_path) == 1
    assert not old.exists() and fresh.exists() and real.exists()


def test_headers_size_the_work_before_decoding_geotiffs_at_the_model_pixel_size(tmp_path: Path) -> None:
    """Issue 29: a GeoTIFF's work was unknown until decoded (6-9 s per refused request); its header now gives its
    size and pixel size, and the estimate uses the size the model will actually run on."""
    import rasterio
    from rasterio.transform import from_origin

    from core.imaging.imageio import ImageHeader, image_header
    from workbench.gradio_serving import model_input_size

    tif = tmp_path / "ortho.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=3000, height=2000, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.1, 0.1)) as dst:
        dst.write(np.zeros((3, 2000, 3000), np.uint8))
    head = image_header(tif)
    assert head is not None and (head.width, head.height) == (3000, 2000)
    assert head.pixel_size_m == pytest.approx(0.1)
    assert image_header(small_png(tmp_path / "p.png")) == ImageHeader(64, 48)
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    assert image_header(tmp_path / "junk.tif") is None and image_header(tmp_path / "missing.png") is None
    half_metre = {"domain": {"gsd_m": 0.5}}
    assert model_input_size(head, half_metre) == (600, 400)  # run at 0.5 m: 25 times fewer pixels
    assert model_input_size(head, {"domain": {"gsd_m": 0.12}}) == (3000, 2000)  # within the tolerance: as is
    assert model_input_size(head, {}) == (3000, 2000)  # a card without a pixel size: as is


def test_the_refusal_estimates_each_candidate_at_its_own_cost_per_window(tmp_path: Path, monkeypatch) -> None:
    """``auto`` refuses only when even the quickest candidate is too slow: a model at ``input_scale`` 0.5 does a
    quarter of the work per window, so timing the first model alone would refuse images the cheap one can do."""
    import gradio as gr

    from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint
    from core.store.catalog import ModelEntry
    from workbench.gradio_serving import Models

    entries = []
    for name, scale in (("full", 1.0), ("half", 0.5)):
        card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=[{"name": "a", "color": [0, 0, 0]},
                                                                           {"name": "b", "color": [255, 0, 0]}],
                         input_scale=scale)
        save_seg_checkpoint(tmp_path / f"{name}.safetensors", build_seg_model(card), card)
        entries.append(ModelEntry(name, tmp_path / f"{name}.safetensors", card))
    models = Models(entries[0].path)
    models.given, models.entries = None, entries  # auto over the two
    timed = [models.seconds_per_window(e, 64) for e in entries]
    assert len(models._window_s) == 2 and all(t > 0 for t in timed)  # one timing per model and tile
    monkeypatch.setattr(Models, "seconds_per_window", lambda self, e, tile: {"full": 1.0, "half": 0.25}[e.label])
    img = small_png(tmp_path / "big.png", 640, 640)  # 100 windows of 64 px
    models.refuse_if_too_slow(str(img), "big.png", 64, 0.0, False, budget_s=30.0, budget_px=10**8)  # 25 s: runs
    with pytest.raises(gr.Error, match=r"100 windows\) needs about 25 s"):
        models.refuse_if_too_slow(str(img), "big.png", 64, 0.0, False, budget_s=15.0, budget_px=10**8)
