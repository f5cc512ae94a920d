"""Labeled segmentation data sets in their published layouts, splits, label fractions and SegAugment.

Every fixture is a tiny copy of a real layout (100 x 90 px scenes, 32 px tiles) built with PIL in tmp_path.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import ConfigError, DataConfig, FinetuneConfig, SegDataConfig, load_config
from core.data.augment import IMAGENET_MEAN, IMAGENET_STD
from core.data.labeled import (DeepGlobe, FolderSeg, LoveDA, Potsdam, SegTiles, SyntheticSeg, Vaihingen,
                               build_seg_splits, label_subset, load_class_table)
from core.data.paths import DataError
from core.data.protocols import LabeledTiles, SceneTiles, TileSet
from core.data.seg_augment import SegAugment, eval_transform, jitter_strengths

H, W, T = 90, 100, 32
ISPRS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
DG = [(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))


def labels(seed: int = 0, n_cls: int = 6) -> np.ndarray:
    """A label map with known patches of every class (shifted per scene)."""
    lab = np.zeros((H, W), np.uint8)
    lab[:40, :50] = 1
    lab[40:, 50:] = 3 % n_cls
    lab[10:20, 60:70] = 4 % n_cls
    lab[70:, :20] = 5 % n_cls
    lab[45:60, :40] = 2
    return np.roll(lab, 7 * seed, axis=1)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def colour(lab: np.ndarray, palette) -> np.ndarray:
    return np.asarray(palette, np.uint8)[lab]


def save(arr: np.ndarray, path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def reassemble(ds, scene: str, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """A scene put back together from its tiles; asserts every pixel is covered."""
    img = np.zeros((h, w, 3), np.int64) - 1
    lab = np.zeros((h, w), np.int64) - 1
    for i in range(len(ds)):
        info = ds.tile_info(i)
        if info["scene"] != scene:
            continue
        x, y, item = info["x"], info["y"], ds[i]
        img[y:y + T, x:x + T] = item["image"].permute(1, 2, 0).numpy()[:h - y, :w - x]
        lab[y:y + T, x:x + T] = item["mask"].numpy()[:h - y, :w - x]
    assert (lab >= 0).all() and (img >= 0).all(), f"{scene}: tiles do not cover the scene"
    return img, lab


# ------------------------------------------------------------------------------------------------ Potsdam
@pytest.fixture
def potsdam(tmp_path):
    root = tmp_path / "potsdam"
    for k, sid in enumerate(["2_10", "2_11", "3_10", "3_11", "2_13"]):
        save(image(k), root / "2_Ortho_RGB" / f"top_potsdam_{sid}_RGB.tif")
        lab = colour(labels(k), ISPRS)
        save(lab, root / "5_Labels_all" / f"top_potsdam_{sid}_label.tif")
        lab[40] = 0  # the eroded boundary band
        save(lab, root / "5_Labels_all_noBoundary" / f"top_potsdam_{sid}_label_noBoundary.tif")
    (root / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tfw").write_text("world file")  # ignored
    return root


def test_potsdam_tiles_cover_scenes_and_decode(potsdam, tmp_path):
    ds = Potsdam(potsdam, tile_size=T, progress=False)
    assert len(ds) == 5 * 4 * 3  # columns 0 32 64 68, rows 0 32 58 (edge-aligned)
    assert ds.cache_dir.parent == tmp_path / "data" / "cache" and ds.cache_dir.name.startswith("potsdam-")
    assert {p.name for p in ds.cache_dir.iterdir() if not p.name.startswith(".reader-")} == {
        "images.npy", "masks.npy", "counts.npy", "meta.json", "identity"}
    assert [c["name"] for c in ds.classes][:2] == ["impervious surfaces", "building"] and ds.ignore_index == 255
    img, lab = reassemble(ds, "top_potsdam_3_10")
    assert np.array_equal(lab, labels(2)) and np.array_equal(img, image(2))
    item = ds[5]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, T, T)
    assert item["mask"].dtype == torch.long and item["mask"].shape == (T, T) and item["index"] == 5
    assert torch.equal(ds.get_images([5, 1])[0], item["image"]) and torch.equal(ds.get_masks([1, 5])[1], item["mask"])
    m = item["mask"].numpy()
    assert ds.dominant_class(5) == np.bincount(m.ravel()).argmax()
    assert set(ds.meta["tile_split"]) == {"train", "test"}
    assert {ds.tile_info(i)["split"] for i in range(len(ds)) if ds.tile_info(i)["scene"] == "top_potsdam_2_13"} \
        == {"test"}
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5]["mask"], item["mask"])


def test_potsdam_eroded_black_is_ignored(potsdam):
    ds = Potsdam(potsdam, tile_size=T, eroded=True, progress=False)
    _, lab = reassemble(ds, "top_potsdam_2_10")
    expect = labels(0).astype(np.int64)
    expect[40] = 255
    assert np.array_equal(lab, expect)


def test_potsdam_unknown_colours_warn_and_ignore(potsdam):
    lab = colour(labels(0), ISPRS)
    lab[0:3, 0:4] = (255, 0, 255)  # magenta: not a Potsdam class
    lab[5, 5] = (250, 3, 252)  # thresholded to magenta too
    save(lab, potsdam / "5_Labels_all" / "top_potsdam_2_10_label.tif")
    with pytest.warns(UserWarning, match=r"Potsdam: 13 mask pixels in 1 file.*not in the class table.*ignore"):
        ds = Potsdam(potsdam, tile_size=T, progress=False)
    _, got = reassemble(ds, "top_potsdam_2_10")
    assert (got[0:3, 0:4] == 255).all() and got[5, 5] == 255 and got[10, 10] == 1
    with pytest.warns(UserWarning, match="13 mask pixels"):  # the cached load says it again
        Potsdam(potsdam, tile_size=T, progress=False)


def test_potsdam_layout_errors(potsdam, tmp_path):
    with pytest.raises(DataError, match="Potsdam: data set folder not found"):
        Potsdam(tmp_path / "nowhere")
    (tmp_path / "file.zip").write_bytes(b"")
    with pytest.raises(DataError, match="Potsdam: data.root is a file, not the data set's folder"):
        Potsdam(tmp_path / "file.zip")
    (potsdam / "5_Labels_all" / "top_potsdam_2_10_label.tif").unlink()
    with pytest.raises(DataError, match=r"Potsdam: no label image for top_potsdam_2_10_RGB.tif in .*5_Labels_all"):
        Potsdam(potsdam, tile_size=T, progress=False)
    (potsdam / "5_Labels_all").rename(potsdam / "labels")
    with pytest.raises(DataError, match="Potsdam: no labels folder in .*5_Labels_all or 5_Labels_for_participants"):
        Potsdam(potsdam, tile_size=T, progress=False)
    empty = tmp_path / "empty"
    (empty / "2_Ortho_RGB").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Potsdam: no top_potsdam_\*_RGB.tif images in .*2_Ortho_RGB"):
        Potsdam(empty)


def test_potsdam_participants_release_without_test_labels(potsdam):
    (potsdam / "5_Labels_all").rename(potsdam / "5_Labels_for_participants")
    (potsdam / "5_Labels_for_participants" / "top_potsdam_2_13_label.tif").unlink()
    with pytest.warns(UserWarning, match="no labels for 1 test scene"):
        splits = build_seg_splits(SegDataConfig(name="potsdam", root=str(potsdam), tile_size=T, test_fraction=0.25,
                                                val_fraction=0.25), progress=False)
    assert "top_potsdam_2_13" not in sum(splits.scenes.values(), [])
    assert len(splits.scenes["test"]) == 1 and len(splits.scenes["val"]) == 1 and len(splits.scenes["train"]) == 2


def test_potsdam_standard_split_by_scene(potsdam):
    cfg = SegDataConfig(name="potsdam", root=str(potsdam), tile_size=T, tile_overlap=8, val_fraction=0.25)
    s = build_seg_splits(cfg, progress=False)
    assert s.scenes["test"] == ["top_potsdam_2_13"] and len(s.scenes["val"]) == 1 and len(s.scenes["train"]) == 3
    seen = {}
    for part in ("train", "val", "test"):
        view = getattr(s, part)
        for i in range(len(view)):
            seen.setdefault(view.tile_info(i)["scene"], set()).add(part)
    assert all(len(v) == 1 for v in seen.values()) and len(seen) == 5  # no scene in two splits
    assert s.train.classes == s.dataset.classes and s.name == "potsdam" and s.ignore_index == 255
    # the interface the engine types its parameters with (core.data.protocols)
    assert all(isinstance(x, SceneTiles) for x in (s.dataset, s.train, s.val, s.test))
    assert not isinstance(object(), TileSet) and not isinstance(np.zeros(3), LabeledTiles)
    again = build_seg_splits(cfg, progress=False)
    assert again.scenes == s.scenes and np.array_equal(again.train.indices, s.train.indices)


# ------------------------------------------------------------------------------------------------ Vaihingen
def test_vaihingen_layout_and_test_areas(tmp_path):
    root = tmp_path / "vaihingen"
    for k, area in enumerate([1, 2, 3, 5, 11]):
        save(image(k), root / "top" / f"top_mosaic_09cm_area{area}.tif")
        save(colour(labels(k), ISPRS), root / "gts_for_participants" / f"top_mosaic_09cm_area{area}.tif")
    ds = Vaihingen(root, tile_size=T, progress=False)
    img, lab = reassemble(ds, "area3")
    assert np.array_equal(lab, labels(2)) and np.array_equal(img, image(2))  # IRRG bands kept as they are
    s = build_seg_splits(SegDataConfig(name="vaihingen", root=str(root), tile_size=T, val_fraction=0.25),
                         progress=False)
    assert s.scenes["test"] == ["area2"] and "area2" not in s.scenes["train"] + s.scenes["val"]
    with pytest.raises(DataError, match="Vaihingen: no eroded-boundary labels folder .*gts_eroded_for_participants"):
        Vaihingen(root, tile_size=T, eroded=True, progress=False)


# ------------------------------------------------------------------------------------------------ DeepGlobe
def test_deepglobe_threshold_unknown_and_seeded_split(tmp_path):
    root = tmp_path / "dg"
    for k in range(5):
        save(image(k), root / "train" / f"{100 + k}_sat.jpg", quality=95)
        lab = colour(labels(k), DG)
        lab[lab == 255] = 250  # JPEG-ish noise: still read as on at 128
        lab[:, :3] = 0  # unknown -> ignore, quietly
        save(lab, root / "train" / f"{100 + k}_mask.png")
    save(image(9), root / "valid" / "900_sat.jpg")  # the challenge's valid/ has no masks
    with pytest.warns(UserWarning, match="DeepGlobe: 1 folder.* without masks left out"):
        ds = DeepGlobe(root, tile_size=T, progress=False)
    _, lab = reassemble(ds, "train/101")
    expect = labels(1).astype(np.int64)
    expect[:, :3] = 255
    assert np.array_equal(lab, expect)
    assert [c["name"] for c in ds.classes] == ["urban_land", "agriculture_land", "rangeland", "forest_land",
                                               "water", "barren_land"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = SegDataConfig(name="deepglobe", root=str(root), tile_size=T, val_fraction=0.2, test_fraction=0.2)
        a = build_seg_splits(cfg, progress=False)
        b = build_seg_splits(cfg, progress=False)
        others = [build_seg_splits(cfg.model_copy(update=dict(seed=k)), progress=False).scenes for k in (1, 2, 3)]
    assert a.scenes == b.scenes and [len(a.scenes[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert np.array_equal(a.val.indices, b.val.indices)
    assert any(o != a.scenes for o in others)  # the seed decides


def test_deepglobe_given_splits_and_errors(tmp_path):
    root = tmp_path / "dg"
    for k, split in enumerate(["train", "train", "train", "valid", "test"]):
        save(image(k), root / split / f"{k}_sat.jpg")
        save(colour(labels(k), DG), root / split / f"{k}_mask.png")
    s = build_seg_splits(SegDataConfig(name="deepglobe", root=str(root), tile_size=T), progress=False)
    assert s.scenes == {"train": ["train/0", "train/1", "train/2"], "val": ["valid/3"], "test": ["test/4"]}
    (root / "train" / "1_mask.png").unlink()
    with pytest.raises(DataError, match=r"DeepGlobe: no label image for 1_sat.jpg in .*train"):
        DeepGlobe(root, tile_size=T, progress=False)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"DeepGlobe: no \*_sat.jpg images in .*none"):
        DeepGlobe(tmp_path / "none")


# ------------------------------------------------------------------------------------------------ LoveDA
def test_loveda_index_masks_splits_and_skipped_test(tmp_path):
    root = tmp_path / "loveda"
    k = 0
    for split, n in (("Train", 3), ("Val", 1)):
        for domain in ("Urban", "Rural"):
            for j in range(n):
                save(image(k), root / split / domain / "images_png" / f"{k}.png")
                m = labels(k, n_cls=7).astype(np.uint8) + 1  # 1..7
                m[:2] = 0  # no data
                save(m, root / split / domain / "masks_png" / f"{k}.png")
                k += 1
    save(image(99), root / "Test" / "Urban" / "images_png" / "99.png")  # no masks: skipped
    ds = LoveDA(root, tile_size=T, progress=False)
    assert len(ds) == 8 * 12 and [c["name"] for c in ds.classes][:3] == ["background", "building", "road"]
    _, lab = reassemble(ds, "Train/Urban/0")
    expect = labels(0, n_cls=7).astype(np.int64)
    expect[:2] = 255
    assert np.array_equal(lab, expect)
    s = build_seg_splits(SegDataConfig(name="loveda", root=str(root), tile_size=T, test_fraction=0.2), progress=False)
    assert s.scenes["val"] == ["Val/Rural/7", "Val/Urban/6"]
    assert len(s.scenes["test"]) == 1 and s.scenes["test"][0].startswith("Train/")
    (root / "Train" / "Rural" / "masks_png" / "4.png").unlink()
    with pytest.raises(DataError, match=r"LoveDA: no mask for 4.png in .*Rural/masks_png"):
        LoveDA(root, tile_size=T, progress=False)


# ------------------------------------------------------------------------------------------------ generic folder
DUBAI = [(60, 16, 152), (132, 41, 246), (110, 193, 228), (254, 221, 58), (226, 169, 41)]
TABLE = """
classes:
  - {name: building, color: [60, 16, 152]}
  - {name: land, color: [132, 41, 246]}
  - {name: road, color: [110, 193, 228]}
  - {name: vegetation, color: [254, 221, 58]}
  - {name: water, color: [226, 169, 41]}
ignore_index: 255
ignore_colors: [[155, 155, 155], [0, 0, 0]]
mask_format: color
"""


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "dubai"
    for k in range(6):
        sub = f"tile_{k % 2}"
        save(image(k), root / "images" / sub / f"part_{k}.jpg", quality=95)
        rgb = colour(labels(k, n_cls=5), DUBAI)
        rgb[:4, :4] = (155, 155, 155)
        rgb[4, :4] = 0
        if k == 1:  # a palette PNG whose palette order differs from the class order
            pal = Image.fromarray(rgb).quantize(colors=8, method=Image.Quantize.MAXCOVERAGE)
            (root / "masks" / sub).mkdir(parents=True, exist_ok=True)
            pal.save(root / "masks" / sub / f"part_{k}.png")
            assert np.array_equal(np.asarray(pal.convert("RGB")), rgb)
        else:
            save(rgb, root / "masks" / sub / (f"part_{k}_mask.png" if k == 2 else f"part_{k}.png"))
    table = tmp_path / "dubai.yaml"
    table.write_text(TABLE)
    return root, table


def test_folder_matches_by_path_and_decodes_colours(folder):
    root, table = folder
    ds = FolderSeg(root, table, tile_size=T, progress=False)
    assert len(ds) == 6 * 12 and [c["name"] for c in ds.classes][0] == "building"
    for k in (1, 2, 3):
        _, lab = reassemble(ds, f"tile_{k % 2}/part_{k}")
        expect = labels(k, n_cls=5).astype(np.int64)
        expect[:5, :4] = 255
        assert np.array_equal(lab, expect), k
    shares = ds.class_shares()
    assert set(shares) == {"building", "land", "road", "vegetation", "water"} and sum(shares.values()) == \
        pytest.approx(1.0)


def test_folder_group_by_folder_and_nested_label_fractions(folder, tmp_path):
    root, table = folder
    table.write_text(TABLE + "group_by: folder\n")
    cfg = SegDataConfig(name="folder", root=str(root), class_table=str(table), tile_size=16, test_fraction=0.0,
                        val_fraction=0.5)
    s = build_seg_splits(cfg, progress=False)
    # whole folders on each side, named by their images (as every record of what a model saw)
    assert {n.split("/")[0] for n in s.scenes["val"]} != {n.split("/")[0] for n in s.scenes["train"]}
    assert len(s.scenes["val"]) == 3 and len(s.scenes["train"]) == 3 and s.scenes["test"] == []
    assert len(s.test) == 0 and s.test.get_images([]).shape == (0, 3, 16, 16)
    subsets = {}
    for f in (0.01, 0.05, 0.1, 1.0):
        subsets[f] = set(build_seg_splits(cfg.model_copy(update=dict(label_fraction=f)), progress=False)
                         .train.indices.tolist())
    assert len(subsets[0.01]) == 1 and len(subsets[1.0]) == len(s.train_all) == 3 * 42
    assert subsets[0.01] <= subsets[0.05] <= subsets[0.1] <= subsets[1.0]
    assert len(subsets[0.1]) == round(0.1 * len(subsets[1.0]))
    other = set(label_subset(sorted(subsets[1.0]), 0.1, seed=1).tolist())
    assert other != subsets[0.1] and label_subset(sorted(subsets[1.0]), 0.1, 0).tolist() == sorted(subsets[0.1])



def test_a_config_records_the_split_unit_the_class_table_gave_it(folder):
    """``data.split_unit``: a table's ``group_by`` is written into the config at load, so a run's config.yaml keeps
    the unit it was split by; editing the table later (the Dubai table went from file to folder) moves no old run's
    tiles. Given explicitly, it overrides the table; a published set refuses it."""
    root, table = folder
    fields = dict(name="folder", root=str(root), class_table=str(table), tile_size=16, test_fraction=0.34,
                  val_fraction=0.0)
    by_file = SegDataConfig(**fields)
    assert by_file.split_unit == "file" and DataConfig(**fields).as_seg().split_unit == "file"
    with pytest.warns(UserWarning, match="share 2 folder"):
        before = build_seg_splits(by_file, progress=False).scenes
    table.write_text(TABLE + "group_by: folder\n")
    with pytest.warns(UserWarning, match="share 2 folder"):  # the recorded unit, not the table's new one
        assert build_seg_splits(by_file, progress=False).scenes == before
    by_folder = SegDataConfig(**fields)
    assert by_folder.split_unit == "folder" and SegDataConfig(**fields, split_unit="file").split_unit == "file"
    tests = build_seg_splits(by_folder, progress=False).scenes["test"]
    assert len({n.split("/")[0] for n in tests}) == 1 and len(tests) == 3  # one whole folder
    with pytest.raises(ConfigError, match=r"data.split_unit applies to an image folder with a class table"):
        load_config(None, ["data.name=deepglobe", "data.root=x", "data.split_unit=folder"], FinetuneConfig)
    with pytest.raises(ConfigError, match=r"data.split_unit"):
        load_config(None, ["data.name=folder", f"data.root={root}", f"data.class_table={table}",
                           "data.split_unit=tile"], FinetuneConfig)


def test_the_places_of_tiles_are_their_folders_when_grouped_by_folder(folder):
    """Cross-scene figures (the kNN monitor, flag precision, the Embeddings page's kNN) ask ``place_ids``: a review
    found neighbouring parts of one Dubai tile counted as other scenes."""
    from core.data.seg_subset import place_ids

    root, table = folder
    cfg = SegDataConfig(name="folder", root=str(root), class_table=str(table), tile_size=16, test_fraction=0.0,
                        val_fraction=0.0)
    by_file = build_seg_splits(cfg, progress=False).train_all
    assert np.array_equal(place_ids(by_file), by_file.scene_ids) and len(np.unique(place_ids(by_file))) == 6
    for extra in ("places: folder\n", "group_by: folder\n"):  # parts of one picture; split by file or by folder
        table.write_text(TABLE + extra)
        tiles = build_seg_splits(SegDataConfig(**{**cfg.model_dump(), "split_unit": None}), progress=False).train_all
        places, names = place_ids(tiles), tiles.scene_names
        assert len(np.unique(places)) == 2 and len(np.unique(tiles.scene_ids)) == 6, extra
        for p in np.unique(places):  # one place: the parts of one folder, tile_0's or tile_1's
            assert len({names[s].split("/")[0] for s in tiles.scene_ids[places == p]}) == 1
    with pytest.raises(ValueError, match="places must be 'scene' or 'folder'"):
        table.write_text(TABLE + "places: tile\n")
        build_seg_splits(cfg, progress=False)


def test_test_images_whose_folder_also_trains_are_said_to_be_no_unseen_scenes(folder):
    """A review: a folder of Dubai's tiles split image by image put parts of one tile in training and test alike, and
    the score was called one on unseen scenes. It is said now (a warning, the fine-tuning log, test_metrics.json and
    the Fine-tune page); whole folders named as test scenes, or grouped by folder, are no such split."""
    from core.data.labeled import neighbours_note

    root, table = folder
    cfg = SegDataConfig(name="folder", root=str(root), class_table=str(table), tile_size=16, test_fraction=0.34,
                        val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"the test images share 2 folder\(s\) with training images \(tile_0, "
                                         r"tile_1\): parts of one scene on both sides"):
        s = build_seg_splits(cfg, progress=False)
    assert neighbours_note(s).endswith("name whole folders in data.test_scenes, or split by folder "
                                       "(data.split_unit=folder)")
    named = build_seg_splits(cfg.model_copy(update=dict(test_scenes=["tile_1"])), progress=False)
    assert neighbours_note(named) is None and named.scenes["test"] == [f"tile_1/part_{k}" for k in (1, 3, 5)]
    cfg = cfg.model_copy(update=dict(split_unit="folder"))
    assert neighbours_note(build_seg_splits(cfg.model_copy(update=dict(test_fraction=0.5)), progress=False)) is None
    with pytest.warns(UserWarning, match="share 1 folder"):  # grouped by folder, but one image of a folder named
        one = build_seg_splits(cfg.model_copy(update=dict(test_scenes=["tile_1/part_1"])), progress=False)
    assert neighbours_note(one).endswith("name whole folders in data.test_scenes")


def test_a_fine_tuning_on_such_a_split_writes_the_note_beside_its_score(folder, tmp_path):
    import json

    from core.seg.finetune_cli import main as finetune_main
    from core.store.runs import list_runs

    root, table = folder
    with pytest.warns(UserWarning, match="not on unseen scenes"):
        assert finetune_main(["--config", "configs/finetune_demo_cpu.yaml", "--no-progress", "--runs-root",
                              str(tmp_path / "runs"), "data.name=folder", f"data.root={root}",
                              f"data.class_table={table}", "data.tile_size=32", "data.crop_size=32",
                              "data.test_fraction=0.34", "data.val_fraction=0", "train.average_from=0.5",
                              "train.batch_size=2", "train.max_steps=2", "train.test_tile=32"]) == 0
    (run,) = list_runs(tmp_path / "runs")
    note = json.loads((run.path / "test_metrics.json").read_text())["not_unseen"]
    assert "share 2 folder(s) with training images" in note and f"warning: {note}" in run.log_text()

def test_folder_missing_mask_and_empty_folders(folder, tmp_path):
    root, table = folder
    (root / "masks" / "tile_1" / "part_3.png").unlink()
    with pytest.raises(DataError, match=r"Image folder: no mask for images/tile_1/part_3.jpg in .*masks"):
        FolderSeg(root, table, tile_size=T, progress=False)
    (tmp_path / "bare" / "images").mkdir(parents=True)
    (tmp_path / "bare" / "masks").mkdir()
    with pytest.raises(DataError, match=r"Image folder: no images \(PNG, JPEG, TIFF\) in .*bare/images"):
        FolderSeg(tmp_path / "bare", table)
    with pytest.raises(DataError, match=r"Image folder: no masks folder .*nomask/masks"):
        (tmp_path / "nomask" / "images").mkdir(parents=True)
        FolderSeg(tmp_path / "nomask", table)


def test_an_image_without_a_mask_never_takes_another_images_mask_of_the_same_name(folder):
    """A review: tile_1's mask deleted, tile_1/x.jpg was paired with tile_3/x.png (the only mask of that name left,
    but tile_3/x.jpg's own) and trained on a test scene's labels without a word."""
    from core.data import DataError
    from core.data.seg_folder import FolderSeg

    root, table = folder
    (root / "masks" / "tile_1" / "part_1.png").unlink()  # tile_0/part_1 does not exist: the name is tile_1's alone
    save(image(1), root / "images" / "tile_0" / "part_1.jpg", quality=95)
    save(colour(labels(1, n_cls=5), DUBAI), root / "masks" / "tile_0" / "part_1.png")
    with pytest.raises(DataError, match="no mask for images/tile_1/part_1.jpg"):
        FolderSeg(root, table, tile_size=T, progress=False)
    flat = root.parent / "flat"  # masks in a folder of their own layout: matched by name where nothing claims them
    save(image(0), flat / "images" / "a" / "x.jpg", quality=95)
    save(colour(labels(0, n_cls=5), DUBAI), flat / "masks" / "x.png")
    assert [s.mask.name for s in FolderSeg(flat, table, tile_size=T, progress=False).find_scenes()] == ["x.png"]


def test_folder_per_part_layout(tmp_path):
    """Kaggle's Dubai layout: <root>/Tile N/images/x.jpg with <root>/Tile N/masks/x.png (same names in each)."""
    root = tmp_path / "kaggle"
    for k in range(4):
        part = root / f"Tile {k // 2 + 1}"
        save(image(k), part / "images" / f"image_part_00{k % 2 + 1}.jpg")
        save(colour(labels(k, n_cls=5), DUBAI), part / "masks" / f"image_part_00{k % 2 + 1}.png")
    table = tmp_path / "t.yaml"
    table.write_text(TABLE + "group_by: folder\n")
    ds = FolderSeg(root, table, tile_size=T, progress=False)
    _, lab = reassemble(ds, "Tile 2/image_part_001")
    assert np.array_equal(lab, labels(2, n_cls=5))
    s = build_seg_splits(SegDataConfig(name="folder", root=str(root), class_table=str(table), tile_size=T,
                                       test_fraction=0.0, val_fraction=0.5), progress=False)
    assert sorted(s.scenes["train"] + s.scenes["val"]) == [f"Tile {t}/image_part_00{k}" for t in (1, 2) for k in (1, 2)]
    assert len({n.split("/")[0] for n in s.scenes["val"]}) == 1  # one whole folder validates


@pytest.mark.parametrize("text, message", [
    ("classes: []", "non-empty list"),
    ("classes: [{name: a, color: [1, 2]}]", r"\[r, g, b\]"),
    ("classes: [{name: a, color: [1, 2, 3]}, {name: b, color: [1, 2, 3]}]", "same color"),
    ("classes: [{name: a, color: [1, 2, 3]}]\nignore_colors: [[1, 2, 3]]", "both a class and in ignore_colors"),
    ("classes: [{name: a, color: [1, 2, 3]}]\nignore_index: 0", "ignore_index must be"),
    ("classes: [{name: a, color: [1, 2, 3]}]\nmask_format: rgb", "mask_format"),
    ("classes: [{name: a, color: [1, 2, 3]}]\ncolour_table: x", "unknown key"),
    ("classes: [{color: [1, 2, 3]}]", r"classes\[0\] needs a name"),
    ("classes: [{name: a, color: [1, 2, 3], display: blue}]", r"classes\[0\] \(a\) display"),
    ("just text", "must hold a mapping"),
    ("classes: [a, b", "not valid YAML"),
])
def test_bad_class_tables(tmp_path, text, message):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(DataError, match=rf"class table .*t.yaml.*{message}"):
        load_class_table(p)
    with pytest.raises(DataError, match="class table not found"):
        load_class_table(tmp_path / "missing.yaml")


def test_a_class_table_may_name_display_colours(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("classes: [{name: water, color: [226, 169, 41], display: [40, 110, 200]}, {name: land, color: [1, 2, 3]}]")
    table = load_class_table(p)
    assert table.classes == [{"name": "water", "color": [226, 169, 41], "display": [40, 110, 200]},
                             {"name": "land", "color": [1, 2, 3]}]


def test_folder_index_masks_16bit_images_and_suffixes(tmp_path):
    root = tmp_path / "idx"
    grey16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 5 + 1000).astype(np.uint16)
    save(grey16, root / "images" / "a.tif")
    rgba = np.dstack([image(1), np.full((H, W), 128, np.uint8)])
    save(rgba, root / "images" / "b_sat.png")
    for name, k in (("a_label.png", 0), ("b.tif", 1)):
        m = labels(k, n_cls=3)
        m[0, :10] = 255
        m[1, :7] = 9  # not a class: ignored with a warning
        save(m, root / "masks" / name)
    table = tmp_path / "t.yaml"
    table.write_text("mask_format: index\nclasses: [{name: a}, {name: b}, {name: c}]\n")
    with pytest.warns(UserWarning, match=r"14 mask pixels in 2 file.*values not in the class table"):
        ds = FolderSeg(root, table, tile_size=T, progress=False)
    img, lab = reassemble(ds, "a")
    expect = labels(0, n_cls=3).astype(np.int64)
    expect[0, :10] = 255  # ignore_index in the file: ignored quietly
    expect[1, :7] = 255  # unknown value 9: ignored, counted
    assert np.array_equal(lab, expect)
    assert (img[..., 0] == img[..., 1]).all() and img.min() == 0 and img.max() == 255  # 16-bit stretched, grey x3
    img_b, _ = reassemble(ds, "b_sat")
    assert np.array_equal(img_b, image(1))  # alpha dropped
    assert len(ds.classes[0]["color"]) == 3  # a default colour for index classes


def test_cache_is_reused_and_changes_invalidate_it(folder, monkeypatch, tmp_path):
    root, table = folder
    first = FolderSeg(root, table, tile_size=T, progress=False)
    mtime = (first.cache_dir / "images.npy").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    with monkeypatch.context() as mp:  # (not monkeypatch.undo(): that would drop FALSE_WB_DATA too)
        mp.setattr(SegTiles, "_build", boom)
        again = FolderSeg(root, table, tile_size=T, progress=False)
    assert again.cache_dir == first.cache_dir and (again.cache_dir / "images.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(again.masks, first.masks)
    other = FolderSeg(root, table, tile_size=T, tile_overlap=8, progress=False)
    assert other.cache_dir != first.cache_dir and len(other) > len(first)
    assert not list(first.cache_dir.parent.glob(".*"))  # no temp folders left behind
    assert first.cache_dir.parent == tmp_path / "data" / "cache" == other.cache_dir.parent


def test_a_cache_superseded_by_new_code_or_new_files_is_removed_and_other_settings_stay(folder, monkeypatch):
    """Every change of the tiling code (or of a file) builds a new cache; the old one held the same tiles, is never
    read again, and went on taking disk. Caches of other settings are other data: they stay."""
    import os

    import core.data.seg_base as seg_base

    import core.data.paths as paths

    root, table = folder
    first = FolderSeg(root, table, tile_size=T, progress=False)
    other = FolderSeg(root, table, tile_size=T, tile_overlap=8, progress=False)
    monkeypatch.setattr(paths, "_alive", lambda pid: False)  # the processes that read these caches have ended
    with monkeypatch.context() as mp:
        mp.setattr(seg_base, "code_version", lambda *a, **k: "a later version of the tiling code")
        newer = FolderSeg(root, table, tile_size=T, progress=False)
    assert newer.cache_dir != first.cache_dir and not first.cache_dir.exists() and other.cache_dir.exists()
    img = next((root / "images").rglob("*.jpg"))
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))  # the file changed
    changed = FolderSeg(root, table, tile_size=T, progress=False)
    assert changed.cache_dir != newer.cache_dir and not newer.cache_dir.exists() and other.cache_dir.exists()
    assert sorted(p.name for p in changed.cache_dir.parent.iterdir()) == sorted(
        [changed.cache_dir.name, other.cache_dir.name])


def test_leases_of_other_hosts_keep_a_superseded_cache_and_odd_identities_are_skipped(tmp_path, monkeypatch):
    """A data root shared by machines: a lease written on another host cannot be checked here, so the cache stays;
    this host's leases of ended processes do not keep it. A cache folder whose identity is not text is left alone."""
    import core.data.paths as paths

    root = tmp_path / "cache"
    old, odd, new = root / "folder-old", root / "folder-odd", root / "folder-new"
    for d in (old, odd, new):
        d.mkdir(parents=True)
    (old / paths.IDENTITY_FILE).write_text("same")
    (odd / paths.IDENTITY_FILE).write_bytes(b"\xff\xfe not text")
    (old / f"{paths.READER_PREFIX}another-host-1").touch()
    (old / f"{paths.READER_PREFIX}{paths.socket.gethostname()}-999999999").touch()  # no such process here
    assert paths.remove_superseded(new, "same") == [] and old.exists() and odd.exists()
    (old / f"{paths.READER_PREFIX}another-host-1").unlink()
    assert paths.remove_superseded(new, "same") == [old] and not old.exists() and odd.exists()


def test_image_and_mask_sizes_must_agree(folder):
    root, table = folder
    save(np.zeros((10, 10, 3), np.uint8), root / "masks" / "tile_1" / "part_3.png")
    with pytest.raises(DataError, match=r"part_3.jpg is 100x90 but its mask .*part_3.png is 10x10"):
        FolderSeg(root, table, tile_size=T, progress=False)


def test_small_scene_is_padded_with_ignore(tmp_path):
    root = tmp_path / "small"
    save(image(0)[:20, :25], root / "images" / "a.png")
    save(colour(labels(0)[:20, :25], DUBAI), root / "masks" / "a.png")
    table = tmp_path / "t.yaml"
    table.write_text(TABLE)
    ds = FolderSeg(root, table, tile_size=T, progress=False)
    assert len(ds) == 1
    m = ds[0]["mask"]
    assert (m[20:] == 255).all() and (m[:, 25:] == 255).all() and (m[:20, :25] < 5).all()


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_wrapper_interface_and_split():
    cfg = SegDataConfig(name="synthetic", num_tiles=20, tile_size=32, label_fraction=0.5)
    s = build_seg_splits(cfg, progress=False)
    assert isinstance(s.dataset, SyntheticSeg) and s.classes[1] == {"name": "building", "color": [0, 0, 255]}
    assert [len(s.train_all), len(s.val), len(s.test), len(s.train)] == [16, 2, 2, 8]
    assert not set(s.train_all.indices) & set(s.val.indices) | set(s.test.indices) & set(s.train_all.indices)
    item = s.val[1]
    assert item["index"] == 1 and item["tile"] == s.val.indices[1] and item["mask"].dtype == torch.long
    assert torch.equal(s.val.get_masks([1])[0], item["mask"]) and torch.equal(s.val.get_images([1])[0], item["image"])
    assert s.val.dominant_class(1) == s.dataset.dominant_class(int(s.val.indices[1]))


# ------------------------------------------------------------------------------------------------ SegAugment
def _batch(b=3, h=40, w=48):
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 6, (b, h, w), generator=g)
    images = (masks * 40).to(torch.uint8).unsqueeze(1).expand(b, 3, h, w).contiguous()  # colour encodes class
    return images, masks


def test_seg_augment_shapes_determinism_and_alignment():
    images, masks = _batch()
    aug = SegAugment(crop_size=24)
    x, m = aug(images, masks, torch.Generator().manual_seed(1))
    assert x.shape == (3, 3, 24, 24) and x.dtype == torch.float32 and m.shape == (3, 24, 24) and m.dtype == torch.long
    x2, m2 = aug(images, masks, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(m, m2)
    x3, _ = aug(images, masks, torch.Generator().manual_seed(2))
    assert not torch.equal(x, x3)
    assert set(m.unique().tolist()) <= set(range(6)) | {255}
    # no photometric change and scale 1: each output pixel's colour is exactly its mask's class colour
    plain = SegAugment(crop_size=24, scale=(1.0, 1.0), photometric=False)
    x, m = plain(images, masks, torch.Generator().manual_seed(3))
    std, mean = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    raw = ((x * std + mean) * 255).round()[:, 0]
    frac = (torch.floor(raw / 40 + 1e-3) == m).float().mean()
    assert frac > 0.99, frac


def test_seg_augment_flips_only_and_padding():
    images, masks = _batch(b=4, h=32, w=32)
    x, m = SegAugment(32, scale=(1.0, 1.0), photometric=False)(images, masks, torch.Generator().manual_seed(0))
    for k in range(4):
        options = [masks[k], masks[k].flip(0), masks[k].flip(1), masks[k].flip(0).flip(1)]
        assert any(torch.equal(m[k], o) for o in options)
    x, m = SegAugment(48, scale=(0.5, 0.5))(images, masks, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 48, 48)
    assert ((m == 255).float().mean(dim=(1, 2)) == 1 - (16 * 16) / (48 * 48)).all()  # 16x16 scaled image, rest pad
    assert torch.isfinite(x).all()


def test_colour_jitter_strength_widens_the_colour_spread_and_is_validated():
    """``data.colour_jitter``: 1 is the mild default, 0 none, 3 a wider spread of brightness per crop (what lets a
    model trained on blue-cast scenes meet brighter, neutral ones)."""
    assert jitter_strengths(1.0) == {"brightness": 0.125, "contrast": 0.25, "saturation": 0.25, "hue": 0.05}
    assert jitter_strengths(10.0)["contrast"] == 0.9 and jitter_strengths(10.0)["hue"] == 0.5  # capped
    grey = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    masks = torch.zeros(64, 16, 16, dtype=torch.long)

    def spread(strength: float) -> float:
        aug = SegAugment(16, scale=(1.0, 1.0), photometric=strength > 0, **jitter_strengths(strength))
        x, _ = aug(grey, masks, torch.Generator().manual_seed(0))
        return float(x.mean(dim=(1, 2, 3)).std())

    assert spread(0.0) < 1e-6 < spread(1.0) < spread(3.0) / 2
    assert SegDataConfig(colour_jitter=3).colour_jitter == 3.0
    with pytest.raises(ValueError, match="colour_jitter"):
        SegDataConfig(colour_jitter=-1)


def test_eval_transform_normalises():
    images, _ = _batch(b=2)
    out = eval_transform(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, (images.float() / 255 - mean) / std) and SegAugment(8).eval_transform(images).shape \
        == images.shape


def test_folder_scenes_whose_files_link_outside_are_skipped(folder, tmp_path):
    root, table = folder
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = root / "images" / "tile_0" / "part_0.jpg"
    moved = outside / "part_0.jpg"
    target.rename(moved)
    target.symlink_to(moved)
    with pytest.warns(UserWarning, match=r"skipping scene tile_0/part_0: .* symlink that leads outside"):
        ds = FolderSeg(root, table, tile_size=T, progress=False)
    assert "tile_0/part_0" not in {ds.tile_info(i)["scene"] for i in range(len(ds))} and len(ds) == 5 * 12


def test_a_tile_cache_that_cannot_fit_its_disk_is_refused_before_it_is_written(potsdam, tmp_path, monkeypatch):
    """Issue 29: the labeled sets' and image folders' caches are sized against free disk space too."""
    import shutil as _shutil

    from core.data import DataError, ImageFolderTiles
    from core.data import paths

    monkeypatch.setattr(paths.shutil, "disk_usage", lambda _p: _shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(DataError, match=r"its tile cache \(60 tiles of 32 px\) needs [\d.,]+ MiB on .* free: lower "
                                        r"data\.tile_overlap, or set FALSE_WB_DATA"):
        Potsdam(potsdam, tile_size=T, progress=False)
    with pytest.raises(DataError, match=r"^tiling .* free: use fewer or smaller images, or set FALSE_WB_DATA"):
        ImageFolderTiles(potsdam / "2_Ortho_RGB", tile_size=T, progress=False)
    assert not list((tmp_path / "data" / "cache").glob(".*tmp*"))  # nothing left behind
