"""A score on a scene the model saw is no unseen score: ``core.segment`` says which of the card's scenes an image
file is (the review scored two training images with --labels and nothing said so)."""
from __future__ import annotations

from pathlib import Path

from core.seg.scene_role import NOT_RECOGNISED, scene_note, scene_role, unseen_check

CARD = {"domain": {"training_scenes": 40, "validation_scenes": ["tile_1/image_part_005"],
                   "test_scenes": ["tile_3/image_part_001", "train/3484"]},
        "evaluation": {"training_scenes": ["tile_2/image_part_003", "train/10233"]}}


def test_each_scene_the_card_names_is_recognised_from_the_files_path() -> None:
    data = Path("/data/dubai_aerial/images")
    assert scene_role(CARD, data / "tile_2/image_part_003.jpg") == ("training", "tile_2/image_part_003")
    assert scene_role(CARD, data / "tile_1/image_part_005.jpg") == ("validation", "tile_1/image_part_005")
    assert scene_role(CARD, data / "tile_3/image_part_001.tif") == ("test", "tile_3/image_part_001")
    assert scene_role(CARD, "/dg/train/10233_sat.jpg") == ("training", "train/10233")  # DeepGlobe's file suffix
    assert scene_role(CARD, "/dg/train/3484_sat.jpg") == ("test", "train/3484")
    vaihingen = {"domain": {"test_scenes": ["area2"]}, "evaluation": {"training_scenes": ["area1"]}}
    assert scene_role(vaihingen, "/v/top/top_mosaic_09cm_area1.tif") == ("training", "area1")  # the file's prefix
    assert scene_role(vaihingen, "top_mosaic_09cm_area2.tif") == ("test", "area2")
    assert scene_role(vaihingen, "/v/top/top_mosaic_09cm_area11.tif") is None
    assert scene_role(vaihingen, "holiday_area1.png") is None  # Vaihingen's own prefix only
    assert scene_role({"evaluation": {"training_scenes": ["0001"]}}, "IMG_0001.jpg") is None  # a camera's name
    assert scene_role({"evaluation": {"training_scenes": ["top_potsdam_2_10"]}}, "/p/top_potsdam_2_10_RGB.tif") == \
        ("training", "top_potsdam_2_10")
    # a bare name several tiles share, another tile, a longer number: none is one of the card's scenes
    for other in ("image_part_003.jpg", data / "tile_4/image_part_003.jpg", "/dg/train/102330_sat.jpg",
                  "/dg/val/10233_sat.jpg", "/dg/train/110233_sat.jpg"):
        assert scene_role(CARD, other) is None, other
    assert "trained on it, so its score is no unseen score" in scene_note(CARD, data / "tile_2/image_part_003.png")
    assert "no unseen score" in scene_note(CARD, data / "tile_1/image_part_005.jpg")
    assert "the model was not trained on it; its card" in scene_note(CARD, data / "tile_3/image_part_001.jpg")
    assert scene_note({}, data / "tile_2/image_part_003.jpg") is None  # a card that names no scenes
    # held out of fine-tuning, but read by its encoder's pretraining (a review: DeepGlobe's validation scene 19627)
    read = {**CARD, "pretrain_scenes": ["dg/train/3484_sat", "tile_1/image_part_005"]}
    assert scene_note(read, data / "tile_1/image_part_005.jpg").endswith(
        "its encoder was pretrained on it (unlabeled) and it was watched during the model's fine-tuning, so its "
        "score is no unseen score")
    assert scene_note(read, "/dg/train/3484_sat.jpg").endswith(
        "the model was not fine-tuned on it, but its encoder was pretrained on it (unlabeled), so its score is no "
        "unseen score")
    assert "the model was not trained on it; its card" in scene_note(read, data / "tile_3/image_part_001.jpg")
    test = scene_note(CARD, data / "tile_3/image_part_001.jpg")  # what a label score says of a test scene: its note
    assert unseen_check([test]) == test and unseen_check([]) == NOT_RECOGNISED
    assert unseen_check([scene_note(read, data / "tile_1/image_part_005.jpg")]).startswith("not an unseen score: ")


def test_a_runs_card_without_a_list_of_training_scenes_knows_them_by_its_data_folder(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "images/tile_2").mkdir(parents=True)
    card = {"domain": {"training_scenes": 3, "test_scenes": ["tile_3/a"]},
            "config": {"data": {"name": "folder", "root": str(root)}}}
    assert scene_role(card, root / "images/tile_2/b.jpg") == ("training", "images/tile_2/b")
    assert scene_role(card, root / "images/tile_3/a.jpg") == ("test", "tile_3/a")
    assert scene_role(card, tmp_path / "elsewhere/tile_2/b.jpg") is None


def test_segment_says_so_in_its_lines_and_the_report(tmp_path: Path, capsys) -> None:
    import json

    import numpy as np
    import torch
    from PIL import Image

    from core.seg.segment_cli import main
    from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=[{"name": "a", "color": [0, 0, 0]},
                                                                        {"name": "b", "color": [255, 255, 255]}])
    card["evaluation"] = {"training_scenes": ["tile_2/p1"]}
    save_seg_checkpoint(tmp_path / "m.safetensors", build_seg_model(card).eval(), card)
    for name in ("tile_2/p1.png", "tile_9/p1.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((20, 30, 3), np.uint8) + 90).save(tmp_path / name)
    assert main([str(tmp_path / "tile_2/p1.png"), str(tmp_path / "tile_9/p1.png"), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "m.safetensors"), "--tile", "64", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("note: this image is training scene tile_2/p1 of the model") == 1, out
    notes = [json.loads((tmp_path / "o" / f"{stem}_report.json").read_text())["notes"] for stem in ("p1", "p1-2")]
    assert any("training scene tile_2/p1" in n for n in notes[0]) and not any("scene" in n for n in notes[1])


def test_an_upload_with_a_bare_name_is_known_by_its_bytes_where_the_data_set_is_here(tmp_path: Path) -> None:
    """An upload (the app, the demo) or a copy elsewhere has only a name several tiles share: the data set's file of
    that name with the same bytes says which scene it is (the review's demo scored a training image as unseen)."""
    from types import SimpleNamespace

    import torch

    from core.seg.scene_role import note_scene, same_files_in_data
    from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

    root = tmp_path / "set"
    for tile, content in (("tile_2", b"two" * 50), ("tile_4", b"four" * 50), ("tile_3", b"three" * 50)):
        (root / "images" / tile).mkdir(parents=True)
        (root / "images" / tile / "p.jpg").write_bytes(content)
    card = {"domain": {"training_scenes": 2, "test_scenes": ["tile_3/p"]},
            "config": {"data": {"name": "folder", "root": str(root)}}}
    assert same_files_in_data(card, "p.jpg", b"four" * 50) == [root / "images/tile_4/p.jpg"]
    assert same_files_in_data(card, "p.jpg", b"fouR" * 50) == []  # same size, other bytes
    assert "training scene images/tile_4/p of the model" in scene_note(card, "p.jpg", b"four" * 50)
    copy = tmp_path / "downloads/p.jpg"  # a copy elsewhere: known by the file's own bytes
    copy.parent.mkdir()
    copy.write_bytes(b"three" * 50)
    assert "test scene tile_3/p" in scene_note(card, copy, copy)
    assert scene_note(card, "q.jpg", b"two" * 50) is None  # another name
    (root / "backup").mkdir()  # a same copy in the set that is no scene does not hide the scene
    (root / "backup/p.jpg").write_bytes(b"three" * 50)
    assert {p.parent.name for p in same_files_in_data(card, "p.jpg", copy)} == {"backup", "tile_3"}
    assert "test scene tile_3/p" in scene_note(card, "p.jpg", b"three" * 50)
    assert scene_note({**card, "config": {"data": {"root": str(tmp_path / "gone")}}}, "p.jpg", b"two" * 50) is None

    torch.manual_seed(0)
    model_card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=[{"name": "a", "color": [0, 0, 0]},
                                                                              {"name": "b", "color": [9, 9, 9]}])
    model_card.update(card)
    save_seg_checkpoint(tmp_path / "m.safetensors", build_seg_model(model_card).eval(), model_card)
    seg = SimpleNamespace(model={"path": str(tmp_path / "m.safetensors")}, notes=["kept"])
    note_scene(seg, "p.jpg", b"two" * 50)
    note_scene(seg, "p.jpg", b"two" * 50)  # once, however often asked
    assert seg.notes[0] == "kept" and len(seg.notes) == 2 and "training scene images/tile_2/p" in seg.notes[1]
    note_scene(seg, "", b"two" * 50)  # no name: no note, no error
    note_scene(SimpleNamespace(model={"path": str(tmp_path / "gone.safetensors")}, notes=[]), "p.jpg", b"x")


def test_an_upload_of_a_scenes_very_file_is_known_by_its_digest_without_the_data_set(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """A walkthrough uploaded tile_2/image_part_001.jpg (a training image, named as eight other tiles' images are) on
    a machine where the card's data folder did not resolve, and its 43 % read as an unseen score. The card keeps the
    digest of every scene's image file; the file is then known anywhere, a re-encoded copy is not."""
    import hashlib

    from core.config import SegDataConfig
    from core.data.labeled import build_seg_splits
    from core.seg.fingerprint import scene_digests
    from tests.test_baseline import deepglobe_folder

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "cache"))
    root = deepglobe_folder(tmp_path / "dg", scenes=4)
    splits = build_seg_splits(SegDataConfig(name="deepglobe", root=str(root), tile_size=32, test_scenes=["3"],
                                            val_scenes=["2"]), progress=False)
    digests = scene_digests(splits)
    assert digests == {f"{k}": hashlib.sha256((root / f"{k}_sat.jpg").read_bytes()).hexdigest() for k in range(4)}
    card = {"domain": {"scene_digests": digests, "validation_scenes": ["2"], "test_scenes": ["3"]}}
    moved = tmp_path / "elsewhere" / "upload.jpg"  # another name, another folder: only the bytes are the scene's
    moved.parent.mkdir()
    moved.write_bytes((root / "0_sat.jpg").read_bytes())
    assert scene_note(card, "upload.jpg", moved.read_bytes()) == \
        "this image is training scene 0 of the model; the model was trained on it, so its score is no unseen score"
    assert scene_note(card, "x.jpg", (root / "2_sat.jpg").read_bytes()).startswith("this image is validation scene 2")
    assert scene_note(card, "x.jpg", moved).startswith("this image is training scene 0")  # a file given by path
    assert scene_note(card, "x.jpg", b"other bytes") is None
    twins = {"domain": {"scene_digests": {"3": digests["0"], "0": digests["0"]}, "test_scenes": ["3"]}}
    assert scene_note(twins, "x.jpg", moved).startswith("this image is training scene 0")  # trained on these bytes


def test_scene_digests_added_alone_name_the_held_out_scenes_too(tmp_path: Path, monkeypatch) -> None:
    """``core.fingerprint --scene-digests`` on a card without a domain section called a test scene a training one:
    the roles of the digests are read from the held-out lists, which it now writes where they are missing."""
    from core.seg.fingerprint import main as fingerprint_main
    from core.store.checkpoint import read_metadata
    from tests.test_baseline import deepglobe_folder

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "cache"))
    root = deepglobe_folder(tmp_path / "dg", scenes=4)
    path = deepglobe_checkpoint(root, tmp_path / "m.safetensors", test="3", val="2")
    assert fingerprint_main([str(path), "--scene-digests"]) == 0
    stored = read_metadata(path)["card"]
    assert stored["domain"]["test_scenes"] == ["3"] and stored["domain"]["validation_scenes"] == ["2"]
    assert scene_note(stored, "up.jpg", (root / "3_sat.jpg").read_bytes()).startswith("this image is test scene 3")


def deepglobe_checkpoint(root: Path, path: Path, test: str, val: str) -> Path:
    """A random 6-class model whose card's config reads the DeepGlobe folder ``root`` with one test and one
    validation scene (what ``core.fingerprint --scene-digests`` needs to find its scenes)."""
    import torch

    from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

    classes = [{"name": f"c{k}", "color": [k, k, k]} for k in range(6)]
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=classes, ignore_index=255)
    card["config"] = {"data": {"name": "deepglobe", "root": str(root), "tile_size": 32, "test_scenes": [test],
                               "val_scenes": [val]}, "model": {"arch": "deeplabv3plus", "encoder": "resnet18"}}
    torch.manual_seed(0)
    save_seg_checkpoint(path, build_seg_model(card).eval(), card)
    return path


def test_an_image_of_a_folder_scene_is_called_an_image_of_that_scene() -> None:
    """A walkthrough read "test scene tile_3/image_part_004" beside the card's "9 images of 1 scene (tile_3)"."""
    from core.seg.scene_role import scene_note

    card = {"config": {"data": {"test_scenes": ["tile_3"]}},
            "domain": {"test_scenes": ["tile_3/a", "tile_3/b"]}, "evaluation": {"training_scenes": ["tile_1/a"]}}
    assert scene_note(card, "x/tile_3/a.jpg").startswith(
        "this image is tile_3/a, one of the images of the model's test scene tile_3; the model was not trained on it; "
        "its card's test figures pool")
    assert scene_note(card, "x/tile_1/a.jpg").startswith("this image is training image tile_1/a of the model; ")
    flat = {"config": {"data": {"test_scenes": ["train/3"]}}, "domain": {"test_scenes": ["train/3"]},
            "evaluation": {"training_scenes": ["train/1"]}}  # DeepGlobe: each image its own scene
    assert scene_note(flat, "d/train/3.jpg").startswith("this image is test scene train/3 of the model; ")
    assert scene_note(flat, "d/train/1.jpg").startswith("this image is training scene train/1 of the model; ")
