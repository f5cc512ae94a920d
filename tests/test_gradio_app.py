"""The Gradio demo, served on a free localhost port and called as an API with gradio_client: overlay, legend, area
table and mask for a PNG and a GeoTIFF; a file that is not an image comes back as an error, not a hang."""
from __future__ import annotations

import csv
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.store.checkpoint import CheckpointError
from core.seg.infer import palette
from core.store.catalog import SHIPPED

# gradio's own queue code on pandas 3: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    from workbench.gradio_app import build_demo, serve, stop

    mp = pytest.MonkeyPatch()
    # a data root outside the working folder and a system temp folder that does not hold it (FALSE_WB_DATA set
    # elsewhere, as a user may): the files the demo returns must be allowed for their own place
    mp.setenv("FALSE_WB_DATA", str(tmp_path_factory.mktemp("data-root")))
    mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("system-temp")))
    runs = pytest.MonkeyPatch()
    runs.setenv("FALSE_WB_RUNS", str(tmp_path_factory.mktemp("no-runs")))  # auto: among the shipped models only
    demo = build_demo(None)
    runs.undo()
    url = serve(demo, port=free_port(), block=False)
    try:
        yield demo, url
    finally:
        stop(demo)
        mp.undo()


@pytest.fixture(scope="module")
def client(served: tuple[object, str], tmp_path_factory: pytest.TempPathFactory):
    from gradio_client import Client

    return Client(served[1], download_files=str(tmp_path_factory.mktemp("downloads")), verbose=False,
                  analytics_enabled=False)


def write_png(path: Path, h: int, w: int) -> np.ndarray:
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def test_offline_settings(served: tuple[object, str]) -> None:
    import httpx

    demo, url = served
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and demo.analytics_enabled is False
    assert url.startswith("http://127.0.0.1:")
    css = httpx.get(url + "theme.css", timeout=30).text
    assert "system-ui" in css and "fonts.googleapis" not in css


def test_segment_png_returns_overlay_legend_areas_and_mask(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    rgb = write_png(tmp_path / "tile.png", 80, 96)
    overlay, table, mask, extras, info = client.predict(handle_file(str(tmp_path / "tile.png")),
                                                        api_name="/segment")  # no HTML among the API's outputs
    assert Image.open(overlay).size == (96, 80)
    assert Path(overlay).name == "tile_overlay.png"  # the download is named after the image, not image.png
    assert [Path(p).name for p in extras] == ["tile_areas.csv", "tile_report.json"]
    report = json.loads(Path(extras[1]).read_text())
    assert report["model"]["how"] == "auto" and report["model"]["name"].startswith("shipped: ")
    assert report["image"] == "tile.png" and report["nodata_share"] == 0.0
    assert "/" not in report["model"]["path"]  # the file's name: the server's folders are not the visitor's business
    card = json.loads((SHIPPED / report["model"]["path"]).with_suffix(".json").read_text())
    names = [c["name"] for c in card["classes"]]
    assert report["classes"] == names and f"model **{report['model']['name']}** (auto: " in info
    with Image.open(mask) as m:  # a palette PNG: indices that show in the class colours
        assert m.mode == "P" and m.size == (96, 80)
        labels = np.asarray(m)
        assert np.array_equal(np.asarray(m.getpalette()[:3 * len(names)]).reshape(-1, 3),
                              palette(card["classes"])[:len(names)])
    assert Path(mask).name == "tile_mask.png" and labels.max() < len(names)
    # the same columns for every image (a client reads them by position); no pixel size: no square metres
    assert table["headers"] == ["class", "pixels", "percent", "square_metres", "caution", "colour"]
    assert {r[3] for r in table["data"]} == {None}
    assert all((r[4] != "") == bool(report["areas_relative_only"]) for r in table["data"])  # out of domain: said
    assert report["areas_relative_only"] == (report["warning"] is not None)
    rows = table["data"]
    assert [r[0] for r in rows] == names
    assert sum(r[1] for r in rows) == 80 * 96
    assert sum(r[2] for r in rows) == pytest.approx(100.0, abs=0.01)
    assert [r[1] for r in rows] == [int((labels == k).sum()) for k in range(len(names))]
    assert [r[-1] for r in rows] == ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in palette(card["classes"])[:len(names)]]
    with open(extras[0], newline="") as f:
        table_csv = list(csv.reader(f))
    if report["areas_relative_only"]:  # the warning in a column of its own: any CSV reader reads the table whole
        assert "shares" in report["warning"] and all(r[4].startswith("shares only") for r in rows)
        assert table_csv[0] == ["class", "pixels", "percent", "square_metres", "warning"]
        assert {r[4] for r in table_csv[1:]} == {report["warning"]}
    else:  # the same columns, the warning's empty: a batch's tables join into one
        assert table_csv[0] == ["class", "pixels", "percent", "square_metres", "warning"]
        assert {r[4] for r in table_csv[1:]} == {""}
    assert "**tile.png**: 96 × 80 pixels" in info
    assert ("- domain fit: the share of the model's own training tiles" in info) == (report["domain"]["score"]
                                                                                   is not None), info
    # opacity 0 shows the image itself, opacity 1 the class colours of the returned mask
    clear = client.predict(handle_file(str(tmp_path / "tile.png")), opacity=0.0, api_name="/segment")[0]
    assert np.array_equal(np.asarray(Image.open(clear).convert("RGB")), rgb)
    solid = client.predict(handle_file(str(tmp_path / "tile.png")), opacity=1.0, api_name="/segment")[0]
    colours = palette(card["classes"])[labels]
    assert np.array_equal(np.asarray(Image.open(solid).convert("RGB")), colours)


def test_opacity_reblends_the_last_result_of_the_session(served: tuple[object, str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file

    import workbench.gradio_app as app

    client = Client(served[1], download_files=str(tmp_path / "dl"), verbose=False, analytics_enabled=False)
    assert client.predict(0.3, api_name="/overlay") == {"__type__": "update"}  # nothing to re-blend yet: no change
    rgb = write_png(tmp_path / "tile.png", 50, 70)
    client.predict(handle_file(str(tmp_path / "tile.png")), opacity=0.5, api_name="/segment")
    monkeypatch.setattr(app, "segment_choosing", None)  # a second model run would now fail
    clear = client.predict(0.0, api_name="/overlay")
    assert Path(clear).name == "tile_overlay.png"
    assert np.array_equal(np.asarray(Image.open(clear).convert("RGB")), rgb)


def test_values_out_of_range_are_one_line_for_the_client_and_none_in_the_server_log(
        served: tuple[object, str], client, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Gradio refuses an out-of-range slider or an unknown dropdown value itself; its refusal printed a traceback
    to the server's console (a server that did nothing wrong). The browser still draws a plain slider and dropdown."""
    from gradio_client import handle_file

    write_png(tmp_path / "tile.png", 40, 40)
    tile = handle_file(str(tmp_path / "tile.png"))
    capfd.readouterr()
    for kwargs, said in (({"opacity": 2.0}, "Value 2.0 is greater than maximum value 1.0."),
                         ({"overlap": -0.5}, "Value -0.5 is less than minimum value 0.0."),
                         ({"tile": 100}, "Value: 100 is not in the list of choices")):
        with pytest.raises(Exception) as err:  # gradio_client's AppError
            client.predict(tile, api_name="/segment", **kwargs)
        assert said in str(err.value) and "Traceback" not in str(err.value), str(err.value)
    server_log = capfd.readouterr().err
    assert "Traceback" not in server_log, server_log[-3000:]
    types = {c["props"].get("label"): c["type"] for c in served[0].get_config_file()["components"]}
    assert types["Overlay opacity"] == "slider" and types["Tile (pixels)"] == "dropdown"
    assert Image.open(client.predict(tile, opacity=1.0, tile=256, overlap=0.5, api_name="/segment")[0]).size == (40, 40)
    # the schema lists the tile choices as strings; a client sending one of those gets that tile
    assert "Literal['256'" in client.view_api(print_info=False, return_format="str")
    assert Image.open(client.predict(tile, tile="256", api_name="/segment")[0]).size == (40, 40)


def test_geotiff_gets_square_metres_and_a_georeferenced_mask(client, tmp_path: Path) -> None:
    import rasterio
    from gradio_client import handle_file
    from rasterio.transform import Affine

    path = tmp_path / "scene.tif"
    data = np.random.default_rng(1).integers(0, 4000, (3, 80, 120)).astype("uint16")
    transform = Affine(0.5, 0, 500000, 0, -0.5, 2800000)
    with rasterio.open(path, "w", driver="GTiff", width=120, height=80, count=3, dtype="uint16", crs="EPSG:32640",
                       transform=transform) as dst:
        dst.write(data)
    overlay, table, mask, extras, info = client.predict(handle_file(str(path)), api_name="/segment")
    assert Image.open(overlay).size == (120, 80)
    # noise fits no model's domain: shares only, the caution beside them, never square metres
    assert table["headers"] == ["class", "pixels", "percent", "square_metres", "caution", "colour"]
    assert "georeferenced, 0.5 m/pixel" in info and "16-bit data rescaled" in info
    # a scene that fits a model (a generated one, tagged so, for the model trained on such scenes): square metres
    from core.data import generate_scene
    from core.imaging.imageio import GENERATED_KEY

    fits = tmp_path / "fits.tif"
    with rasterio.open(fits, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs="EPSG:32640",
                       transform=transform) as dst:
        dst.write(generate_scene(5, 256)[0].transpose(2, 0, 1))
        dst.update_tags(**{GENERATED_KEY: "core.data.generate_scene seed 5"})
    _, fit_table, _, _, fit_info = client.predict(handle_file(str(fits)), api_name="/segment")
    assert fit_table["headers"] == ["class", "pixels", "percent", "square_metres", "caution", "colour"], fit_info
    assert sum(r[3] for r in fit_table["data"]) == pytest.approx(256 * 256 * 0.25, rel=1e-3)
    tif = next(p for p in extras if p.endswith(".tif"))
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32640 and src.transform == transform
        assert np.array_equal(src.read(1), np.asarray(Image.open(mask)))


def test_bad_files_are_errors_with_the_reason(client, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.png").write_text("this is text, not an image")
    with pytest.raises(AppError, match=r"notes\.png: not an image"):
        client.predict(handle_file(str(tmp_path / "notes.png")), api_name="/segment")
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(AppError, match=r"tiny\.png: image too small"):
        client.predict(handle_file(str(tmp_path / "tiny.png")), api_name="/segment")
    write_png(tmp_path / "ok.png", 40, 40)  # the server is still fine afterwards
    assert Image.open(client.predict(handle_file(str(tmp_path / "ok.png")), api_name="/segment")[0]).size == (40, 40)


def test_unusable_checkpoint_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from workbench.gradio_app import build_demo, main

    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        build_demo(bad)
    assert main(["--checkpoint", str(bad), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["--concurrency", "0", "--port", str(free_port())]) == 2  # names only the flag that is wrong
    assert capsys.readouterr().err == "error: --concurrency must be from 1 to 64, got 0\n"
    assert main(["--time-budget", "-1", "--concurrency", "99", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == ("error: --time-budget must be >= 0, got -1; --concurrency must be from 1 to 64, "
                                       "got 99\n")


def test_screen_copy_and_legend() -> None:
    from core.seg.segmentation_result import Segmentation
    from workbench.gradio_app import DISPLAY_SIDE
    from workbench.segment_view import legend_html, screen_copy

    classes = [{"name": "<b>roof</b>", "color": [1, 2, 3]}, {"name": "water", "color": [4, 5, 6]}]
    mask = np.zeros((30, 3000), np.uint8)
    mask[:, 1500:] = 1
    seg = Segmentation(rgb=np.zeros((30, 3000, 3), np.uint8), mask=mask, classes=classes,
                       areas=[{"name": c["name"], "pixels": 45000, "percent": 50.0, "square_metres": None}
                              for c in classes])
    view = screen_copy(seg, DISPLAY_SIDE)
    assert view.mask.shape == (20, DISPLAY_SIDE) and set(np.unique(view.mask)) == {0, 1}
    small = Segmentation(rgb=seg.rgb[:, :100], mask=mask[:, :100], classes=classes, areas=seg.areas)
    assert screen_copy(small, DISPLAY_SIDE) is small
    legend = legend_html(seg)
    assert "&lt;b&gt;roof&lt;/b&gt;" in legend and "<b>" not in legend and "rgb(4,5,6)" in legend
    # a tie rounds up, as the Segment page's areas table (the browser's %.1f) writes it: 393 of 400 px is 98.3 %
    tie = Segmentation(rgb=seg.rgb, mask=mask, classes=classes[:1],
                       areas=[{"name": "road", "pixels": 393, "percent": 100 * 393 / 400, "square_metres": None}])
    assert ">98.3%<" in legend_html(tie)
    # DeepGlobe's names are written as words where people read them; the table (the API's) keeps the card's keys
    from workbench.segment_view import areas_frame
    dg = Segmentation(rgb=seg.rgb, mask=mask, classes=[{"name": "urban_land", "color": [0, 255, 255]}],
                      areas=[{"name": "urban_land", "pixels": 400, "percent": 100.0, "square_metres": None}])
    assert ">urban land <" in legend_html(dg) and "urban_land" not in legend_html(dg)
    assert list(areas_frame(dg)["class"]) == ["urban_land"]


def palette_mask(labels: np.ndarray, colours: list[list[int]], seed: int) -> Image.Image:
    """The labels as a palette PNG holding the class colours in a shuffled order (as the Dubai set's files do)."""
    order = np.random.default_rng(seed).permutation(len(colours))  # palette entry j holds class order[j]
    img = Image.fromarray(np.argsort(order).astype(np.uint8)[labels], mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    return img


def test_a_label_mask_of_any_kind_scores_the_kept_result(client, tmp_path: Path) -> None:
    """/score reads masks by their meaning, as the Segment page and core.segment --labels do: indices (8- and
    16-bit), class colours, and a palette PNG with the class colours in another order score alike."""
    from gradio_client import handle_file

    write_png(tmp_path / "tile.png", 48, 64)
    _, _, mask, extras, _ = client.predict(handle_file(str(tmp_path / "tile.png")), api_name="/segment")
    pred = np.asarray(Image.open(mask))
    card = json.loads((SHIPPED / json.loads(Path(extras[1]).read_text())["model"]["path"]).with_suffix(".json")
                      .read_text())
    colours = [c["color"] for c in card["classes"]]
    labels = pred.copy()
    labels[:, :20] = (labels[:, :20] + 1) % len(colours)  # a third of it wrong
    labels[:len(colours)] = np.arange(len(colours), dtype=labels.dtype)[:, None]  # every class present
    kinds = {"indices.png": Image.fromarray(labels, mode="L"),
             "colours.png": Image.fromarray(np.asarray(colours, np.uint8)[labels]),
             "palette.png": palette_mask(labels, colours, seed=3),
             "sixteen.png": Image.fromarray(labels.astype(np.uint16))}
    assert not np.array_equal(np.asarray(kinds["palette.png"]), labels)  # its indices are not the classes
    results = {}
    for name, img in kinds.items():
        img.save(tmp_path / name)
        summary, table, report = client.predict(handle_file(str(tmp_path / "tile.png")),
                                                handle_file(str(tmp_path / name)), api_name="/score")
        results[name] = (summary, [tuple(r) for r in table["data"]])
        report = json.loads(Path(report).read_text())
        assert report["label_score"]["labels"] == name  # the report again, the score in it (the downloads' says null)
        assert report["label_score"]["accuracy"] == pytest.approx((labels == pred).mean())
        assert report["label_score"]["scene_check"].startswith("not recognised as a scene the model was trained on")
        assert "but a crop of one would not be, so this is an unseen score only if" in summary
        assert f"**tile.png against {name}**: mIoU" in summary, summary  # headed by the image first, as /segment
        assert table["headers"] == ["class", "IoU (%)", "label pixels"]
        assert f"pixel accuracy **{100 * (labels == pred).mean():.1f} %**" in summary, (name, summary)
        assert "- model **shipped: " in summary  # which model the score is of, for a client calling only /score
        # and which segmentation: /score segments again with its own settings when none is kept
        assert "- scored the segmentation made with window 512 px, overlap 0.25" in summary, summary
    assert "read as class colours (palette)" in results["palette.png"][0]
    assert "read as class indices" in results["sixteen.png"][0]
    assert len({tuple(rows) for _, rows in results.values()}) == 1  # the same IoU per class for every kind
    mislabeled = Image.fromarray(np.full(pred.shape, 7, np.uint8), mode="P")
    mislabeled.putpalette([1, 2, 3] * 256)
    mislabeled.save(tmp_path / "neither.png")
    with pytest.raises(Exception) as err:  # gradio_client's AppError
        client.predict(handle_file(str(tmp_path / "tile.png")), handle_file(str(tmp_path / "neither.png")),
                       api_name="/score")
    msg = str(err.value)
    assert "neither.png: the palette mask matches neither the classes' colours nor their indices" in msg
    assert "Traceback" not in msg


def test_a_mask_of_another_size_is_refused_before_the_image_is_segmented(client, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sizes are in the files' headers: a 2448 px scene was segmented for 33 s before its half-size mask was
    refused."""
    import workbench.gradio_app as app
    from gradio_client import handle_file

    def segmented(*args, **kwargs):
        raise AssertionError("the image was segmented")  # an Exception: the server answers (pytest.fail hung it)

    monkeypatch.setattr(app, "segment_choosing", segmented)
    write_png(tmp_path / "fresh.png", 56, 40)
    write_png(tmp_path / "half.png", 28, 20)
    with pytest.raises(Exception) as err:  # gradio_client's AppError
        client.predict(handle_file(str(tmp_path / "fresh.png")), handle_file(str(tmp_path / "half.png")),
                       api_name="/score")
    assert "half.png: the label mask is 20×28 pixels, the image 40×56: they must be the same size" in str(err.value)


def test_run_again_replaces_the_label_score_of_the_old_result(served: tuple[object, str], tmp_path: Path) -> None:
    """Run with other settings re-segments the image: the old label score goes at once (it belonged to the old
    result) and, after the new result, a label mask already given scores the new one."""
    import gradio as gr

    demo = served[0]
    deps = demo.get_config_file()["dependencies"]
    run = next(b._id for b in demo.blocks.values()
               if isinstance(b, gr.Button) and b.value == "Segment again with these settings")
    scored = next(d["outputs"] for d in deps if d["api_name"] == "score")  # summary, table, report with the score
    downloads = next(b._id for b in demo.blocks.values()
                     if isinstance(b, gr.File) and str(b.label).startswith("Areas CSV, report JSON"))
    assert downloads not in scored  # a refused mask marked the still-good downloads "Error"
    on_run = [d for d in deps if (run, "click") in [tuple(t) for t in d["targets"]]]
    cleared = [d for d in on_run if d["outputs"] == scored]
    assert len(cleared) == 1, "Run leaves the old label score beside the new overlay"
    summary, table, report = demo.fns[cleared[0]["id"]].fn()
    assert summary == "" and len(table) == 0 and report is None
    runs = {d["id"] for d in on_run if d["outputs"] != scored}
    rescoring = [d for d in deps if d["trigger_after"] in runs and d["trigger_only_on_success"]
                 and d["outputs"] == scored]
    assert len(rescoring) == 1, "a label mask given before Run is not scored against the new result"
    rescore = demo.fns[rescoring[0]["id"]].fn
    write_png(tmp_path / "tile.png", 40, 40)
    Image.fromarray(np.zeros((40, 40), np.uint8), mode="L").save(tmp_path / "labels.png")
    assert rescore(str(tmp_path / "tile.png"), None, 256, 0.0, False)[0] == ""  # no mask: nothing to score
    summary, table, report = rescore(str(tmp_path / "tile.png"), str(tmp_path / "labels.png"), 256, 0.0, False)
    assert "labels.png" in summary and "pixel accuracy" in summary and len(table) > 0
    report = json.loads(Path(report).read_text())
    assert report["label_score"]["labels"] == "labels.png"


def test_the_sample_tile_clears_an_earlier_images_label_mask_and_score(served: tuple[object, str]) -> None:
    """An example click is no upload: the earlier image's label mask and its score stayed beside the sample."""
    import gradio as gr

    demo = served[0]
    deps = demo.get_config_file()["dependencies"]
    mask_box = next(b._id for b in demo.blocks.values()
                    if isinstance(b, gr.File) and str(b.label).startswith("Label mask of this image"))
    scored = next(d["outputs"] for d in deps if d["api_name"] == "score")
    example = next(b for b in demo.blocks.values() if isinstance(b, gr.Dataset))
    loads = {d["id"] for d in deps if (example._id, "click") in [tuple(t) for t in d["targets"]]}
    on_click = [d for d in deps if d["trigger_after"] in loads and mask_box in d["outputs"]]  # then: segmented
    assert len(on_click) == 1, "a click on the sample leaves the earlier label mask"
    assert on_click[0]["outputs"][-4:] == [mask_box, *scored]
    sample = demo.fns[on_click[0]["id"]].fn
    out = sample(example.raw_samples[0][0])
    assert out[-4] is None and out[-3] == "" and len(out[-2]) == 0 and out[-1] is None  # no mask, no score
    assert Path(out[0]).name == "sample_scene_overlay.png"  # and the sample itself segmented


def test_every_request_gives_its_memory_back_answered_or_refused(client, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29: after refused budget-sized GeoTIFFs the server stayed 2 GB above its start (glibc kept the freed
    pixels); each request now trims the heap (the figures: bench/load_gradio.py --big-format geotiff)."""
    import workbench.gradio_app as app
    from core.imaging.budget import give_back_memory
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    assert give_back_memory() is True  # glibc here: the trim is real, not skipped
    calls: list[int] = []
    monkeypatch.setattr(app, "give_back_memory", lambda: calls.append(1) or True)
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(AppError):
        client.predict(handle_file(str(tmp_path / "tiny.png")), api_name="/segment")
    write_png(tmp_path / "fine.png", 40, 40)
    client.predict(handle_file(str(tmp_path / "fine.png")), api_name="/segment")
    assert len(calls) == 2


def test_served_from_the_command_line_it_names_its_api_and_no_share_link(capsys: pytest.CaptureFixture) -> None:
    import threading
    import time

    import gradio as gr

    from workbench.gradio_app import serve

    with gr.Blocks() as demo:
        gr.Markdown("a page")
    done = threading.Thread(target=serve, args=(demo,), kwargs={"port": free_port(), "block": True}, daemon=True)
    done.start()  # blocks until the server closes, as `python -m workbench.gradio_app` until Ctrl-C
    deadline = time.time() + 60
    while not demo.is_running and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    demo.close()
    done.join(timeout=30)
    out = capsys.readouterr().out
    assert not done.is_alive() and "this machine only" in out and "/?view=api" in out, out
    assert "share" not in out  # an offline demo: gradio's hint on public share links would only mislead


def test_output_folders_of_killed_demos_are_swept(tmp_path: Path, monkeypatch) -> None:
    """A demo killed before it closed left its output folder under the data root, and they piled up; a new demo
    removes those whose process is gone, and keeps a live one's however long it has been idle."""
    import workbench.gradio_outputs as outputs

    monkeypatch.setattr(outputs, "scratch_dir", lambda: tmp_path)
    dead = tmp_path / f".{outputs.OUTPUTS}.tmp-{2**22 + 123}-abc"  # past Linux's largest pid: never alive
    live = tmp_path / f".{outputs.OUTPUTS}.tmp-{os.getpid()}-def"
    for folder in (dead / "calls" / "a", live / "calls" / "b"):
        folder.mkdir(parents=True)
    mine = outputs.Outputs()
    try:
        assert not dead.exists() and (live / "calls" / "b").exists()
        assert mine.new().is_dir() and mine.root.name.startswith(f".{outputs.OUTPUTS}.tmp-{os.getpid()}-")
    finally:
        mine.close()
    assert not mine.root.exists()
