"""Data layer: synthetic scenes and their cache, folder tiling with bad files, batched two-view augmentation."""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import core.data.synthetic as synthetic
from core.data.paths import publish_dir, temp_dir_for
from core.config import DataConfig
from core.data import (CLASSES, IMAGENET_MEAN, IMAGENET_STD, DataError, ImageFolderTiles, SyntheticAerial,
                       TwoViewAugment, build_dataset, data_root, generate_scene)


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    """Every test writes its caches under its own temp folder, never the repository's data/."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))


# ------------------------------------------------------------------------------------------------ paths
def test_data_root_follows_env(tmp_path, monkeypatch):
    assert data_root() == tmp_path / "data"
    monkeypatch.delenv("FALSE_WB_DATA")
    assert data_root().name == "data" and (data_root().parent / "core").is_dir()


# ------------------------------------------------------------------------------------------------ synthetic
def test_generate_scene_is_deterministic_and_labelled():
    img, lab = generate_scene(7, 64)
    img2, lab2 = generate_scene(7, 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert lab.shape == (64, 64) and lab.dtype == np.uint8
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    img3, _ = generate_scene(8, 64)
    assert not np.array_equal(img, img3)
    assert len(CLASSES) == 6 and CLASSES[1] == ("building", (0, 0, 255))


def test_scenes_cover_several_classes_and_vary():
    present, dominant = set(), set()
    for seed in range(8):
        img, lab = generate_scene(seed, 128)
        assert lab.max() <= 5
        assert img.std() > 10  # texture, not a flat colour
        present |= set(np.unique(lab).tolist())
        dominant.add(int(np.bincount(lab.ravel(), minlength=6).argmax()))
    assert len(present) >= 5, present
    assert len(dominant) >= 2, dominant


def test_synthetic_dataset_items_and_batches(tmp_path):
    ds = SyntheticAerial(num_tiles=8, tile_size=64, seed=3, progress=False)
    assert ds.cache_dir == tmp_path / "data" / "synthetic" / "n8_s64_seed3"
    assert {p.name for p in ds.cache_dir.iterdir()} == {"images.npy", "labels.npy", "meta.json"}
    assert len(ds) == 8 and ds.has_labels and ds.classes == CLASSES
    item = ds[2]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.long
    assert item["index"] == 2
    batch = ds.get_images(np.array([5, 2, 2]))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)  # the cache's layout: no transposing copy
    assert torch.equal(batch[1], item["image"]) and torch.equal(batch[2], item["image"])
    hist = ds.class_histogram(2)
    assert hist.shape == (6,) and hist.sum() == pytest.approx(1.0)
    assert ds.dominant_class(2) == int(np.argmax(hist))
    img, lab = generate_scene(synthetic.tile_seed(3, 2), 64)  # the cache holds exactly the generated scene
    assert np.array_equal(ds.images[2], img) and np.array_equal(ds.labels[2], lab)
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers: small pickle, memmap reopened
    assert len(pickle.dumps(ds)) < 10_000 and torch.equal(clone.get_images([2])[0], item["image"])


def test_synthetic_cache_is_reused_and_seeds_differ(tmp_path, monkeypatch):
    first = SyntheticAerial(num_tiles=4, tile_size=32, seed=0, progress=False)
    mtime = (first.cache_dir / "images.npy").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(synthetic, "generate_scene", boom)
    again = SyntheticAerial(num_tiles=4, tile_size=32, seed=0, progress=False)
    assert (again.cache_dir / "images.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(first.images, again.images)
    monkeypatch.undo()
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    other = SyntheticAerial(num_tiles=4, tile_size=32, seed=1, progress=False)
    assert other.cache_dir != first.cache_dir and not np.array_equal(first.images, other.images)
    assert not list(other.cache_dir.parent.glob(".*"))  # no temp folders left behind


def test_synthetic_rebuilds_a_broken_cache(tmp_path):
    broken = tmp_path / "data" / "synthetic" / "n4_s32_seed0"
    broken.mkdir(parents=True)
    (broken / "images.npy").write_bytes(b"not an array")
    ds = SyntheticAerial(num_tiles=4, tile_size=32, seed=0, progress=False)
    assert ds.images.shape == (4, 32, 32, 3)
    assert json.loads((broken / "meta.json").read_text())["num_tiles"] == 4


def test_publish_keeps_the_first_complete_cache(tmp_path):
    final = tmp_path / "cache" / "x"
    for payload in ("first", "second"):
        tmp = temp_dir_for(final)
        (tmp / "meta.json").write_text(payload)
        publish_dir(tmp, final)
        assert not tmp.exists()
    assert (final / "meta.json").read_text() == "first"


def test_build_dataset_from_config(tmp_path):
    every = build_dataset(DataConfig(name="synthetic", num_tiles=10, tile_size=32, seed=5,
                                     pretrain_splits=["train", "val", "test"]), progress=False)
    assert len(every) == 10 and every.has_labels
    ds = build_dataset(DataConfig(name="synthetic", num_tiles=10, tile_size=32, seed=5), progress=False)
    assert len(ds) == 8 and ds.pretrain_splits == ["train"]  # one validation and one test tile never pretrained on
    held = set(ds.split_scenes["val"]) | set(ds.split_scenes["test"])
    assert len(held) == 2 and not held & {ds.scene_names[s] for s in ds.scene_ids}
    assert np.array_equal(ds.get_images([0, 3]).numpy(), every.get_images(ds.indices[[0, 3]]).numpy())
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")  # 2 x 2 overlapping tiles
    ds = build_dataset(DataConfig(name="folder", root=str(folder), tile_size=32), progress=False)
    assert isinstance(ds, ImageFolderTiles) and len(ds) == 4


# ------------------------------------------------------------------------------------------------ folder
@pytest.fixture
def messy_folder(tmp_path):
    """A folder like a real download: mixed formats and depths, a big scene, a tiny chip, two broken files."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imagery"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "sub" / "b.JPG", quality=90)
    grey16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7 + 1000).astype(np.uint16)
    Image.fromarray(grey16).save(root / "sub" / "c.tif")
    rgba = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "deeper" / "d.png")
    Image.fromarray(rng.integers(0, 255, (100, 150, 3), dtype=np.uint8)).save(root / "big.png")
    Image.fromarray(rng.integers(0, 255, (10, 12), dtype=np.uint8)).save(root / "tiny.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "cut.jpg", quality=95)
    data = (root / "cut.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_tiles_every_readable_image(messy_folder, tmp_path):
    with pytest.warns(UserWarning, match="skipping unreadable image") as record:
        ds = ImageFolderTiles(messy_folder, tile_size=64, progress=False)
    warned = " ".join(str(w.message) for w in record)
    assert "corrupt.png" in warned and "cut.jpg" in warned
    assert sorted(rel for rel, _ in ds.skipped) == ["corrupt.png", "cut.jpg"]
    assert all(reason for _, reason in ds.skipped)
    # a.png, b.JPG, c.tif, d.png, tiny.png: one tile each; big.png 100x150 -> 2 rows x 3 columns (edge-aligned)
    sources = [ds[i]["source"] for i in range(len(ds))]
    assert sources.count("big.png") == 6 and len(ds) == 11
    assert {"a.png", "sub/b.JPG", "sub/c.tif", "sub/deeper/d.png", "tiny.png"} <= set(sources)
    assert [ds.tile_info(i)["x"] for i in range(len(ds)) if sources[i] == "big.png"] == [0, 64, 86] * 2
    batch = ds.get_images(range(len(ds)))
    assert batch.shape == (11, 3, 64, 64) and batch.dtype == torch.uint8
    assert not ds.has_labels and ds.cache_dir.parent == tmp_path / "data" / "cache"
    grey = ds[sources.index("sub/c.tif")]["image"]
    assert torch.equal(grey[0], grey[1]) and grey.min() == 0 and grey.max() == 255  # 16-bit stretched
    a = np.asarray(Image.open(messy_folder / "a.png"))
    assert np.array_equal(ds[sources.index("a.png")]["image"].permute(1, 2, 0).numpy(), a)


def test_folder_cache_is_reused_and_still_reports_skips(messy_folder):
    with pytest.warns(UserWarning):
        first = ImageFolderTiles(messy_folder, tile_size=64, progress=False)
    mtime = (first.cache_dir / "images.npy").stat().st_mtime_ns
    with pytest.warns(UserWarning, match="skipping unreadable image") as record:
        again = ImageFolderTiles(messy_folder, tile_size=64, progress=False)
    assert sum("corrupt.png" in str(w.message) or "cut.jpg" in str(w.message) for w in record) == 2
    assert again.cache_dir == first.cache_dir and again.skipped == first.skipped
    assert (again.cache_dir / "images.npy").stat().st_mtime_ns == mtime
    with pytest.warns(UserWarning):
        strided = ImageFolderTiles(messy_folder, tile_size=64, stride=32, progress=False)
    assert strided.cache_dir != first.cache_dir and len(strided) > len(first)
    import core.data.folder as folder_module

    import core.data.paths as paths

    with pytest.warns(UserWarning), pytest.MonkeyPatch.context() as mp:  # new tiling code: the old cache goes
        mp.setattr(paths, "_alive", lambda pid: False)  # once no live process reads it
        mp.setattr(folder_module, "code_version", lambda *a, **k: "a later version of the tiling code")
        newer = ImageFolderTiles(messy_folder, tile_size=64, progress=False)
    assert newer.cache_dir != first.cache_dir and not first.cache_dir.exists() and strided.cache_dir.exists()


def test_folder_errors_name_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="data folder not found: .*nope"):
        ImageFolderTiles(missing)
    (tmp_path / "a.png").write_bytes(b"")  # a path that exists: not "not found" (a walkthrough)
    with pytest.raises(DataError, match="data.root is a file, not a folder: .*a.png"):
        ImageFolderTiles(tmp_path / "a.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no pictures here")
    with pytest.raises(DataError, match="no images .* in data folder: .*empty"):
        ImageFolderTiles(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no readable images in data folder: .*broken"):
            ImageFolderTiles(broken, progress=False)
    huge = tmp_path / "huge"
    huge.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(huge / "bomb.png")
    monkeypatch.setattr("core.data.folder.MAX_PIXELS", 1000)
    with pytest.warns(UserWarning, match="too large") as said, pytest.raises(DataError):
        ImageFolderTiles(huge, tile_size=32, progress=False)
    text = " ".join(str(w.message) for w in said)  # training has no budget flag to raise: not sent to one
    assert "cut it into smaller files to train on it" in text and "--max-megapixels" not in text


# ------------------------------------------------------------------------------------------------ augment
def _images(b=6, size=64, seed=0):
    return torch.from_numpy(np.stack([generate_scene(seed + i, size)[0] for i in range(b)])).permute(0, 3, 1, 2)


def test_two_views_shapes_ids_and_reproducibility():
    images, idx = _images(), torch.tensor([10, 11, 12, 13, 14, 15])
    aug = TwoViewAugment(output_size=32)
    views, ids = aug(images, idx, torch.Generator().manual_seed(1))
    assert views.shape == (12, 3, 32, 32) and views.dtype == torch.float32 and views.is_contiguous()
    assert torch.equal(ids, torch.cat([idx, idx]))
    assert torch.isfinite(views).all()
    assert abs(views.mean().item()) < 1.0 and 0.3 < views.std().item() < 2.0
    again, _ = aug(images, idx, torch.Generator().manual_seed(1))
    assert torch.equal(views, again)
    other, _ = aug(images, idx, torch.Generator().manual_seed(2))
    assert not torch.equal(views, other)
    for i in range(6):  # the two views of one image differ
        assert not torch.allclose(views[i], views[6 + i], atol=1e-3)


def test_augment_identity_settings_and_flip_are_exact():
    images = _images(b=3, size=32)
    plain = dict(output_size=32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), color_prob=0.0, gray_prob=0.0,
                 blur_prob=0.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean) / std
    views, _ = TwoViewAugment(flip_prob=0.0, **plain)(images, torch.arange(3))
    assert torch.allclose(views, torch.cat([expected, expected]), atol=1e-5)
    views, _ = TwoViewAugment(flip_prob=1.0, **plain)(images, torch.arange(3))
    assert torch.allclose(views[:3], expected.flip(-1), atol=1e-5)
    no_op_colour = TwoViewAugment(flip_prob=0.0, **{**plain, "color_prob": 1.0}, color_strength=0.0)
    assert torch.allclose(no_op_colour(images, torch.arange(3))[0][:3], expected, atol=1e-4)
    grey, _ = TwoViewAugment(flip_prob=0.0, **{**plain, "gray_prob": 1.0})(images, torch.arange(3))
    grey = grey * std + mean
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-5) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-5)
    single = TwoViewAugment(output_size=16).single_view(images)
    assert single.shape == (3, 3, 16, 16) and torch.isfinite(single).all()


def test_the_blur_is_the_separable_gaussian_with_reflected_borders() -> None:
    """The blur is made by matrix products: it must be the reflect-padded separable convolution it replaced, and leave
    the views it does not blur untouched."""
    import torch.nn.functional as F

    for size in (24, 33, 96):  # kernels of 3 and 9 taps: reflections one and four pixels deep
        aug = TwoViewAugment(output_size=size, blur_prob=0.5, blur_sigma=(0.5, 3.0))
        p = aug.sample(5, 128, 128, torch.Generator().manual_seed(size))
        rows = p["blur_rows"]
        assert 0 < rows.numel() < 10
        v = torch.rand(10, 3, size, size, generator=torch.Generator().manual_seed(1))
        out = aug._blur(v, p)
        k = aug.kernel_size
        t = torch.arange(k, dtype=torch.float32) - k // 2
        for i in rows.tolist():
            w = torch.exp(-0.5 * (t / p["sigma"][i]) ** 2)
            w = (w / w.sum()).repeat(3, 1)
            x = F.conv2d(F.pad(v[i:i + 1], (0, 0, k // 2, k // 2), mode="reflect"), w.view(3, 1, k, 1), groups=3)
            x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), w.view(3, 1, 1, k), groups=3)
            assert torch.allclose(out[i], x[0], rtol=0, atol=1e-6)
        kept = [i for i in range(10) if i not in rows.tolist()]
        assert torch.equal(out[kept], v[kept])


def test_augment_downscales_large_tiles_and_blurs():
    images = _images(b=4, size=128)
    aug = TwoViewAugment(output_size=24, blur_prob=1.0)
    assert aug.kernel_size % 2 == 1
    views, ids = aug(images, torch.arange(4), torch.Generator().manual_seed(0))
    assert views.shape == (8, 3, 24, 24) and torch.isfinite(views).all()
    with pytest.raises(ValueError, match="crop_scale"):
        TwoViewAugment(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        aug(images[0], torch.arange(1))


def test_symlinks_out_of_the_data_folder_are_not_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    root, elsewhere = tmp_path / "imgs", tmp_path / "private"
    root.mkdir()
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "own.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(elsewhere / "secret.png")
    (root / "secret.png").symlink_to(elsewhere / "secret.png")
    (root / "copy.png").symlink_to(root / "own.png")  # a link that stays inside is fine
    with pytest.warns(UserWarning, match="leads outside the data folder"):
        ds = ImageFolderTiles(root, tile_size=64, progress=False)
    assert sorted(ds[i]["source"] for i in range(len(ds))) == ["copy.png", "own.png"]
    assert ds.skipped == [("secret.png", "a symlink that leads outside the data folder")]


def test_a_tiff_without_rasterio_is_skipped_with_the_way_to_get_it(tmp_path, monkeypatch):
    """A trimmed environment without rasterio (a GPU image) once crashed the whole tiling on the first GeoTIFF."""
    import sys

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio now raises ImportError
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "photo.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "ortho.tif")
    with pytest.warns(UserWarning, match="ortho.tif"):
        ds = ImageFolderTiles(root, tile_size=64, progress=False)
    assert [ds[i]["source"] for i in range(len(ds))] == ["photo.png"]
    assert ds.skipped == [("ortho.tif", "reading TIFF files (and 16-bit PNGs) needs the rasterio package, which is "
                                        "not installed here (pip install rasterio)")]


def test_a_band_stretch_without_rasterio_leaves_the_reasons_to_the_tiling(tmp_path, monkeypatch):
    import sys

    from core.imaging.raster import dataset_stretch

    monkeypatch.setitem(sys.modules, "rasterio", None)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.tif")
    assert dataset_stretch([tmp_path / "a.tif"], ["R", "G", "B"]) is None


def test_halving_a_tile_is_avg_pool_bit_for_bit() -> None:
    """The augmentation's pyramid step replaced F.avg_pool2d for speed; its views must not move by a bit."""
    import torch.nn.functional as F

    from core.data.augment import halve

    g = torch.Generator().manual_seed(0)
    for shape in ((4, 3, 64, 64), (2, 4, 33, 47), (1, 3, 2, 3)):
        x = torch.rand(*shape, generator=g)
        assert torch.equal(halve(x), F.avg_pool2d(x, 2))
    x = torch.rand(2, 3, 40, 40, generator=g).contiguous(memory_format=torch.channels_last)
    assert torch.equal(halve(x), F.avg_pool2d(x, 2))


def test_half_size_tiles_are_the_exact_means_of_their_pixels() -> None:
    """``halve_to_float`` sums each 2x2 block of uint8 tiles as integers and divides once: the correctly rounded
    mean, within an ulp of the float path (which rounds four times), for odd sides and channels-last tiles too."""
    import torch.nn.functional as F

    from core.data.augment import halve, halve_to_float, to_float

    g = torch.Generator().manual_seed(3)
    for shape in ((6, 3, 96, 90), (2, 4, 7, 9), (1, 3, 2, 2)):
        tiles = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        tiles[0, 0, :2, :2] = 255  # the largest block sum, 1020
        exact = F.avg_pool2d(tiles.double(), 2).float()  # sums of four integers over 4 x 255: exact in float64
        out = halve_to_float(tiles)
        assert out.dtype == torch.float32 and torch.equal(out, (F.avg_pool2d(tiles.float(), 2) * 4).div(1020))
        assert torch.allclose(out, exact / 255, rtol=0, atol=1.2e-7) and out[0, 0, 0, 0] == 1
        assert torch.allclose(out, halve(to_float(tiles, shape[1])), rtol=0, atol=1.2e-7)
        last = tiles.contiguous(memory_format=torch.channels_last)  # a cache's layout, summed in it
        assert halve_to_float(last).is_contiguous(memory_format=torch.channels_last) == (shape[1] > 1)
        assert torch.equal(halve_to_float(last), out) and torch.equal(halve_to_float(last[:, :, 1:, :-1]),
                                                                        halve_to_float(tiles[:, :, 1:, :-1]))
    floats = torch.rand(2, 3, 8, 8, generator=g)
    assert torch.equal(halve_to_float(floats), halve(floats))  # float tiles: the float path


def test_views_from_the_tiles_equal_views_from_their_float_copy_bit_for_bit() -> None:
    """The crop reads the half-size level straight from uint8 tiles and converts only the few full-size crops: the
    views must be those of the plain path (every level sampled) to the last bit, and those of the same tiles given
    as floats to the rounding of the half-size level."""
    import torch.nn.functional as F

    from core.data.augment import TwoViewAugment, to_float

    g = torch.Generator().manual_seed(3)
    tiles = torch.randint(0, 256, (6, 3, 96, 90), dtype=torch.uint8, generator=g)
    aug = TwoViewAugment(output_size=24, crop_scale=(0.05, 1.0))
    ids = torch.arange(6)
    for seed in range(4):
        params = aug.sample(6, 96, 90, torch.Generator().manual_seed(seed))
        assert params["full_rows"].numel() and len(params["levels"]) > 1  # both paths exercised
        fast, _ = aug.apply(tiles, ids, params)
        plain, _ = aug.apply(tiles, ids, {k: v for k, v in params.items() if k != "full_rows"})
        assert torch.equal(fast, plain)
        floats = aug.apply(to_float(tiles), ids, params)[0]  # float tiles in [0, 1]: their level 1 in floats
        assert torch.allclose(fast, floats, rtol=0, atol=1e-5)  # (normalised views: an ulp of [0, 1] over 0.225)
        grid = F.affine_grid(params["theta"], [12, 3, 24, 24], align_corners=False)
        assert torch.allclose(aug.crop_grid(params), grid, rtol=0, atol=2.5e-7)  # affine_grid's, to an ulp


def test_a_second_asker_for_a_cache_being_built_waits_and_reads_it(tmp_path, monkeypatch) -> None:
    """A fine-tuning run and its baseline, launched together, each generated the same synthetic set; now the
    second waits for the first (``one_builder``) and reads its cache: one generation."""
    import threading

    from core.data.paths import one_builder

    final, order = tmp_path / "cache" / "x", []
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with one_builder(final, "x"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    threading.Timer(0.8, release.set).start()
    with one_builder(final, "x"):  # a separate open file: flock holds it off as it would another process
        order.append("second in")
    t.join()
    assert order == ["first in", "first out", "second in"]

    calls = []
    real = synthetic.SyntheticAerial._generate

    def counted(self, size):
        calls.append(size)
        return real(self, size)

    monkeypatch.setattr(synthetic.SyntheticAerial, "_generate", counted)
    sets = []
    makers = [threading.Thread(target=lambda: sets.append(SyntheticAerial(root=tmp_path, num_tiles=6, tile_size=16,
                                                                          progress=False))) for _ in range(2)]
    for m in makers:
        m.start()
    for m in makers:
        m.join()
    assert len(calls) == 1 and len(sets) == 2 and all(len(s) == 6 for s in sets)


def test_a_data_folder_that_cannot_be_written_is_one_line(tmp_path) -> None:
    """A review: FALSE_WB_DATA read-only, or a file, ended pretraining in a 56-line traceback."""
    from core.data import DataError
    from core.data.paths import one_builder

    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"the data folder .*afile/synthetic cannot be written \(.*\): set "
                                        "FALSE_WB_DATA to a folder this user can write"):
        with one_builder(tmp_path / "afile" / "synthetic" / "tiles", "these tiles"):
            pass
