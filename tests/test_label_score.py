"""Scoring a segmentation against a user's label mask: indices or class colours, what is left out, clear refusals."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.seg.infer import NODATA
from core.seg.label_score import IGNORE, RIGHT, WRONG, LabelMaskError, difference_image, score_labels

CLASSES = [{"name": "road", "color": [255, 255, 255]}, {"name": "building", "color": [0, 0, 255]},
           {"name": "tree", "color": [0, 255, 0]}]


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def truth() -> np.ndarray:
    t = np.zeros((20, 30), np.uint8)
    t[:, 10:20] = 1
    t[:, 20:] = 2
    return t


def test_index_and_colour_masks_give_the_same_scores() -> None:
    labels = truth()
    pred = labels.copy()
    pred[:5, 10:20] = 2  # 50 building pixels called tree
    colours = np.asarray([c["color"] for c in CLASSES], np.uint8)[labels]
    by_index = score_labels(pred, png(labels), CLASSES)
    by_colour = score_labels(pred, png(colours), CLASSES)
    assert by_index.how == "class indices" and by_colour.how == "class colours"
    assert by_index.scores.confusion == by_colour.scores.confusion
    assert by_index.scores.iou[0] == 1.0 and by_index.scores.iou[1] == pytest.approx(150 / 200)
    assert by_index.scores.iou[2] == pytest.approx(200 / 250)
    assert by_index.left_out == 0 and by_index.unknown == 0
    perfect = score_labels(labels, png(labels), CLASSES)
    assert perfect.scores.miou == 1.0 and perfect.scores.overall_accuracy == 1.0


def test_ignore_unknown_colours_and_no_data_are_left_out() -> None:
    labels = truth()
    labels[0, :] = IGNORE  # 30 ignore
    labels[1, :] = 7  # 30 of no class
    pred = truth()
    pred[2, :] = NODATA  # 30 no data
    result = score_labels(pred, png(labels), CLASSES)
    assert result.left_out == pytest.approx(90 / 600) and result.unknown == pytest.approx(30 / 600)
    assert sum(map(sum, result.scores.confusion)) == 600 - 90 and result.scores.miou == 1.0
    colours = np.asarray([c["color"] for c in CLASSES], np.uint8)[truth()]
    colours[3, :] = (9, 9, 9)
    assert score_labels(truth(), png(colours), CLASSES).unknown == pytest.approx(30 / 600)


def test_refusals_say_why() -> None:
    with pytest.raises(LabelMaskError, match=r"30×20.*31×20|31×20.*30×20"):
        score_labels(np.zeros((20, 31), np.uint8), png(truth()), CLASSES)
    with pytest.raises(LabelMaskError, match="not an image") as err:
        score_labels(truth(), b"not a png at all", CLASSES)
    assert "BytesIO" not in str(err.value) and " at 0x" not in str(err.value)  # nothing of Python's insides
    with pytest.raises(LabelMaskError, match="cannot be read"):
        score_labels(truth(), png(truth())[:60], CLASSES)  # a truncated PNG
    with pytest.raises(LabelMaskError, match="no pixel of the label mask is one of the model's classes"):
        score_labels(truth(), png(np.full((20, 30, 3), 77, np.uint8)), CLASSES)
    with pytest.raises(LabelMaskError, match="no-data"):
        score_labels(np.full((20, 30), NODATA, np.uint8), png(truth()), CLASSES)


def test_difference_image_tints_right_green_and_wrong_red() -> None:
    rgb = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, IGNORE], [2, 2, 2]], np.uint8)
    pred = np.array([[0, 2, 1], [2, 0, 2]], np.uint8)
    out = difference_image(rgb, pred, labels, opacity=1.0)
    assert tuple(out[0, 0]) == RIGHT and tuple(out[0, 1]) == WRONG and tuple(out[0, 2]) == (100, 100, 100)
    assert tuple(out[1, 1]) == WRONG and tuple(out[1, 2]) == RIGHT


def test_display_colours_draw_while_mask_colours_decode(tmp_path) -> None:
    """A class's display colour is what overlays, palette PNGs and GeoTIFF colour tables show; label masks are
    still read in the data set's own mask colours."""
    from core.seg.infer import colorize, palette
    from core.seg.segmentation_result import palette_png

    shown = [{**c, "display": [10 * i, 20, 30]} for i, c in enumerate(CLASSES)]
    assert palette(shown)[:3].tolist() == [[0, 20, 30], [10, 20, 30], [20, 20, 30]]
    assert colorize(np.array([[1]], np.uint8), shown)[0, 0].tolist() == [10, 20, 30]
    with Image.open(io.BytesIO(palette_png(np.array([[2]], np.uint8), shown))) as img:
        assert np.asarray(img.convert("RGB"))[0, 0].tolist() == [20, 20, 30]
    labels = truth()
    in_mask_colours = np.asarray([c["color"] for c in CLASSES], np.uint8)[labels]
    result = score_labels(labels, png(in_mask_colours), shown)
    assert result.how == "class colours" and result.scores.miou == 1.0 and result.unknown == 0


def test_the_dubai_model_draws_water_blue_and_decodes_its_orange_masks() -> None:
    import json
    from pathlib import Path

    from core.imaging.colours import display_rgb

    card = json.loads((Path(__file__).resolve().parent.parent / "checkpoints/dubai_seg.json").read_text())
    water = next(c for c in card["classes"] if c["name"] == "water")
    assert water["color"] == [226, 169, 41]  # the data set's mask colour, kept for decoding
    r, g, b = display_rgb(water)
    assert b > r and b > g  # drawn blue
