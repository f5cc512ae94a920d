"""The Segment page, driven through the router as a user would: sample tile, uploads (good, corrupt, GeoTIFF),
the opacity slider (no second model run), model choice, and a broken checkpoint (one st.error, no traceback)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import core.seg.segment
from core.store.catalog import ModelEntry
from tests.pages import errors as page_errors, texts

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "workbench" / "streamlit_app.py")
PAGE = "../pages/segment.py"  # relative to the router's folder


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def png_bytes(h: int, w: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def geotiff_bytes(tmp_path: Path, generated: bool = False) -> bytes:
    """A 16-bit GeoTIFF of noise (no model's domain), or an 8-bit generated scene that says so (the synthetic
    model's)."""
    import rasterio
    from rasterio.transform import Affine

    from core.data import generate_scene
    from core.imaging.imageio import GENERATED_KEY

    path = tmp_path / "scene.tif"
    data = np.random.default_rng(1).integers(0, 4000, (3, 80, 120)).astype("uint16")
    if generated:
        data = generate_scene(5, 256)[0].transpose(2, 0, 1)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype=data.dtype,
                       crs="EPSG:32640", transform=Affine(0.5, 0, 500000, 0, -0.5, 2800000)) as dst:
        dst.write(data)
        if generated:
            dst.update_tags(**{GENERATED_KEY: "core.data.generate_scene seed 5"})
    return path.read_bytes()


def areas(at: AppTest, i: int = 0):
    return at.dataframe[i].value


def test_empty_page_shows_a_hint_and_the_default_model(empty_store: Path) -> None:
    at = open_page()
    assert at.title[0].value.endswith("Segment")
    assert not at.error
    assert any("sample tile" in i.value for i in at.info)
    up = at.file_uploader(key="segment_files")
    assert up.accept_multiple_files and {"png", "jpg", "jpeg", "tif", "tiff"} <= {t.lstrip(".") for t in
                                                                                 up.allowed_type}
    model = at.selectbox(key="segment_model")
    assert model.options[:2] == ["auto: best domain fit", "shipped: dubai_seg"]
    assert model.value == "auto: best domain fit"
    assert not at.image and not at.dataframe


def test_sample_tile_is_segmented_with_areas_chart_and_downloads(empty_store: Path) -> None:
    at = open_page()
    at.button(key="segment_sample").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="segment_model").value == "auto: best domain fit"  # the choice stays the user's ...
    assert "Model **shipped: synthetic_seg** (auto: " in texts(at)  # ... and auto sends it to the model that knows it
    why = next(e for e in at.expander if e.label in ("Why this model", "What the domain fit means"))  # not the head
    said = [m.value for m in why.markdown]
    assert any("domain fit: the share of the model's own training tiles" in m for m in said), said
    head = next(c.value for c in at.caption if c.value.startswith("🧭 Model"))
    assert not any(line.removeprefix("- ") in head for m in said for line in m.splitlines()), (head, said)
    assert len(at.image) == 1 and "512×512" in at.image[0].captions[0]
    table = areas(at)
    assert list(table["class"])[:2] == ["impervious surfaces", "building"]
    assert int(table["pixels"].sum()) == 512 * 512
    assert table["percent"].sum() == pytest.approx(100.0)
    assert "m²" not in table  # no georeference, no pixel size
    assert len(at.get("plotly_chart")) == 1
    assert [d.label for d in at.download_button] == ["Mask PNG", "Areas CSV", "Report JSON"]
    assert len(at.html) == 1 and "low vegetation" in at.html[0].proto.body


def test_shares_with_no_data_say_their_basis_in_the_chart_and_the_csv(empty_store: Path) -> None:
    """A review: an image whose top sixth was transparent showed water 60.6 % on an axis "% of image" (51.4 % of it);
    the CSV's shares summed to 100 with no word of the rest."""
    rgba = np.dstack([np.random.default_rng(2).integers(0, 256, (96, 96, 3), dtype=np.uint8),
                      np.full((96, 96), 255, np.uint8)])
    rgba[:16, :, 3] = 0  # the top 16 rows: no data
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    at = open_page()
    at.selectbox(key="segment_model").set_value("shipped: dubai_seg").run()
    at.file_uploader(key="segment_files").set_value(("holes.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not page_errors(at), page_errors(at)
    axis = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["xaxis"]["title"]["text"]
    assert axis == "% of the pixels with data (16.7 % hold none)"
    seg = next(iter(at.session_state["segment_results"].values())).seg
    rows = seg.areas_csv().splitlines()
    assert rows[-1].split(",")[:3] == ["no_data", str(16 * 96), ""]
    assert sum(float(r.split(",")[2]) for r in rows[1:-1]) == pytest.approx(100.0)  # of the classified pixels
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == 96 * 96


def test_a_sample_keeps_the_model_the_user_picked_for_every_image(empty_store: Path) -> None:
    at = open_page()
    at.selectbox(key="segment_model").set_value("shipped: dubai_seg").run()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    at.button(key="segment_sample").click().run()
    assert not at.exception
    assert at.selectbox(key="segment_model").value == "shipped: dubai_seg"
    shown = texts(at)
    assert shown.count("Model **shipped: dubai_seg** (given: ") == 2 and "synthetic_seg** (" not in shown
    assert "shipped: dubai_seg was not trained on such scenes (shipped: synthetic_seg was)" in shown


def count_predictions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the page runs a model on an image."""
    calls: list[int] = []
    real = core.seg.segment.segment_loaded

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(core.seg.segment, "segment_loaded", counting)
    return calls


def test_opacity_reblends_without_running_the_model_again(empty_store: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_predictions(monkeypatch)
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    assert len(calls) == 1 and len(at.image) == 1
    before = at.image[0].value
    opacity = next(s for s in at.slider if s.key.startswith("opacity_"))
    opacity.set_value(1.0).run()
    assert not at.exception
    assert at.image[0].value != before  # a new blend was sent ...
    assert len(calls) == 1  # ... from the kept result
    at.slider(key="segment_overlap").set_value(0.5).run()  # new settings: a new prediction
    assert len(calls) == 2


def test_bad_uploads_are_one_line_errors_and_the_others_still_run(empty_store: Path) -> None:
    good = png_bytes(70, 90)
    at = open_page()
    at.file_uploader(key="segment_files").set_value([
        ("notes.png", b"this is text, not an image", "image/png"),
        ("cut.png", good[: len(good) // 2], "image/png"),
        ("empty.tif", b"", "image/tiff"),
        ("good.png", good, "image/png"),
    ]).run()
    assert not at.exception
    errors = page_errors(at)
    assert len(errors) == 3
    assert errors[0].startswith("notes.png: not an image")
    assert errors[1].startswith("cut.png: ") and "truncated or corrupt" in errors[1]
    assert errors[2].startswith("empty.tif: empty file")
    assert all("Traceback" not in e and "\n" not in e for e in errors)
    assert len(at.image) == 1 and at.image[0].captions[0].startswith("good.png: 90×70")
    assert int(areas(at)["pixels"].sum()) == 70 * 90


def test_geotiff_gets_square_metres_notes_and_a_geotiff_download(populated_store: Path, tmp_path: Path) -> None:
    at = open_page()
    labels = at.selectbox(key="segment_model").options
    assert labels[1] == "shipped: dubai_seg" and any(label.startswith("run: ") for label in labels)
    at.file_uploader(key="segment_files").set_value(("scene.tif", geotiff_bytes(tmp_path), "image/tiff")).run()
    assert not at.exception and not at.error
    table = areas(at)  # noise fits no model: shares only, with the caution beside them and the warning above
    assert "m²" not in table.columns and table["caution"].str.startswith("shares only").all()
    shown = next(d for d in at.dataframe if "caution" in d.value)  # a column per row pushed the shares off screen:
    assert list(shown.proto.column_order)[:2] == ["class", "percent"]  # the shares come second, the caution above
    assert "caution" not in shown.proto.column_order
    assert any(c.value.startswith("⚠️ shares only: classes a guess (the warning above says why)") for c in at.caption)
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert any("shares only: classes a guess" in t for t in titles)  # the bar chart carries it too
    assert any("areas are given as shares of the image only" in w.value for w in at.warning)
    assert any("16-bit data rescaled" in c.value for c in at.caption)
    at.file_uploader(key="segment_files").set_value(("fits.tif", geotiff_bytes(tmp_path, True), "image/tiff")).run()
    assert not at.exception and not at.error
    table = areas(at)
    assert table["m²"].sum() == pytest.approx(256 * 256 * 0.25, abs=len(table) / 2) and "caution" not in table.columns
    assert (table["m²"] == table["m²"].round()).all()  # whole square metres (the CSV keeps the exact areas)
    assert any("georeferenced, 0.5 m/pixel" in c.value for c in at.caption)
    assert [d.label for d in at.download_button] == ["Mask PNG", "Areas CSV", "Report JSON", "GeoTIFF mask"]


def test_two_files_get_tabs_and_a_run_model_can_be_chosen(populated_store: Path) -> None:
    at = open_page()
    run_label = next(o for o in at.selectbox(key="segment_model").options if o.startswith("run: "))
    at.selectbox(key="segment_model").set_value(run_label).run()
    at.file_uploader(key="segment_files").set_value([("a.png", png_bytes(64, 64, 1), "image/png"),
                                                     ("b.jpg", png_bytes(48, 80, 2), "image/jpeg")]).run()
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["a.png", "b.jpg"]
    assert len(at.image) == 2 and len(at.dataframe) == 2


def test_broken_checkpoint_is_an_error_not_a_traceback(empty_store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    monkeypatch.setattr("core.store.catalog.segmentation_models",
                        lambda root=None: [ModelEntry("shipped: broken", bad, {})])
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(40, 40), "image/png")).run()
    assert not at.exception
    assert len(at.error) == 1 and page_errors(at)[0].startswith("tile.png: Model shipped: broken cannot be used: ")
    assert not at.image
    at.selectbox(key="segment_model").set_value("shipped: broken").run()  # named: refused before any upload runs
    assert not at.exception
    assert len(at.error) == 1 and page_errors(at)[0].startswith("Model shipped: broken cannot be used: ")


def _holds_image(block) -> bool:
    return any(type(e).__name__ == "Image" for e in block.children.values())


def test_a_wide_image_is_shown_reduced_but_counted_in_full(empty_store: Path) -> None:
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("strip.png", png_bytes(40, 1700), "image/png")).run()
    assert not at.exception and not at.error
    assert at.image[0].captions[0] == "strip.png: 1700×40 pixels, shown at 1600×38"
    assert int(areas(at)["pixels"].sum()) == 1700 * 40
    assert not any(_holds_image(c) for c in at.columns)  # across the page, not in a column beside the legend
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    assert any(_holds_image(c) for c in at.columns)  # 3:2: beside its legend


def test_model_settings_opacity_and_results_survive_a_visit_to_another_page(
        populated_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_predictions(monkeypatch)
    at = open_page()
    model = next(o for o in at.selectbox(key="segment_model").options if o.startswith("shipped: synthetic"))
    at.selectbox(key="segment_model").set_value(model).run()
    at.slider(key="segment_overlap").set_value(0.4).run()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    opacity = next(s for s in at.slider if s.key.startswith("opacity_"))
    opacity.set_value(0.8).run()
    assert len(calls) == 1
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    at.switch_page("../pages/segment.py").run()
    assert not at.exception
    assert at.selectbox(key="segment_model").value == model  # not back to auto
    assert at.slider(key="segment_overlap").value == 0.4
    assert next(s for s in at.slider if s.key.startswith("opacity_")).value == 0.8
    assert len(at.image) == 1 and len(calls) == 1  # the result is shown again, not computed again
    # the uploader forgot the file, the page did not: another model picked now segments it again (the review saw the
    # old model's result stay under the new model's name, nothing run)
    other = next(o for o in at.selectbox(key="segment_model").options if o not in (model, at.selectbox(
        key="segment_model").options[0]))
    at.selectbox(key="segment_model").set_value(other).run()
    assert not at.exception and not at.error, page_errors(at)
    assert len(calls) == 2 and len(at.image) == 1
    shown = [r for k, r in at.session_state["segment_results"].items() if k in at.session_state["segment_last"]]
    assert [r.seg.model["name"] for r in shown] == [other]
    assert any("Your last uploads, kept while you visit other pages" in c.value for c in at.caption)
    at.button(key="segment_forget").click().run()  # forgotten: the page starts over
    assert not at.exception and not at.image and any("Drop one or more aerial tiles" in i.value for i in at.info)


def test_a_score_on_a_scene_the_model_saw_is_said_beside_the_score(empty_store: Path) -> None:
    """A walkthrough scored two training images and read them as unseen scores: the note sat above, apart."""
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    key = next(s for s in at.slider if s.key.startswith("opacity_")).key.removeprefix("opacity_")
    seg = next(iter(at.session_state["segment_results"].values())).seg
    buf = io.BytesIO()
    Image.fromarray(seg.mask).save(buf, format="PNG")
    at.file_uploader(key=f"labels_{key}").set_value(("labels.png", buf.getvalue(), "image/png")).run()
    # not one of the model's scenes: said to be so as far as the check sees (a crop of one it cannot: a review's 99 %)
    assert any("Not recognised as a scene the model was trained on or watched" in c.value for c in at.caption)
    at.file_uploader(key=f"labels_{key}").set_value(None).run()
    seg.notes.append("this image is training scene tile_2/image_part_001 of the model; the model was trained on it, "
                     "so its score is no unseen score")  # as scene_role.note_scene writes it
    buf = io.BytesIO()
    Image.fromarray(seg.mask).save(buf, format="PNG")
    at.file_uploader(key=f"labels_{key}").set_value(("labels.png", buf.getvalue(), "image/png")).run()
    assert any(w.value.startswith("Not an unseen score: this image is training scene tile_2/image_part_001")
               for w in at.warning), [w.value for w in at.warning]


def test_a_label_mask_gives_iou_per_class_and_a_difference_overlay(empty_store: Path) -> None:
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    assert not at.exception and len(at.image) == 1
    key = next(s for s in at.slider if s.key.startswith("opacity_")).key.removeprefix("opacity_")
    seg = next(iter(at.session_state["segment_results"].values())).seg  # the kept result
    buf = io.BytesIO()
    Image.fromarray(seg.mask).save(buf, format="PNG")  # the prediction itself as labels: a perfect score
    at.file_uploader(key=f"labels_{key}").set_value(("labels.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the report with the score, as core.segment --labels writes it (a review: the page had no report at all)
    assert [d.label for d in at.download_button][-1] == "Report JSON with this score"
    shown = {m.label: m.value for m in at.metric}
    assert shown["mIoU"] == "100.0 %" and shown["Pixel accuracy"] == "100.0 %"
    assert len(at.image) == 2  # the overlay and the right/wrong image
    assert any("green: right" in c for i in at.image for c in i.captions)
    assert not any("in no pixel of the mask" in c.value for c in at.caption)
    ious = next(d.value for d in at.dataframe if "label pixels" in d.value)["iou"].tolist()
    present = set(np.unique(seg.mask).tolist())  # one decimal for every class, a dash for one in neither
    assert ious == ["100.0" if k in present else "—" for k in range(len(seg.classes))], ious
    common = int(np.bincount(seg.mask.ravel()).argmax())
    other = Image.fromarray(np.full_like(seg.mask, (common + 1) % len(seg.classes)))  # the model's main class absent
    buf = io.BytesIO()
    other.save(buf, format="PNG")
    at.file_uploader(key=f"labels_{key}").set_value(("other.png", buf.getvalue(), "image/png")).run()
    said = seg.classes[common]["name"].replace("_", " ")  # as the table beside it names it ("low vegetation")
    assert any(f"predicted but in no pixel of the mask: {said} (" in c.value
               for c in at.caption), [c.value for c in at.caption]
    miou = next(m for m in at.metric if m.label == "mIoU")  # the headline says what the absent class cost
    assert miou.delta is not None and miou.delta.endswith("over the 1 class the mask holds"), miou.delta
    small = io.BytesIO()
    Image.fromarray(seg.mask[:10, :10]).save(small, format="PNG")
    at.file_uploader(key=f"labels_{key}").set_value(("small.png", small.getvalue(), "image/png")).run()
    assert any("same size" in e and e.endswith("not kept") for e in page_errors(at)), page_errors(at)
    # a mask that can never score this image (another size, or no image) is not offered again after a page trip
    at.switch_page("../pages/runs.py").run()
    at.switch_page(PAGE).run()
    assert not any("uploaded before" in c.value for c in at.caption) and not page_errors(at)
    at.file_uploader(key=f"labels_{key}").set_value(("notes.png", b"not an image", "image/png")).run()
    assert any(e.startswith("notes") and e.endswith("not kept") for e in page_errors(at)), page_errors(at)


def rgbn_model(tmp_path: Path) -> ModelEntry:
    """An untrained 4-band (R, G, B, NIR) model with its card, as a fine-tuning run on RGB+NIR data leaves one."""
    from core.seg.segmodel import SegModel, make_card, save_seg_checkpoint

    card = make_card(arch="deeplabv3plus", encoder="resnet18", bands=["R", "G", "B", "NIR"],
                     classes=[{"name": "ground", "color": [200, 180, 140]}, {"name": "vegetation", "color": [40, 160, 40]}])
    path = tmp_path / "rgbn.safetensors"
    save_seg_checkpoint(path, SegModel("deeplabv3plus", "resnet18", 2, in_channels=4), card)
    return ModelEntry("run: rgbn", path, card)


def rgbn_geotiff_bytes(tmp_path: Path) -> bytes:
    import rasterio
    from rasterio.transform import Affine

    rng = np.random.default_rng(3)
    data = rng.integers(60, 120, (4, 64, 80)).astype("uint8")
    data[3, :, :40] = 220  # the left half is bright in near-infrared (vegetation)
    path = tmp_path / "rgbn.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=64, count=4, dtype="uint8", crs="EPSG:32640",
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 2800000)) as dst:
        dst.write(data)
    return path.read_bytes()


def test_a_4_band_upload_is_shown_in_true_and_false_colour_and_segmented_with_a_4_band_model(
        empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = rgbn_model(tmp_path)
    monkeypatch.setattr("core.store.catalog.segmentation_models", lambda root=None: [entry])
    calls = count_predictions(monkeypatch)
    at = open_page()
    at.selectbox(key="segment_model").set_value("run: rgbn").run()
    assert any("reads bands R, G, B, NIR" in c.value for c in at.caption)
    at.file_uploader(key="segment_files").set_value([("rgbn.tif", rgbn_geotiff_bytes(tmp_path), "image/tiff"),
                                                     ("plain.png", png_bytes(40, 40), "image/png")]).run()
    assert not at.exception
    [error] = page_errors(at)
    assert "plain.png" in error and "no NIR band" in error and "the model reads R, G, B, NIR" in error
    assert any("bands R, G, B, NIR" in c.value for c in at.caption)
    view = next(r for r in at.radio if r.key.startswith("opacity_view_"))
    assert view.options == ["true colour (R, G, B)", "false colour (NIR, R, G: vegetation red)"]
    assert "true colour" in at.image[0].captions[0]
    before = at.image[0].value
    view.set_value("false").run()
    assert not at.exception and "false colour" in at.image[0].captions[0] and at.image[0].value != before
    assert len(calls) == 1 and int(areas(at)["pixels"].sum()) == 64 * 80  # the same result, another picture


def test_the_same_file_added_twice_is_one_result(empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_predictions(monkeypatch)
    at = open_page()
    tile = png_bytes(48, 48, 5)
    at.file_uploader(key="segment_files").set_value([("a.png", tile, "image/png"), ("copy of a.png", tile, "image/png")]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.image) == 1 and len(calls) == 1


def palette_png(labels: np.ndarray, colours: list[list[int]], seed: int) -> bytes:
    """Class labels as a palette PNG holding the class colours in a shuffled order (as the Dubai set's files do)."""
    order = np.random.default_rng(seed).permutation(len(colours))  # palette entry j holds class order[j]
    img = Image.fromarray(np.argsort(order).astype(np.uint8)[labels], mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_label_mask_and_its_scores_survive_a_visit_to_another_page(empty_store: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_predictions(monkeypatch)
    at = open_page()
    at.file_uploader(key="segment_files").set_value(("tile.png", png_bytes(64, 96), "image/png")).run()
    key = next(s for s in at.slider if s.key.startswith("opacity_")).key.removeprefix("opacity_")
    seg = next(iter(at.session_state["segment_results"].values())).seg
    labels = seg.mask.copy()
    labels[:32] = (labels[:32] + 1) % len(seg.classes)  # half of it wrong
    colours = [c["color"] for c in seg.classes]
    mask = palette_png(labels, colours, 3)
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(mask))), labels)  # its indices are not the classes
    at.file_uploader(key=f"labels_{key}").set_value(("labels.png", mask, "image/png")).run()
    assert not at.exception and not at.error, page_errors(at)
    before = {m.label: m.value for m in at.metric}
    assert before["Pixel accuracy"] == f"{100 * (labels == seg.mask).mean():.1f} %"  # read by its colours
    at.switch_page("../pages/runs.py").run()
    assert not at.exception and not at.metric
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error, page_errors(at)
    assert at.file_uploader(key=f"labels_{key}").value is None  # the uploader forgot the file ...
    assert {m.label: m.value for m in at.metric} == before  # ... the page did not
    assert any(c.value.startswith("Label mask **labels\\.png**, uploaded before") for c in at.caption)
    assert len(at.image) == 2 and len(calls) == 1
    at.button(key=f"labels_forget_{key}").click().run()  # removed: the scores go
    assert not at.exception and not at.metric
    at.switch_page("../pages/runs.py").run()
    at.switch_page(PAGE).run()
    assert not at.metric and len(at.image) == 1


def test_the_chosen_tab_and_a_mask_stay_with_their_image_through_reruns_and_a_model_change(
        empty_store: Path) -> None:
    """A mask uploaded in the second tab used to send the view back to the first (another image's scores), and a
    new result of the same image (another model, or auto with a new candidate) lost its mask."""
    at = open_page()
    at.file_uploader(key="segment_files").set_value([("a.png", png_bytes(64, 64, 1), "image/png"),
                                                     ("b.png", png_bytes(48, 80, 2), "image/png")]).run()
    assert not at.exception and [t.label for t in at.tabs] == ["a.png", "b.png"]
    at.session_state["segment_tab"] = "b.png"  # the user opens the second tab (tracked: it reruns)
    at.run()
    results = at.session_state["segment_results"]
    key, seg = next((k, r.seg) for k, r in results.items() if r.name == "b.png")
    buf = io.BytesIO()
    Image.fromarray(seg.mask).save(buf, format="PNG")
    at.file_uploader(key=f"labels_{key}").set_value(("b_labels.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error, page_errors(at)
    assert at.session_state["segment_tab"] == "b.png"  # still the second tab
    assert [m.value for m in at.metric if m.label == "mIoU"] == ["100.0 %"]
    used = seg.model["name"]  # the model auto chose, now named: the same classes, a new result of each image
    at.selectbox(key="segment_model").set_value(used).run()
    assert not at.exception and not at.error, page_errors(at)
    assert [k for k, r in at.session_state["segment_results"].items() if r.name == "b.png"][-1] != key
    assert any(c.value.startswith("Label mask **b\\_labels\\.png**, uploaded before") for c in at.caption), \
        [c.value for c in at.caption]
    assert [m.value for m in at.metric if m.label == "mIoU"] == ["100.0 %"]


def test_a_refused_mask_is_kept_only_when_it_could_still_score_its_image() -> None:
    """Kept: an image of the image's size in either orientation, a GeoTIFF Pillow cannot open too; not kept: another
    size, or no image at all."""
    import warnings

    from rasterio.io import MemoryFile

    from workbench.label_view import fits_image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    assert fits_image(png, (10, 20)) and fits_image(png, (20, 10)) and not fits_image(png, (11, 20))
    assert not fits_image(b"not an image", (10, 20))
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore")  # no geotransform: not georeferenced, as a plain mask
        with mem.open(driver="GTiff", width=20, height=10, count=1, dtype="float32") as dst:
            dst.write(np.zeros((1, 10, 20), np.float32))  # float32: a TIFF Pillow does not open
        assert fits_image(mem.read(), (10, 20))


def test_another_session_gets_the_result_of_the_same_file_without_running_the_model(
        empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A walkthrough's new browser session segmented a 6-megapixel scene again (45-62 s) that another had done: the
    server keeps results by content, name, model and settings, and hands each session its own copy."""
    calls = count_predictions(monkeypatch)
    tile = png_bytes(64, 96)
    first = open_page()
    first.file_uploader(key="segment_files").set_value(("tile.png", tile, "image/png")).run()
    assert len(calls) == 1 and len(first.image) == 1
    second = open_page()  # another browser session of the same server
    second.file_uploader(key="segment_files").set_value(("tile.png", tile, "image/png")).run()
    assert not second.exception and len(calls) == 1 and len(second.image) == 1
    assert areas(second).equals(areas(first))
    third = open_page()  # another name: its own result (notes may name the file)
    third.file_uploader(key="segment_files").set_value(("other.png", tile, "image/png")).run()
    assert len(calls) == 2
    from workbench import shared_results

    a = {"x": np.zeros((10, 10), np.uint8)}
    shared_results.put("k", a)
    got = shared_results.get("k")
    got["x"][0, 0] = 7  # a session's copy: the kept one is untouched
    assert shared_results.get("k")["x"][0, 0] == 0 and shared_results.array_bytes(a) == 100
