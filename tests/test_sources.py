"""Data sources: folders a user adds from the browser, what they hold, and the path guard that lets them in."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.store.safepaths import PathRefused, resolve_under
from core.store.sources import SourceError, add_source, describe, list_sources, remove_source


@pytest.fixture(autouse=True)
def _roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))


def images(folder: Path, n: int, names: str = "tile_{}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / names.format(i))
    return folder


def test_a_folder_is_described_by_its_layout(tmp_path: Path) -> None:
    plain = describe(images(tmp_path / "plain", 3))
    assert plain.images == 3 and not plain.labels and "unlabeled" in plain.format and plain.kind == "folder"
    pair = tmp_path / "pair"
    images(pair / "images" / "a", 2)
    images(pair / "masks" / "a", 2)
    both = describe(pair)
    assert both.images == 2 and both.labels and both.format.startswith("images/ + masks/") and both.kind == "folder"
    dg = tmp_path / "dg"
    images(dg, 2, "{}_sat.jpg")
    images(dg, 2, "{}_mask.png")
    deepglobe = describe(dg)
    assert deepglobe.images == 2 and deepglobe.labels and deepglobe.format.startswith("DeepGlobe")
    assert deepglobe.kind == "deepglobe"  # what the Pretrain form's data set becomes on Use
    add_source(dg)
    assert [s.kind for s in list_sources()] == ["deepglobe"]


def test_a_stray_mask_without_its_satellite_image_makes_no_deepglobe_source(tmp_path: Path) -> None:
    """A user's folder of photos that holds one ``*_mask.png`` was called "DeepGlobe layout, with labels", and then
    failed on use ("DeepGlobe: no *_sat.jpg images"): it is a folder of images, read as such."""
    mixed = images(tmp_path / "mixed", 3, "photo_{}.jpg")
    images(mixed, 1, "photo_{}_mask.png")
    info = describe(mixed)
    assert info.kind == "folder" and not info.labels and info.images == 4  # what the folder reader reads
    images(mixed, 1, "scene{}_sat.jpg")  # one real pair (scene0_sat.jpg, scene0_mask.png)
    images(mixed, 1, "scene{}_mask.png")
    info = describe(mixed)
    assert info.kind == "deepglobe" and info.labels and info.images == 1


def test_an_added_folder_passes_the_guard_until_removed(tmp_path: Path) -> None:
    mine = images(tmp_path / "elsewhere" / "my_tiles", 4)
    with pytest.raises(PathRefused, match="add the folder as a data source first"):
        resolve_under(str(mine))
    info = add_source(str(mine))
    assert info.images == 4 and [s.path for s in list_sources()] == [str(mine.resolve())]
    assert resolve_under(str(mine / "tile_0.png")) == (mine / "tile_0.png").resolve()
    add_source(str(mine))  # twice: still one entry
    assert len(list_sources()) == 1
    assert remove_source(str(mine)) and not remove_source(str(mine))
    with pytest.raises(PathRefused):
        resolve_under(str(mine))
    assert mine.is_dir() and len(list(mine.iterdir())) == 4  # its files untouched


@pytest.mark.parametrize("given, says", [("", "give the folder's path"), ("relative/dir", "full path"),
                                         ("/no/such/folder/here", "no such folder"), ("/", "whole disk")])
def test_refusals_say_why(given: str, says: str) -> None:
    with pytest.raises(SourceError, match=says):
        add_source(given)


def test_a_folder_without_a_readable_image_is_refused_when_added(tmp_path: Path) -> None:
    """It used to be added ("3 image(s)"), and a launch on it failed seconds after it started (the review)."""
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("a.jpg", "b.png", "c.tif"):
        (junk / name).write_bytes(b"not an image at all")
    with pytest.raises(SourceError, match=r"no images in it .*; 3 file\(s\) are named like images but are not"):
        add_source(str(junk))
    damaged = tmp_path / "damaged"  # they start as images do, and break after: the headers are read to see it
    damaged.mkdir()
    for name, head in (("a.jpg", b"\xff\xd8\xff\xe0"), ("b.png", b"\x89PNG\r\n\x1a\n"), ("c.tif", b"II*\x00")):
        (damaged / name).write_bytes(head + b"broken")
    with pytest.raises(SourceError, match=r"none of the first 3 image file\(s\) can be read \(a.jpg, b.png, c.tif\)"):
        add_source(str(damaged))
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "docs" / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="no images in it"):
        add_source(str(empty))
    images(junk, 1)  # one readable image among them: added, the tiling skips and names the others
    info = add_source(str(junk))
    assert (info.images, info.not_images) == (1, 3) and list_sources()[0].not_images == 3


def test_the_count_leaves_out_what_only_its_name_calls_an_image(tmp_path: Path) -> None:
    """A walkthrough added a folder of 1 photo, 1 mask-sized PNG, a text file and an empty file named .png and a
    notes.txt: "4 image(s)", and the run on it then skipped 2."""
    mine = images(tmp_path / "mine", 2)
    (mine / "fake.png").write_text("just some text")
    (mine / "empty.png").write_bytes(b"")
    (mine / "notes.txt").write_text("x")
    info = describe(mine)
    assert (info.images, info.not_images) == (2, 2)
    for kind, name in (("JPEG", "a.jpg"), ("TIFF", "b.tif"), ("BMP", "c.png"), ("WEBP", "d.png")):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mine / name, format=kind)  # a BMP named .png reads too
    assert describe(mine).images == 6


def test_a_file_or_a_vanished_folder(tmp_path: Path) -> None:
    f = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(f)
    with pytest.raises(SourceError, match="a file, not a folder"):
        add_source(str(f))
    gone = images(tmp_path / "gone", 1)
    add_source(str(gone))
    (gone / "tile_0.png").unlink()
    gone.rmdir()
    assert list_sources()[0].format.startswith("missing")


def test_a_folder_of_4_band_geotiffs_is_described_with_its_bands(tmp_path: Path) -> None:
    import rasterio

    folder = tmp_path / "rgbn"
    folder.mkdir()
    with rasterio.open(folder / "a.tif", "w", driver="GTiff", width=16, height=16, count=4, dtype="uint16") as dst:
        dst.write(np.random.default_rng(0).integers(0, 4000, (4, 16, 16)).astype("uint16"))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "rgb.png")
    info = describe(folder)
    assert info.bands == ["R", "G", "B", "NIR"] and info.images == 1
    rgb = tmp_path / "plain"
    rgb.mkdir()
    (tmp_path / "rgb.png").rename(rgb / "rgb.png")
    assert describe(rgb).bands is None  # RGB: the default rule, nothing to say


# ------------------------------------------------------------------------------------------------ untrusted file
def _settings(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sources.json"


@pytest.mark.parametrize("text", ['{"sources": null}', "42", '{"sources": {"path": "/x"}}', "not json {",
                                  "[" * 100_000 + "]" * 100_000],
                         ids=["sources-null", "a-number", "sources-not-a-list", "not-json", "nested-too-deep"])
def test_a_settings_file_that_is_not_ours_is_set_aside_and_add_repairs_it(tmp_path: Path, text: str) -> None:
    """Issue 29: a broken sources.json broke the Pretrain page ("'NoneType' object is not iterable"); now it is no
    source, said once in a line naming where it went, and the next Add writes a new list."""
    from core.store.sources import settings_problem

    f = _settings(tmp_path)
    f.parent.mkdir(parents=True)
    assert settings_problem() is None  # no file at all is no problem
    f.write_text(text)
    assert list_sources() == [] and settings_problem() is not None
    assert "set aside" in settings_problem() and not f.exists()
    add_source(images(tmp_path / "mine", 2))
    assert [s.images for s in list_sources()] == [2] and settings_problem() is None


def test_entries_are_checked_by_adds_rules_and_the_whole_disk_is_never_a_source(tmp_path: Path) -> None:
    import json

    good = images(tmp_path / "good", 1)
    f = _settings(tmp_path)
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"sources": [
        {"path": "/"}, {"path": str(Path.home())}, {"path": "relative/dir"}, {"path": 7}, "just text",
        {"path": str(good), "images": "many"}, {"path": str(tmp_path / "x" / ".." / "good")},
        {"path": str(good), "images": float("inf")}, {"path": str(good), "added": float("nan")},
        {"path": str(good), "format": "a folder", "images": 1, "labels": "yes"}]}))
    (s,) = list_sources()
    assert s.path == str(good) and s.images == 1 and s.labels is False  # "yes" is not a boolean
    with pytest.raises(PathRefused):
        resolve_under("/etc/passwd")  # "/" in the file opened nothing


def test_a_fifo_named_like_an_image_is_skipped_not_opened(tmp_path: Path) -> None:
    import os

    folder = images(tmp_path / "tiles", 2)
    os.mkfifo(folder / "a.png")  # opening it would block until a writer comes: Add hung for ever
    info = add_source(folder)
    assert info.images == 2
