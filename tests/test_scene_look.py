"""A re-encoded, resized, brightened or turned copy of a card's scene is still that scene: its score is no unseen
score (a PNG saved from a training JPEG had another digest and its score read as unseen)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from core.seg.scene_look import SIDE, same_picture, scene_look
from core.seg.scene_role import scene_note


def _picture(seed: int, width: int = 240, height: int = 200) -> np.ndarray:
    """Blocks of colour at a few scales with pixel noise: a scene with structure at the thumbnail's scale."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 6, 3)).astype(np.float32)
    fine = rng.integers(0, 256, (SIDE * 2, SIDE * 2, 3)).astype(np.float32)
    pic = 0.6 * np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.NEAREST))
    pic = pic + 0.4 * np.asarray(Image.fromarray(fine.astype(np.uint8)).resize((width, height), Image.BILINEAR))
    return (pic + rng.normal(0, 8, pic.shape)).clip(0, 255).astype(np.uint8)


def _through(fmt: str, rgb: np.ndarray, **save: object) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **save)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_copies_of_a_scene_are_that_scene_and_other_pictures_are_not() -> None:
    scenes = {f"tile_{k}/p": _picture(k) for k in range(4)}
    looks = {name: scene_look(rgb) for name, rgb in scenes.items()}
    rgb = scenes["tile_2/p"]
    copies = {"jpeg q30": _through("JPEG", rgb, quality=30), "png": _through("PNG", rgb),
              "a quarter size": np.asarray(Image.fromarray(rgb).resize((60, 50), Image.LANCZOS)),
              "brighter": np.asarray(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(1.15)),
              "turned": np.rot90(rgb).copy(), "mirrored": rgb[:, ::-1].copy()}
    for how, copy in copies.items():
        found = same_picture(looks, copy)
        assert found and found[0][0] == "tile_2/p" and found[0][1] >= 0.97, (how, found)
    w, h = 240, 200
    others = {"another scene": _picture(9), "a 12 % crop": rgb[h // 8:, w // 8:].copy(),
              "another shape": np.asarray(Image.fromarray(rgb).resize((240, 120))),
              "flat": np.full((200, 240, 3), 77, np.uint8)}
    for how, other in others.items():
        assert same_picture(looks, other) == [], how
    assert same_picture({"bad": "not a look", "short": "2x2:00ff"}, rgb) == []  # a damaged card matches nothing


def test_the_note_names_the_copy_and_its_role_and_the_closest_scene_wins() -> None:
    scenes = {"train/1": _picture(1), "train/3": _picture(3)}
    card = {"domain": {"test_scenes": ["train/3"], "scene_looks": {n: scene_look(r) for n, r in scenes.items()},
                       "scene_digests": {}}}
    png = _through("PNG", scenes["train/1"])
    note = scene_note(card, "upload.png", b"png bytes", png)
    assert note == ("this image is training scene train/1 of the model (the same picture in another file: "
                    "re-encoded, resized or turned); the model was trained on it, so its score is no unseen score")
    assert scene_note(card, "x.jpg", b"x", _through("JPEG", scenes["train/3"])).startswith(
        "this image is test scene train/3 of the model (the same picture")
    assert scene_note(card, "x.jpg", b"x", _picture(5)) is None
    assert scene_note(card, "x.jpg", b"x") is None  # no picture given: the bytes alone do not match


def test_fingerprint_keeps_the_looks_and_segment_says_so_for_a_jpeg_copy(tmp_path: Path, monkeypatch,
                                                                        capsys) -> None:
    """From the data set's files to the card (``core.fingerprint --scene-digests``) to ``core.segment`` on a JPEG
    copy elsewhere, with no data set on the machine."""
    import shutil

    from core.seg.fingerprint import main as fingerprint_main
    from core.seg.segment_cli import main as segment_main
    from core.store.checkpoint import read_metadata
    from tests.test_baseline import deepglobe_folder
    from tests.test_scene_role import deepglobe_checkpoint

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "cache"))
    root = deepglobe_folder(tmp_path / "dg", scenes=3)
    Image.fromarray(_picture(0, 64, 64)).save(root / "0_sat.png")  # a scene with texture (the fixture's are halves)
    (root / "0_sat.png").rename(root / "0_sat.jpg")
    ckpt = deepglobe_checkpoint(root, tmp_path / "m.safetensors", test="2", val="1")
    assert fingerprint_main([str(ckpt), "--scene-digests"]) == 0
    looks = read_metadata(ckpt)["card"]["domain"]["scene_looks"]
    assert set(looks) == {"0", "1", "2"} and looks["0"].startswith("64x64:")

    copy = tmp_path / "downloads" / "mine.jpg"  # the scene's PNG pixels saved again as a JPEG: another file
    copy.parent.mkdir()
    Image.open(root / "0_sat.jpg").save(copy, quality=90)
    shutil.rmtree(root)  # the data set is not on this machine: only the card knows the scene
    assert segment_main([str(copy), "--out", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--tile", "64",
                         "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "training scene 0 of the model (the same picture in another file" in out, out
    notes = json.loads((tmp_path / "o" / "mine_report.json").read_text())["notes"]
    assert any(n.startswith("this image is training scene 0 of the model (the same picture") for n in notes), notes


def test_a_scene_that_cannot_be_read_goes_without_a_thumbnail_not_the_run(tmp_path: Path, monkeypatch) -> None:
    """Thumbnails are made when a run ends (its card's domain section): a scene over the inference pixel budget
    (which the data sets read up to 400 MP) or unreadable must not fail a finished run; it is left out."""
    from core.config import SegDataConfig
    from core.data.labeled import build_seg_splits
    from core.imaging.pixels import PixelBudgetError
    from core.seg import fingerprint
    from tests.test_baseline import deepglobe_folder

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "cache"))
    root = deepglobe_folder(tmp_path / "dg", scenes=3)
    splits = build_seg_splits(SegDataConfig(name="deepglobe", root=str(root), tile_size=32, test_scenes=["2"],
                                            val_scenes=["1"]), progress=False)
    import core.imaging.imageio as imageio

    real = imageio.read_image

    def budget(path, max_pixels=50_000_000, **kw):
        assert max_pixels >= 400_000_000  # the data sets' own limit, not the 50 MP of an upload
        if Path(path).name.startswith("1_"):
            raise PixelBudgetError("image too large")
        return real(path, max_pixels=max_pixels, **kw)

    monkeypatch.setattr(imageio, "read_image", budget)
    assert set(fingerprint.scene_looks(splits)) == {"0", "2"}
