"""Scoring a segmentation against a user's label mask: indices or class colours, what is left out, clear refusals."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.seg.infer import NODATA
from core.seg.label_score import IGNORE, RIGHT, WRONG, LabelMaskError, difference_image, score_labels
from core.seg.scene_role import NOT_RECOGNISED

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
    assert result.left_out_text() == "15.0 %"
    big = np.tile(truth(), (50, 50))  # 1.5 M pixels, one of them ignored: a few, not "0.0 %"
    big[0, 0] = IGNORE
    few = score_labels(big, png(big), CLASSES)
    assert few.left_out_text() == "< 0.1 %" and "< 0.1 % left out" in few.line()
    assert score_labels(truth(), png(truth()), CLASSES).left_out_text() == "0.0 %"


def test_refusals_say_why() -> None:
    with pytest.raises(LabelMaskError, match=r"30×20.*31×20|31×20.*30×20") as err:
        score_labels(np.zeros((20, 31), np.uint8), png(truth()), CLASSES)
    assert "EXIF" not in str(err.value)
    with pytest.raises(LabelMaskError, match="turn the mask the same way"):  # a photo's EXIF turn, not the mask's
        score_labels(np.zeros((30, 20), np.uint8), png(truth()), CLASSES)
    with pytest.raises(LabelMaskError, match="not an image") as err:
        score_labels(truth(), b"not a png at all", CLASSES)
    assert "BytesIO" not in str(err.value) and " at 0x" not in str(err.value)  # nothing of Python's insides
    with pytest.raises(LabelMaskError, match="cannot be read"):
        score_labels(truth(), png(truth())[:60], CLASSES)  # a truncated PNG
    with pytest.raises(LabelMaskError, match="matches neither the classes' colours nor their indices: its values 77"):
        score_labels(truth(), png(np.full((20, 30, 3), 77, np.uint8)), CLASSES)  # grey: colours or values
    with pytest.raises(LabelMaskError, match=r"matches none of the classes' colours: its colours \[70, 80, 90\]"):
        score_labels(truth(), png(np.full((20, 30, 3), (70, 80, 90), np.uint8)), CLASSES)
    with pytest.raises(LabelMaskError, match="no pixel of the label mask is one of the model's classes"):
        score_labels(truth(), png(np.full((20, 30), IGNORE, np.uint8)), CLASSES)  # all unlabeled
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


# ------------------------------------------------------------------------------------------------ every kind of mask
def palette_png(labels: np.ndarray, seed: int, colours: list | None = None) -> bytes:
    """The class colours in a palette of a seeded order (another per file, as the Dubai set's palette PNGs)."""
    colours = colours or [c["color"] for c in CLASSES]
    order = np.random.default_rng(seed).permutation(len(colours))  # entry j holds colours[order[j]]
    img = Image.fromarray(np.argsort(order).astype(np.uint8)[labels], mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def mask_kinds(labels: np.ndarray) -> dict[str, bytes]:
    """The same labels as indices (L), colours (RGB), a shuffled palette (P) and 16-bit indices (I;16)."""
    i16 = Image.fromarray(labels.astype(np.uint16))
    assert i16.mode == "I;16"
    buf = io.BytesIO()
    i16.save(buf, format="PNG")
    return {"L": png(labels), "RGB": png(np.asarray([c["color"] for c in CLASSES], np.uint8)[labels]),
            "P": palette_png(labels, seed=5), "I;16": buf.getvalue()}


def test_every_kind_of_mask_scores_the_same() -> None:
    labels = truth()
    pred = labels.copy()
    pred[:8, :15] = (pred[:8, :15] + 1) % 3
    with Image.open(io.BytesIO(mask_kinds(labels)["P"])) as img:
        assert img.mode == "P" and not np.array_equal(np.asarray(img), labels)  # its indices are not the classes
    scored = {kind: score_labels(pred, data, CLASSES) for kind, data in mask_kinds(labels).items()}
    assert {k: s.how for k, s in scored.items()} == {"L": "class indices", "RGB": "class colours",
                                                      "P": "class colours (palette)", "I;16": "class indices"}
    for kind, s in scored.items():
        assert s.scores.confusion == scored["RGB"].scores.confusion, kind
        assert s.scores.overall_accuracy == pytest.approx((pred == labels).mean()) and s.unknown == 0, kind
        assert s.report(CLASSES)["iou"] == scored["RGB"].report(CLASSES)["iou"], kind


def test_a_palette_mask_that_matches_neither_is_refused_in_one_line() -> None:
    img = Image.fromarray(np.where(truth() == 1, 9, 7).astype(np.uint8), mode="P")
    img.putpalette([1, 2, 3] * 8 + [4, 5, 6] * 248)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with pytest.raises(LabelMaskError) as err:
        score_labels(truth(), buf.getvalue(), CLASSES)
    msg = str(err.value)
    assert msg.startswith("the palette mask matches neither the classes' colours nor their indices: its colours "
                          "[1, 2, 3] (400 px), [4, 5, 6] (200 px)") and "\n" not in msg
    assert msg.endswith("(the model's classes: road, building, tree)")


# ------------------------------------------------------------------------------------------------ core.segment --labels
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random 3-class resnet18 DeepLabV3+ with the classes above."""
    import torch

    from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    path = tmp_path_factory.mktemp("ckpt") / "seg.safetensors"
    save_seg_checkpoint(path, build_seg_model(card).eval(), card)
    return path


def test_segment_labels_scores_each_image_into_its_report(checkpoint, tmp_path, capsys) -> None:
    import json

    from core.seg.segment_cli import main

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / name)
    base = ["--checkpoint", str(checkpoint), "--tile", "64", "--no-progress"]
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(tmp_path / "plain"), *base]) == 0
    assert json.loads((tmp_path / "plain" / "a_report.json").read_text())["label_score"] is None
    pred = {s: np.asarray(Image.open(tmp_path / "plain" / f"{s}_mask.png")) for s in "ab"}
    labels = truth()  # three classes in bands: the random model is right somewhere, wrong elsewhere
    masks = {f"a_{kind}": data for kind, data in mask_kinds(labels).items()}
    for kind, data in masks.items():
        (tmp_path / f"{kind}.png").write_bytes(data)
    order = ["a_RGB", "a_P", "a_L", "a_I;16"]
    images = [str(tmp_path / "a.png")] * len(order)
    capsys.readouterr()
    rc = main([*images, "--out", str(tmp_path / "scored"), *base, "--labels",
               *[str(tmp_path / f"{k}.png") for k in order]])
    out = capsys.readouterr()
    assert rc == 0, out.err
    lines = [line for line in out.out.splitlines() if line.startswith("  labels ")]
    accuracy = (pred["a"] == labels).mean()
    assert len(lines) == 4 and all(f"accuracy {100 * accuracy:.1f} %" in line for line in lines), lines
    # on screen too, under each score: not one of the model's scenes, which a crop would not be (it stood only in
    # the report: a review scored a crop of a training image at 78 % with no word)
    assert out.out.count(f"  note: the image is {NOT_RECOGNISED}\n") == 4, out.out
    reports = [json.loads((tmp_path / "scored" / f"{stem}_report.json").read_text())["label_score"]
               for stem in ("a", "a-2", "a-3", "a-4")]
    expect = score_labels(pred["a"], masks["a_RGB"], CLASSES)
    for kind, got in zip(order, reports):
        assert got["labels"].endswith(f"{kind}.png") and set(got["iou"]) == {"road", "building", "tree"}, kind
        assert got["miou"] == pytest.approx(expect.scores.miou) and got["accuracy"] == pytest.approx(accuracy), kind
        assert got["iou"] == reports[0]["iou"], kind
        assert got["scene_check"] == NOT_RECOGNISED, kind  # not one of the model's scenes, which a crop would not be
    assert [r["read_as"] for r in reports] == ["class colours", "class colours (palette)", "class indices",
                                               "class indices"]
    # "-": an image without a mask among images with one (a review passed "-" and got "cannot be read")
    rc = main([str(tmp_path / "b.png"), str(tmp_path / "a.png"), "--out", str(tmp_path / "mixed"), *base, "--labels",
               "-", str(tmp_path / "a_RGB.png")])
    out = capsys.readouterr()
    assert rc == 0 and not out.err, out.err
    assert [line for line in out.out.splitlines() if line.startswith("  labels ")] == [lines[0]]
    assert json.loads((tmp_path / "mixed" / "b_report.json").read_text())["label_score"] is None
    assert json.loads((tmp_path / "mixed" / "a_report.json").read_text())["label_score"]["miou"] == \
        pytest.approx(expect.scores.miou)


def test_segment_labels_refusals_are_one_line(checkpoint, tmp_path, capsys) -> None:
    from core.seg.segment_cli import main

    Image.fromarray(np.zeros((20, 30, 3), np.uint8) + 90).save(tmp_path / "a.png")
    base = ["--checkpoint", str(checkpoint), "--tile", "64", "--no-progress"]
    assert main([str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--out", str(tmp_path / "x"), *base,
                 "--labels", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert err == "error: --labels: 1 mask(s) for 2 image(s): give one mask per image, in the same order\n"
    assert not (tmp_path / "x").exists()  # refused before any work
    (tmp_path / "a-file").write_text("")
    assert main([str(tmp_path / "a.png"), "--out", str(tmp_path / "a-file"), *base]) == 2
    said = capsys.readouterr()
    assert said.err == f"error: --out {tmp_path / 'a-file'}: is a file, not a folder\n" and said.out == ""  # no model
    bad = Image.fromarray(np.full((20, 30), 7, np.uint8), mode="P")
    bad.putpalette([1, 2, 3] * 256)
    bad.save(tmp_path / "bad.png")
    png_small = tmp_path / "small.png"
    Image.fromarray(truth()[:10]).save(png_small)
    rc = main([str(tmp_path / "a.png")] * 3 + ["--out", str(tmp_path / "y"), *base, "--labels",
                                               str(tmp_path / "bad.png"), str(png_small), str(tmp_path / "none.png")])
    out = capsys.readouterr()
    assert rc == 1  # every image written; only masks refused (2 is kept for an image not written)
    errors = out.err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith(f"error: {tmp_path / 'a.png'}: labels ") for e in errors), errors
    assert "the palette mask matches neither the classes' colours nor their indices: its colours [1, 2, 3]" in errors[0]
    assert "must be the same size" in errors[1] and "cannot be read (No such file or directory)" in errors[2]
    assert "3 of 3 image(s) segmented" in out.out and "3 label mask(s) not scored" in out.out
    assert (tmp_path / "y" / "a-3_report.json").is_file()  # the segmentations are written all the same


def test_a_refused_mask_is_said_under_its_image_line(checkpoint, tmp_path, monkeypatch) -> None:
    """With 2>&1 the size refusal came before the line of the image it belongs to."""
    import core.seg.segment_cli as segment_cli

    Image.fromarray(np.zeros((20, 30, 3), np.uint8) + 90).save(tmp_path / "a.png")
    Image.fromarray(truth()[:10]).save(tmp_path / "small.png")
    said: list[str] = []
    monkeypatch.setattr(segment_cli, "say", lambda text, err=False: said.append(text))
    assert segment_cli.main([str(tmp_path / "a.png"), "--out", str(tmp_path / "y"), "--checkpoint", str(checkpoint),
                             "--tile", "64", "--no-progress", "--labels", str(tmp_path / "small.png")]) == 1
    image = next(i for i, line in enumerate(said) if line.startswith(f"{tmp_path / 'a.png'}: 30x20 pixels"))
    refused = next(i for i, line in enumerate(said) if "must be the same size" in line)
    assert image < refused, said


def test_a_huge_mask_of_the_wrong_size_is_refused_from_its_header(monkeypatch) -> None:
    """Issue 29: a 144 MP label mask of the wrong size was decoded whole (+560 MB) before the size check, and a 196 MP
    one failed with PIL's 'decompression bomb' text. The header decides now: nothing is decoded."""
    import io

    from PIL import Image

    from core.seg import label_score

    buf = io.BytesIO()
    Image.new("L", (12_000, 12_000)).save(buf, format="PNG")  # 144 MP of zeros: a small file
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or real_load(self))
    with pytest.raises(label_score.LabelMaskError, match="the label mask is 12000×12000 pixels, the image 64×64"):
        label_score.read_label_mask(buf.getvalue(), [{"name": "a"}, {"name": "b"}], (64, 64))
    assert decoded == []


def test_a_signed_32_bit_mask_with_negative_values_is_one_line_not_a_reshape_error() -> None:
    """Issue 29: an int32 mask holding -2 gave "shape '[6, 6]' is invalid for input of size 1529"."""
    out = io.BytesIO()
    Image.fromarray(np.full((6, 6), -2, np.int32)).save(out, format="TIFF")
    with pytest.raises(LabelMaskError, match=r"^the mask matches neither .* its values -2 \(36 px\)") as err:
        score_labels(np.zeros((6, 6), np.int64), out.getvalue(), CLASSES)
    assert "\n" not in str(err.value)
    half = np.full((6, 6), -2, np.int32)
    half[:3] = 1
    out = io.BytesIO()
    Image.fromarray(half).save(out, format="TIFF")
    scores = score_labels(np.ones((6, 6), np.int64), out.getvalue(), CLASSES)  # -2 beside classes: left out
    assert scores.scores.overall_accuracy == 1.0 and scores.unknown == 0.5 and scores.left_out == 0.5


def test_a_class_predicted_but_absent_from_the_mask_is_said_with_the_mean_over_the_masks_classes() -> None:
    """A few stray pixels of a class the mask lacks count as IoU 0 (the data-set convention) and can cost a per-image
    mIoU many points: the answer says so and gives the mean over the mask's own classes beside it."""
    labels = np.zeros((20, 30), np.uint8)
    labels[:, 15:] = 1  # road and building only
    pred = labels.copy()
    pred[0, :6] = 2  # 6 road pixels called tree
    scored = score_labels(pred, png(labels), CLASSES)
    assert scored.predicted_not_labeled(CLASSES) == [("tree", 6)]
    assert scored.scores.miou == pytest.approx((294 / 300 + 1.0 + 0.0) / 3)
    assert scored.miou_of_mask_classes() == pytest.approx((294 / 300 + 1.0) / 2)
    note = scored.absent_note(CLASSES)
    assert note.startswith("predicted but in no pixel of the mask: tree (6 px)") and "Over the 2 classes the mask " \
        f"holds, the mean IoU is {100 * (294 / 300 + 1) / 2:.1f} %." in note
    # the headline itself says it, not only the note below it (a reader stops at the first figure)
    assert scored.line().startswith(f"mIoU {100 * scored.scores.miou:.1f} % ({100 * (294 / 300 + 1) / 2:.1f} % over "
                                    "the 2 classes the mask holds), accuracy ")
    report = scored.report(CLASSES, "m.png")
    assert report["predicted_not_in_mask"] == {"tree": 6}
    assert report["miou_of_mask_classes"] == pytest.approx(scored.miou_of_mask_classes())
    clean = score_labels(labels, png(labels), CLASSES)
    assert clean.absent_note(CLASSES) is None and clean.report(CLASSES)["predicted_not_in_mask"] == {}
    assert clean.mask_classes_words() == "" and clean.line().startswith("mIoU 100.0 %, accuracy")


def test_a_mask_of_another_data_set_is_refused_not_scored_as_this_models_classes() -> None:
    """The review kept a Dubai mask through a switch to the DeepGlobe model: DeepGlobe's on/off-at-128 rule read
    Dubai's colours as DeepGlobe classes and scored 1.4 % with nothing left out. A channel between 64 and 192 is now
    no class's, and a mask mostly of no class is refused in one line."""
    deepglobe = [{"name": "urban", "color": [0, 255, 255]}, {"name": "agriculture", "color": [255, 255, 0]},
                 {"name": "barren", "color": [255, 255, 255]}]
    rule = {"threshold": True}
    labels = truth()
    own = np.asarray([c["color"] for c in deepglobe], np.uint8)[labels]
    noisy = own.copy()
    noisy[0] = np.where(noisy[0] > 0, 250, 4)  # a compressed mask's noise stays its class
    assert score_labels(labels, png(noisy), deepglobe, rule=rule).scores.miou == 1.0
    dubai = np.asarray([(60, 16, 152), (132, 41, 246), (254, 221, 58)], np.uint8)[labels]  # its vegetation: on/off
    with pytest.raises(LabelMaskError, match=r"67 % of the label mask's pixels are of no class of this model as "
                                             r"class colours \(e.g. \[.*\]\): is it a mask of another data set\?"):
        score_labels(labels, png(dubai), deepglobe, rule=rule)
    partly = own.copy()
    partly[:5] = (60, 16, 152)  # a quarter of no class: scored, the rest said
    result = score_labels(labels, png(partly), deepglobe, rule=rule)
    assert result.unknown == pytest.approx(0.25) and result.scores.miou == 1.0


def test_a_lossy_copy_of_a_mask_is_named_as_such_and_the_share_of_no_class_is_said() -> None:
    """The review saved a Dubai mask as JPEG: its colours lie a level or two off the class colours, and the refusal
    asked whether it was another data set's mask. It now names the near class colour and asks for the PNG; a mask
    partly of no class says that share in the command line's line too, as the page and the Gradio demo do."""
    labels = truth()
    colours = np.asarray([c["color"] for c in CLASSES], np.uint8)
    off = colours[labels].astype(np.int16)
    off[:, :] += np.asarray([-1, 2, 1], np.int16)  # every colour a level or two off
    with pytest.raises(LabelMaskError, match=r"level\(s\) off the class colour \[.*\]( of \w+)?: a lossy copy such as "
                                             r"a "
                                             r"JPEG, or an edited colour\? Give the mask as PNG"):
        score_labels(labels, png(np.clip(off, 0, 255).astype(np.uint8)), CLASSES)
    partly = colours[labels].copy()
    partly[:4] = (90, 40, 160)  # a fifth of no class, far from every class colour: scored, the rest said
    result = score_labels(labels, png(partly), CLASSES)
    assert result.line().endswith("; 20.0 % left out; 20.0 % of the mask's pixels are no class of this model)")
    assert "of no class" not in score_labels(labels, png(colours[labels]), CLASSES).line()
    report = result.report(CLASSES)  # every class held: the two means are one number, to the last bit
    assert report["miou"] == report["miou_of_mask_classes"]


def test_a_class_colour_a_level_off_is_refused_not_scored_as_absent() -> None:
    """A mask whose building colour was one level off was scored with building "in no pixel of the mask": the
    mIoU was wrong and the report untrue. From 1 % of the pixels on, such a colour is refused, naming the class."""
    labels = truth()
    colours = np.asarray([c["color"] for c in CLASSES], np.uint8)[labels]
    colours[labels == 1] = (0, 1, 254)  # building's colour, a level off
    with pytest.raises(LabelMaskError, match=r"33.3 % of the label mask's pixels .*\[0, 1, 254\] is 1 level\(s\) off "
                                             r"the class colour \[0, 0, 255\] of building.* counted as absent"):
        score_labels(labels, png(colours), CLASSES)
    big = np.repeat(np.repeat(labels, 10, 0), 10, 1)  # 0.5 % of the pixels off: scored, and the hint said
    stray = np.asarray([c["color"] for c in CLASSES], np.uint8)[big]
    stray[:30, :10] = (0, 1, 254)
    result = score_labels(big, png(stray), CLASSES)
    assert result.unknown == pytest.approx(0.005) and "1 level(s) off the class colour [0, 0, 255] of building" in \
        result.unknown_note() and result.report(CLASSES)["unknown_note"] == result.unknown_note()
    stray[30:60, :10] = (90, 40, 160)  # 0.5 % near, 0.5 % far: only the near colours count towards a refusal
    assert score_labels(big, png(stray), CLASSES).unknown == pytest.approx(0.01)
    soft = np.asarray([c["color"] for c in CLASSES], np.uint8)[big]
    soft[:, 99:102] = (0, 2, 253)  # soft edges a level or two off building, which is there in its own colour: scored
    assert score_labels(big, png(soft), CLASSES).unknown == pytest.approx(0.01)


def test_an_index_mask_one_past_the_last_class_says_it_may_count_from_one() -> None:
    """LoveDA-style masks count classes from 1 (0 unlabeled): read as 0-based they score garbage, while a value n
    that means unlabeled (the Dubai set's sixth class) reads right; the line says both, the user knows which."""
    labels = truth() + 1
    labels[:2] = 0
    result = score_labels(truth(), png(labels.astype(np.uint8)), CLASSES)
    assert "(value 3, one past the last class index 2: right if 3 means unlabeled; if the mask counts the classes " \
           "from 1, with 0 unlabeled, subtract 1 from it first)" in result.line()
    assert "one past" not in (score_labels(truth(), png(np.full((20, 30), 7, np.uint8) * (truth() == 0)
                                                        + truth()), CLASSES).unknown_note() or "")


def test_a_palette_mask_of_another_class_set_is_refused_not_scored_by_its_indices() -> None:
    """A Dubai-style mask (class colours in a palette, any order) scored against a model of other classes: its
    indices 0-2 are valid indices of this model by chance; read as such it scored 14 % against the DeepGlobe model."""
    from core.seg.label_score import read_label_mask

    other = [{"name": "water", "color": [226, 169, 41]}, {"name": "land", "color": [132, 41, 246]},
             {"name": "road", "color": [110, 193, 228]}, {"name": "unlabeled", "color": [155, 155, 155]}]
    img = Image.fromarray(truth(), mode="P")
    shuffled = [other[2]["color"], other[0]["color"], other[1]["color"]]  # the file's own order
    img.putpalette([v for c in shuffled for v in c] + [0] * (3 * 253))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    with pytest.raises(LabelMaskError, match=r"class colours of dubai_like \(water, land, road, unlabeled\) on 100 %"):
        read_label_mask(buf.getvalue(), CLASSES, (20, 30), known=[("dubai_like", other)])
    # without that class set known, the same file is a palette of indices, as before
    labels, how, _, _ = read_label_mask(buf.getvalue(), CLASSES, (20, 30), known=[])
    assert how == "class indices (palette)" and np.array_equal(labels, truth())


def test_the_models_own_mask_download_still_reads_as_indices_beside_the_shipped_class_sets() -> None:
    """The Segment page's mask download (indices in display colours) reads back against every shipped model."""
    from core.seg.label_score import read_label_mask
    from core.seg.segmentation_result import palette_png
    from core.store.catalog import shipped_class_sets

    sets = shipped_class_sets()
    assert {name for name, _ in sets} >= {"dubai_seg", "deepglobe_seg"}
    for name, classes in sets:
        mask = (np.arange(20 * 30).reshape(20, 30) % len(classes)).astype(np.uint8)
        labels, _, _, _ = read_label_mask(palette_png(mask, classes), classes, mask.shape)
        assert np.array_equal(labels, mask), name


def test_a_mask_of_another_size_is_refused_from_the_two_headers(tmp_path) -> None:
    """Before any segmenting; either orientation passes (a photo's EXIF turn is applied on reading)."""
    from core.seg.label_score import check_label_mask_size

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "image.png")
    for name, shape in (("same.png", (20, 30)), ("turned.png", (30, 20)), ("half.png", (10, 15))):
        Image.fromarray(np.zeros(shape, np.uint8)).save(tmp_path / name)
    check_label_mask_size(tmp_path / "same.png", tmp_path / "image.png")
    check_label_mask_size(tmp_path / "turned.png", tmp_path / "image.png")
    with pytest.raises(LabelMaskError, match="the label mask is 15×10 pixels, the image 30×20"):
        check_label_mask_size(tmp_path / "half.png", tmp_path / "image.png")
    (tmp_path / "not.png").write_text("no image")  # a text file, or no file: said at once too
    with pytest.raises(LabelMaskError, match=r"the label mask is not an image \(unknown or unsupported format\)"):
        check_label_mask_size(tmp_path / "not.png", tmp_path / "image.png")
    with pytest.raises(LabelMaskError, match="the label mask cannot be read"):
        check_label_mask_size(tmp_path / "gone.png", tmp_path / "image.png")
    check_label_mask_size(tmp_path / "half.png", tmp_path / "not.png")  # an image that is none: its own read says so


def test_the_shared_report_names_the_model_by_its_file_and_keeps_the_score() -> None:
    """The page's and the demo's report download: the server's folders stay out, the label score goes in."""
    import json

    from core.seg.segmentation_result import Segmentation, shared_report

    seg = Segmentation(rgb=np.zeros((2, 2, 3), np.uint8), mask=np.zeros((2, 2), np.uint8),
                       classes=[{"name": "a", "color": [1, 2, 3]}],
                       areas=[{"name": "a", "pixels": 4, "percent": 100.0, "square_metres": None}],
                       model={"name": "m", "how": "given", "why": "asked",
                              "path": "/srv/secret/runs/x/best.safetensors"},
                       label_score={"miou": 0.5, "accuracy": 0.75, "iou": {"a": 0.5}})
    report = json.loads(shared_report(seg, "tile.png"))
    assert report["model"]["path"] == "best.safetensors" and report["image"] == "tile.png"
    assert report["label_score"]["miou"] == 0.5 and report["areas"][0]["pixels"] == 4
    assert seg.report("tile.png")["model"]["path"].startswith("/srv/secret")  # the CLI's own file keeps it
