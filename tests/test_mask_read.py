"""One rule for what a label mask means (``core.data.mask_read``), and the data loaders that read by it: class indices
(8- and 16-bit), class colours, palette PNGs with the class colours in another order per file (equal to their RGB
twins), and a palette that matches neither, refused in one line. Fixtures are made in tmp_path."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.labeled import FolderSeg
from core.data.mask_read import MaskError, MaskTable, decode_image, read_mask
from core.data.paths import DataError

H, W = 40, 48
COLOURS = [[60, 16, 152], [132, 41, 246], [110, 193, 228], [254, 221, 58]]  # the Dubai set's first four
CLASSES = [{"name": n, "color": c} for n, c in zip(["building", "land", "road", "vegetation"], COLOURS)]
UNLABELED = [155, 155, 155]
TABLE = MaskTable.of_classes(CLASSES, ignore_colors=(tuple(UNLABELED),))


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))


def truth(seed: int = 0) -> np.ndarray:
    """Class indices with patches of every class and an unlabeled corner (255)."""
    lab = np.zeros((H, W), np.uint8)
    lab[:, 12:] = 1
    lab[10:30, 20:40] = 2
    lab[30:, :24] = 3
    lab[:4, :4] = 255
    return np.roll(lab, 5 * seed, axis=1)


def rgb_of(labels: np.ndarray) -> np.ndarray:
    return np.asarray(COLOURS + [UNLABELED] * (256 - len(COLOURS)), np.uint8)[labels]


def shuffled_palette(labels: np.ndarray, seed: int) -> Image.Image:
    """The class colours (and the unlabeled grey) in a palette of a seeded order, as the Dubai set's palette PNGs."""
    colours = COLOURS + [UNLABELED]
    order = np.random.default_rng(seed).permutation(len(colours))  # palette entry j holds colours[order[j]]
    entry_of = np.argsort(order)
    img = Image.fromarray(entry_of[np.where(labels == 255, len(COLOURS), labels)].astype(np.uint8), mode="P")
    img.putpalette([v for j in order for v in colours[j]])
    return img


def neither() -> Image.Image:
    """A palette PNG whose colours are no class's and whose indices are no class index."""
    img = Image.fromarray(np.where(truth() == 1, 9, 7).astype(np.uint8), mode="P")
    img.putpalette([10, 20, 30] * 8 + [200, 10, 10, 10, 200, 10] + [0, 0, 0] * 246)
    return img


def mask_image(kind: str, labels: np.ndarray, seed: int = 0) -> Image.Image:
    if kind == "L":
        return Image.fromarray(labels, mode="L")
    if kind == "RGB":
        return Image.fromarray(rgb_of(labels))
    if kind == "P":
        return shuffled_palette(labels, seed)
    if kind == "I;16":
        img = Image.fromarray(labels.astype(np.uint16))
        assert img.mode == "I;16"
        return img
    raise ValueError(kind)


KINDS = ["L", "RGB", "P", "I;16"]


# ------------------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_mask_reads_as_its_classes(kind):
    decoded = decode_image(mask_image(kind, truth(), seed=1), TABLE)
    assert np.array_equal(decoded.labels, truth()) and decoded.labels.dtype == np.uint8
    assert decoded.unknown == 0
    assert decoded.how == {"L": "class indices", "RGB": "class colours", "P": "class colours (palette)",
                           "I;16": "class indices"}[kind]


def test_palettes_in_any_order_read_as_their_rgb_twins():
    twin = decode_image(mask_image("RGB", truth()), TABLE).labels
    for seed in range(6):  # another palette order per file; seed 0 happens to keep every index a class index
        img = shuffled_palette(truth(), seed)
        labeled = truth() != 255
        assert not np.array_equal(np.asarray(img)[labeled], truth()[labeled])  # the raw indices are not the classes
        assert np.array_equal(decode_image(img, TABLE).labels, twin)  # ... the colours are


def test_a_mostly_unlabeled_palette_reads_by_its_colours_even_where_the_table_knows_no_unlabeled_colour():
    """A model card made before ``label_masks`` knows only the class colours: the Dubai grey is then unknown. A palette
    of it, 60 % grey, whose indices all happen to be class indices, must still read by its colours (not fall back to
    the indices), and with the card's rule the grey is ignored quietly."""
    labels = truth()
    labels[:, : W * 6 // 10] = 255  # 60 % unlabeled
    twin = decode_image(mask_image("RGB", labels), TABLE)
    bare = MaskTable.of_classes(CLASSES)  # no ignore colours
    for seed in range(6):
        img = shuffled_palette(labels, seed)
        for table in (TABLE, bare):
            decoded = decode_image(img, table)
            assert decoded.how == "class colours (palette)" and np.array_equal(decoded.labels, twin.labels)
        assert decode_image(img, bare).unknown == int((labels == 255).sum()) and decode_image(img, TABLE).unknown == 0


def test_a_card_carries_its_data_sets_mask_rule():
    from core.data.mask_read import card_table, label_masks_of, mask_rule

    class Set:
        def mask_table(self) -> MaskTable:
            return TABLE

    rule = label_masks_of(Set())["label_masks"]
    assert rule == mask_rule(TABLE) == {"ignore_colors": [UNLABELED], "threshold": False, "tolerance": 0}
    assert card_table(CLASSES, 255, rule) == TABLE and card_table(CLASSES, 255, None) == MaskTable.of_classes(CLASSES)
    assert label_masks_of(object()) == {}  # a generated set has no masks to read
    assert card_table(CLASSES, 255, {"ignore_colors": "x", "tolerance": 500, "threshold": "yes"}) == \
        MaskTable.of_classes(CLASSES)  # a damaged rule reads as none


def test_a_palette_that_matches_neither_is_refused_in_one_line():
    with pytest.raises(MaskError) as err:
        decode_image(neither(), TABLE)
    msg = str(err.value)
    assert msg.startswith("the palette mask matches neither the classes' colours nor their indices: ")
    assert "its colours [10, 20, 30] (1,000 px), [10, 200, 10] (920 px) are no class's" in msg and "\n" not in msg
    assert "indices 7 (" in msg and "9 (" in msg


def test_a_few_stray_colours_in_a_class_palette_are_counted_not_refused():
    """A palette of class colours whose indices happen to be class indices too: its colours win, even with a stray
    colour (which its RGB twin would have as well)."""
    rgb = rgb_of(truth())
    rgb[20, 20] = (1, 2, 3)
    img = Image.fromarray(rgb).quantize(colors=8, method=Image.Quantize.MAXCOVERAGE)
    assert (np.asarray(img) < len(COLOURS)).mean() > 0.5  # read as indices, most pixels would be "classes"
    decoded = decode_image(img, TABLE)
    assert decoded.how == "class colours (palette)" and decoded.unknown == 1 and decoded.example == [1, 2, 3]
    expect = truth()
    expect[20, 20] = 255
    assert np.array_equal(decoded.labels, expect)


def test_a_palette_of_indices_in_other_colours_reads_as_indices():
    """The Segment page's own mask download: class indices, drawn in display colours, no data at 255."""
    from core.seg.infer import palette

    shown = [{**c, "display": [20 * k, 99, 99]} for k, c in enumerate(CLASSES)]
    img = Image.fromarray(truth(), mode="P")
    img.putpalette(palette(shown).reshape(-1).tolist())
    decoded = decode_image(img, TABLE)
    assert decoded.how == "class indices (palette)" and np.array_equal(decoded.labels, truth())


def test_grey_masks_of_a_colour_coded_set_are_colours_first():
    """A building/background set published as 0/255 greyscale, declared colour-coded: 255 is white, a class."""
    table = MaskTable(((0, 0, 0), (255, 255, 255)), coding="color")
    grey = np.where(truth() == 1, 255, 0).astype(np.uint8)
    decoded = decode_image(Image.fromarray(grey, mode="L"), table)
    assert decoded.how == "class colours (grey)" and np.array_equal(decoded.labels, (grey > 0).astype(np.uint8))
    # the same file for a set of indices: 255 is the ignore index
    assert decode_image(Image.fromarray(grey, mode="L"), MaskTable(((0, 0, 0), (255, 255, 255)))).how == \
        "class indices"


def test_grey_rgb_masks_of_an_index_set_read_as_indices():
    grey = np.repeat(truth()[..., None], 3, axis=2)
    decoded = decode_image(Image.fromarray(grey), TABLE)
    assert decoded.how == "class indices (grey)" and np.array_equal(decoded.labels, truth())


def test_index_values_unknown_values_and_no_pixel_of_any_class():
    table = MaskTable.of_classes(CLASSES, values=(10, 20, 30, 40), ignore_values=(0,), coding="index")
    raw = np.asarray([10, 20, 30, 40, 255], np.uint16)[np.where(truth() == 255, 4, truth())]
    raw[0, :3] = 0  # ignored quietly
    raw[-1, -2:] = 7  # no class: counted
    decoded = decode_image(Image.fromarray(raw), table)
    expect = truth()
    expect[0, :3] = 255
    expect[-1, -2:] = 255
    assert np.array_equal(decoded.labels, expect) and decoded.unknown == 2 and decoded.example == 7
    with pytest.raises(MaskError, match=r"matches none of the classes' colours: its colours \[1, 2, 3\]"):
        decode_image(Image.fromarray(np.full((H, W, 3), (1, 2, 3), np.uint8)), TABLE)


# ------------------------------------------------------------------------------------------------ the loaders
TABLE_YAML = """
classes:
{classes}
ignore_index: 255
ignore_colors: [[155, 155, 155]]
mask_format: {fmt}
"""


def folder_set(root: Path, kinds: list[str], fmt: str) -> Path:
    """images/ + masks/ of one scene per kind (each its own labels), and its class table."""
    for k, kind in enumerate(kinds):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            root / "images" / f"s{k}.png")
        mask_image(kind, truth(k), seed=k + 1).save(root / "masks" / f"s{k}.{'tif' if kind == 'I;16' else 'png'}")
    table = root.parent / f"{root.name}.yaml"
    table.write_text(TABLE_YAML.format(classes="\n".join(f"  - {{name: {c['name']}, color: {c['color']}}}"
                                                         for c in CLASSES), fmt=fmt))
    return table


@pytest.mark.parametrize("fmt", ["index", "color"])
def test_a_folder_set_reads_every_kind_of_mask_by_meaning(tmp_path, fmt):
    """An index-coded set whose masks are palette PNGs of class colours reads their colours, not their indices; a
    colour-coded one reads index masks as indices; both by the one rule, tiles and whole scenes (core.evaluate's)."""
    root = tmp_path / fmt
    table = folder_set(root, KINDS, fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pixel of unknown colour or value
        ds = FolderSeg(root, table, tile_size=16, progress=False)
    for k, kind in enumerate(KINDS):
        scene = ds.scene_names.index(f"s{k}")
        _, labels = ds.scene_arrays(scene)
        assert np.array_equal(labels, truth(k)), kind
        for i in np.flatnonzero(ds.scene_ids == scene):  # the cached tiles hold the same
            x, y = ds.tile_info(i)["x"], ds.tile_info(i)["y"]
            assert np.array_equal(ds.masks[i], truth(k)[y:y + 16, x:x + 16]), kind
    from core.data.mask_read import label_masks_of  # what a model fine-tuned on it states on its card

    assert label_masks_of(ds) == {"label_masks": {"ignore_colors": [UNLABELED], "threshold": False, "tolerance": 0}}


def test_a_palette_scene_tiles_as_its_rgb_twin(tmp_path):
    pal = FolderSeg(tmp_path / "pal", folder_set(tmp_path / "pal", ["P", "P", "P"], "index"), tile_size=16,
                    progress=False)
    rgb = FolderSeg(tmp_path / "rgb", folder_set(tmp_path / "rgb", ["RGB", "RGB", "RGB"], "index"), tile_size=16,
                    progress=False)
    assert np.array_equal(np.asarray(pal.masks), np.asarray(rgb.masks))


def test_a_folder_set_refuses_a_palette_mask_that_matches_neither_in_one_line(tmp_path):
    root = tmp_path / "bad"
    table = folder_set(root, ["RGB", "P"], "index")
    neither().resize((W, H)).save(root / "masks" / "s1.png")
    with pytest.raises(DataError) as err:
        FolderSeg(root, table, tile_size=16, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"mask {root / 'masks' / 's1.png'}: the palette mask matches neither the classes' colours "
                          "nor their indices: its colours [") and "\n" not in msg
    assert read_mask(root / "masks" / "s0.png", TABLE).how == "class colours"


def test_index_sets_tile_anew_under_the_new_rule(tmp_path):
    """Their palette masks were cached as raw indices before: the rule is part of their cache key."""
    table = folder_set(tmp_path / "i", ["L"], "index")
    ds = FolderSeg(tmp_path / "i", table, tile_size=16, progress=False)
    assert ds.cache_params()["mask_rule"] == 2
    table.write_text(table.read_text().replace("mask_format: index", "mask_format: color"))
    assert "mask_rule" not in FolderSeg(tmp_path / "i", table, tile_size=16, progress=False).cache_params()
