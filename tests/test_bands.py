"""Multi-band imagery: band names and reading, encoders and augmentation for N bands, and a folder of 4-band
16-bit GeoTIFFs through pretraining, fine-tuning and ``core.segment`` (georeference kept, bands on the card)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from core.data.augment import TwoViewAugment
from core.data.folder import ImageFolderTiles
from core.data.seg_augment import SegAugment
from core.imaging.band_preview import preview
from core.imaging.raster import file_bands, read_bands
from core.imaging.bands import BandError, band_norm, file_band_names, resolve
from core.imaging.model_bands import band_nodata_mask, model_pixels
from core.imaging.imageio import read_image
from core.seg.finetune_cli import main as finetune_main
from core.seg.segment_cli import main as segment_main
from core.seg.segmodel import load_seg_model
from core.ssl.models import adapt_first_conv, build_encoder
from core.ssl.pretrain import main as pretrain_main
from core.store.checkpoint import read_metadata
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
SIDE = 64
TRANSFORM = from_origin(500_000, 4_000_000, 0.5, 0.5)


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 4-band uint16 scene (R, G, B, NIR) and its labels: vegetation (1) bright in NIR, ground (0) dark; in RGB
    the two are the same grey, so only NIR tells them apart."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((SIDE, SIDE), np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, SIDE - 20, 2)
        lab[y:y + 20, x:x + 20] = 1
    grey = rng.integers(9000, 11000, (SIDE, SIDE))
    nir = np.where(lab == 1, 30000, 4000) + rng.integers(0, 2000, (SIDE, SIDE))
    return np.stack([grey, grey, grey, nir]).astype(np.uint16), lab


def write_tif(path: Path, bands: np.ndarray, descriptions: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=str(bands.dtype), crs="EPSG:32633", transform=TRANSFORM) as dst:
        dst.write(bands)
        for i, d in enumerate(descriptions or []):
            dst.set_band_description(i + 1, d)


@pytest.fixture()
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture()
def rgbn_folder(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "rgbn"
    for k in range(6):
        bands, lab = scene(k)
        write_tif(root / "images" / f"scene_{k}.tif", bands)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(root / "masks" / f"scene_{k}.png")
    table = tmp_path / "veg.yaml"
    table.write_text("name: veg\nmask_format: index\nclasses: [{name: ground, color: [200, 180, 140]}, "
                     "{name: vegetation, color: [40, 160, 40]}]\nimages: images\nmasks: masks\n")
    return root, table


# ------------------------------------------------------------------------------------------------ names, reading
def test_band_names_follow_descriptions_colour_and_count() -> None:
    assert file_band_names(3) == ["R", "G", "B"]
    assert file_band_names(4) == ["R", "G", "B", "NIR"]  # Potsdam's RGBIR
    assert file_band_names(4, interp=["red", "green", "blue", "alpha"]) == ["R", "G", "B", "alpha"]
    assert file_band_names(4, interp=["blue", "green", "red", "undefined"]) == ["B", "G", "R", "NIR"]  # PlanetScope
    assert file_band_names(3, interp=["blue", "green", "red"]) == ["B", "G", "R"]
    assert file_band_names(3, descriptions=["near-infrared", "Red", "green"]) == ["NIR", "R", "G"]  # IRRG
    assert file_band_names(5) == ["band1", "band2", "band3", "band4", "band5"]
    assert resolve(["NIR", "R"], ["R", "G", "B", "NIR"], "f.tif") == ([3, 0], ["NIR", "R"])
    with pytest.raises(BandError, match=r"f.tif has no NIR band \(its bands: R, G, B\)"):
        resolve(["R", "NIR"], ["R", "G", "B"], "f.tif")
    with pytest.raises(BandError, match=r"f.tif has 3 band\(s\).*band index 5"):
        resolve([5], ["R", "G", "B"], "f.tif")


def test_reading_bands_stretches_16_bit_and_refuses_an_empty_band(tmp_path: Path) -> None:
    bands, _ = scene(0)
    path = tmp_path / "a.tif"
    write_tif(path, bands)
    got = read_bands(path, ["NIR", "R"])
    assert got.names == ["NIR", "R"] and got.pixels.shape == (SIDE, SIDE, 2) and got.dtype == "uint16"
    assert got.pixels[..., 0].max() == 255 and got.profile is not None and got.pixel_size_m == pytest.approx(0.5)
    fixed = read_bands(path, ["NIR"], stretch=[[0.0, 65535.0]])  # the data set's stretch, not the image's
    assert fixed.pixels.max() < 200
    empty = bands.copy()
    empty[3] = 0
    write_tif(tmp_path / "zero.tif", empty)
    with pytest.raises(BandError, match=r"zero.tif: band 4 \(NIR\) is zero everywhere"):
        read_bands(tmp_path / "zero.tif", ["R", "G", "B", "NIR"])
    jpg = tmp_path / "c.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(jpg)
    with pytest.raises(BandError, match=r"c.jpg has no NIR band"):
        read_bands(jpg, ["R", "G", "B", "NIR"])


def test_read_image_keeps_every_band_beside_the_rgb_picture(tmp_path: Path) -> None:
    bands, _ = scene(1)
    write_tif(tmp_path / "a.tif", bands)
    loaded = read_image(tmp_path / "a.tif")
    assert loaded.rgb.shape == (SIDE, SIDE, 3)  # the RGB rule as before: bands 1-3
    assert loaded.band_names == ["R", "G", "B", "NIR"] and loaded.bands.shape == (SIDE, SIDE, 4)
    card = {"bands": ["R", "G", "B", "NIR"], "band_stretch": [[0, 65535]] * 4}
    px = model_pixels(loaded, card)
    assert px.shape == (SIDE, SIDE, 4) and px[..., 3].max() < 200  # the card's stretch, from the raw samples
    assert model_pixels(loaded, {}) is loaded.rgb  # an RGB model reads what it always read
    false = preview(loaded.bands, loaded.band_names, "false")
    assert np.array_equal(false[..., 0], loaded.bands[..., 3])


def test_a_folder_with_mixed_band_counts_skips_the_file_naming_its_band(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_tif(folder / "four.tif", scene(0)[0])
    write_tif(folder / "three.tif", scene(1)[0][:3])
    with pytest.warns(UserWarning, match=r"three.tif: .*no NIR band"):
        ds = ImageFolderTiles(folder, tile_size=32, cache_root=tmp_path / "c", progress=False,
                              bands=["R", "G", "B", "NIR"])
    assert ds.band_names == ("R", "G", "B", "NIR") and ds.images.shape[-1] == 4
    assert [s[0] for s in ds.skipped] == ["three.tif"] and "NIR" in ds.skipped[0][1]
    assert ds.band_stretch is not None and len(ds.band_stretch) == 4


# ------------------------------------------------------------------------------------------------ models, augmentation
def test_an_rgb_checkpoint_starts_an_rgbn_encoder_with_the_rgb_mean_for_nir(tmp_path: Path) -> None:
    rgb = build_encoder("resnet18")
    state = adapt_first_conv(rgb.state_dict(), ["NIR", "R", "G", "B"])
    w, w3 = state["conv1.weight"], rgb.state_dict()["conv1.weight"]
    assert w.shape[1] == 4 and torch.equal(w[:, 1:], w3) and torch.allclose(w[:, 0], w3.mean(dim=1))
    from safetensors.torch import save_file
    save_file({f"encoder.{k}": v for k, v in rgb.state_dict().items()}, str(tmp_path / "enc.safetensors"))
    enc = build_encoder("resnet18", tmp_path / "enc.safetensors", ["R", "G", "B", "NIR"])
    assert enc.state_dict()["conv1.weight"].shape[1] == 4
    assert enc.eval()(torch.zeros(1, 4, 64, 64))[-1].shape[1] == 512


def test_rgb_normalisation_is_imagenet_and_other_bands_get_their_own() -> None:
    mean, std = band_norm(["R", "G", "B", "NIR"])
    assert mean[:3] == [0.485, 0.456, 0.406] and std[:3] == [0.229, 0.224, 0.225] and (mean[3], std[3]) == (0.5, 0.25)


def test_colour_jitter_and_grey_touch_only_rgb_while_geometry_moves_every_band() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8, generator=g)
    four = torch.cat([base, base[:, :1]], dim=1)  # NIR = R
    aug = TwoViewAugment(output_size=24, color_strength=0.0, gray_prob=1.0, blur_prob=0.0,
                         bands=["R", "G", "B", "NIR"])
    views, _ = aug(four, torch.arange(4), torch.Generator().manual_seed(1))
    mean, std = band_norm(["R", "G", "B", "NIR"])
    px = views * torch.tensor(std).view(1, 4, 1, 1) + torch.tensor(mean).view(1, 4, 1, 1)
    assert torch.allclose(px[:, 0], px[:, 1], atol=1e-5)  # R, G, B greyed
    rgb_only = TwoViewAugment(output_size=24, color_strength=0.0, gray_prob=0.0, blur_prob=0.0)
    ref, _ = rgb_only(base, torch.arange(4), torch.Generator().manual_seed(1))
    red = ref[:, 0] * 0.229 + 0.485
    assert torch.allclose(px[:, 3], red, atol=1e-5)  # NIR: the same crop as R, never greyed
    seg = SegAugment(32, bands=["R", "G", "B", "NIR"])
    x, m = seg(four, torch.zeros(4, 48, 48, dtype=torch.long), torch.Generator().manual_seed(2))
    assert x.shape == (4, 4, 32, 32) and m.shape == (4, 32, 32)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_rgbn_geotiffs_pretrain_finetune_and_segment_with_bands_on_the_card(roots: Path, rgbn_folder,
                                                                            capsys: pytest.CaptureFixture) -> None:
    root, table = rgbn_folder
    bands = "data.bands=[R,G,B,NIR]"
    assert pretrain_main(["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "name=pre4",
                          "data.name=folder", f"data.root={root / 'images'}", "data.tile_size=32", bands,
                          "data.image_size=32", "model.proj_hidden=32", "model.proj_dim=16", "train.batch_size=4",
                          "train.max_steps=2", "train.optimizer=adamw", "train.knn_every=0"]) == 0
    pre = next(r for r in list_runs(roots / "runs") if "pre4" in r.id)
    enc_card = read_metadata(pre.path / "checkpoints" / "encoder.safetensors")["card"]
    assert enc_card["bands"] == ["R", "G", "B", "NIR"] and len(enc_card["band_stretch"]) == 4
    assert finetune_main(["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress", "name=ft4",
                          "data.name=folder", f"data.root={root}", f"data.class_table={table}", bands,
                          "data.tile_size=32", "data.crop_size=32", "data.val_fraction=0.2",
                          "data.test_fraction=0.2", "train.batch_size=4", "train.max_steps=3",
                          "train.eval_every=3", f"model.init={pre.path}", "train.test_tile=64"]) == 0
    ft = next(r for r in list_runs(roots / "runs") if "ft4" in r.id)
    best = ft.path / "checkpoints" / "best.safetensors"
    model, card = load_seg_model(best)
    assert card["bands"] == ["R", "G", "B", "NIR"] and len(card["normalization"]["mean"]) == 4
    assert card["band_stretch"] == enc_card["band_stretch"]
    assert model(torch.zeros(1, 4, 32, 32)).shape == (1, 2, 32, 32)

    out = roots / "out"
    rgb_png = roots / "plain.png"
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(rgb_png)
    code = segment_main([str(root / "images" / "scene_0.tif"), str(rgb_png), "--checkpoint", str(best),
                         "--out", str(out), "--tile", "64"])
    err = capsys.readouterr().err
    assert code != 0 and "plain.png: the image has no NIR band (its bands: R, G, B); the model reads R, G, B, NIR" in err
    report = json.loads((out / "scene_0_report.json").read_text())  # the other image was still segmented
    assert report["model"]["name"].endswith("best.safetensors")
    with rasterio.open(out / "scene_0_mask.tif") as src:
        assert src.transform == TRANSFORM and src.crs.to_epsg() == 32633 and src.count == 1


def test_potsdam_reads_its_rgbir_orthophotos_and_vaihingen_names_its_irrg_bands(tmp_path: Path) -> None:
    from core.data.seg_formats import Potsdam, Vaihingen

    isprs = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
    rng = np.random.default_rng(0)
    lab = np.asarray(isprs, np.uint8)[rng.integers(0, 6, (32, 32))]
    pots = tmp_path / "potsdam"
    for sid in ("2_10", "2_11", "3_10"):
        write_tif(pots / "4_Ortho_RGBIR" / f"top_potsdam_{sid}_RGBIR.tif", rng.integers(0, 255, (4, 32, 32)).astype("uint8") | 1)
        (pots / "5_Labels_all").mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(pots / "5_Labels_all" / f"top_potsdam_{sid}_label.tif")
    ds = Potsdam(pots, tile_size=32, progress=False, bands=["R", "G", "B", "NIR"], cache_root=tmp_path / "c")
    assert ds.band_names == ("R", "G", "B", "NIR") and ds.images.shape == (3, 32, 32, 4)
    vai = tmp_path / "vaihingen"
    for area in (1, 3, 5):
        write_tif(vai / "top" / f"top_mosaic_09cm_area{area}.tif", rng.integers(1, 255, (3, 32, 32)).astype("uint8"))
        (vai / "gts_for_participants").mkdir(parents=True, exist_ok=True)
        Image.fromarray(lab).save(vai / "gts_for_participants" / f"top_mosaic_09cm_area{area}.tif")
    v = Vaihingen(vai, tile_size=32, progress=False, bands=["R", "G", "NIR"], cache_root=tmp_path / "c")
    with rasterio.open(vai / "top" / "top_mosaic_09cm_area1.tif") as src:
        irrg = src.read()
    assert v.band_names == ("R", "G", "NIR")
    tile = v.images[0]
    assert np.array_equal(tile[..., 2], irrg[0]) and np.array_equal(tile[..., 0], irrg[1])  # IR is the 1st band


def test_an_8_bit_rgbn_geotiff_marked_rgba_keeps_its_dark_nir_pixels(tmp_path: Path) -> None:
    data = np.full((4, 32, 32), 120, np.uint8)
    data[3, :8] = 0  # water: black in near-infrared, not transparent
    data[3, 8:] = 180
    write_tif(tmp_path / "rgbn8.tif", data)  # GDAL marks the 4th band of a 4-band 8-bit file alpha
    with rasterio.open(tmp_path / "rgbn8.tif") as src:
        assert src.colorinterp[3].name == "alpha"
    loaded = read_image(tmp_path / "rgbn8.tif")
    assert loaded.declared_nodata is None and loaded.band_names == ["R", "G", "B", "NIR"]
    assert any("read as near-infrared" in n for n in loaded.notes)
    rgba = data.copy()
    rgba[3] = np.where(np.arange(32)[None, :] < 4, 0, 255)  # a real alpha band: 0 and 255 only
    write_tif(tmp_path / "rgba.tif", rgba)
    real = read_image(tmp_path / "rgba.tif")
    assert real.declared_nodata is not None and real.declared_nodata[:, :4].all() and real.band_names == ["R", "G", "B"]
    # a NIR band of 0 and 255 almost only is still NIR when it is not opaque where the picture is: a tile mostly
    # outside its footprint (0 in every band there), and a water chip black in near-infrared
    edge = np.zeros((4, 64, 64), np.uint8)
    edge[:, :5] = np.random.default_rng(0).integers(1, 250, (4, 5, 64))
    write_tif(tmp_path / "edge.tif", edge)
    water = np.full((4, 32, 32), 90, np.uint8)
    water[3] = 0
    write_tif(tmp_path / "water.tif", water)
    for name in ("edge.tif", "water.tif"):
        assert file_bands(tmp_path / name) == ["R", "G", "B", "NIR"], name
    # transparency over white fill stays transparency: all of it, or all but a small opaque patch
    white = np.full((4, 32, 32), 255, np.uint8)
    white[3] = 0
    write_tif(tmp_path / "clear.tif", white)
    white[:, :2, :2] = 77
    white[3, :2, :2] = 255
    write_tif(tmp_path / "patch.tif", white)
    for name in ("clear.tif", "patch.tif"):
        assert file_bands(tmp_path / name) == ["R", "G", "B", "alpha"], name


def test_band_names_from_descriptions_are_kept_and_an_alpha_after_rgbn_is_not_a_band() -> None:
    sentinel = file_band_names(4, descriptions=["B2", "B3", "B4", "B8"])
    assert sentinel == ["B2", "B3", "B4", "B8"]  # not renamed R, G, B, NIR by their count
    assert file_band_names(5, interp=["red", "green", "blue", "undefined", "alpha"]) == ["R", "G", "B", "NIR", "alpha"]
    from workbench.form_errors import text_to_bands
    assert text_to_bands("R, G, B, near infrared") == ["R", "G", "B", "near infrared"]
    assert text_to_bands("0 1 2 3") == [0, 1, 2, 3] and text_to_bands("  ") is None


def test_soft_alpha_edges_and_16_bit_alpha_stay_transparency(tmp_path: Path) -> None:
    data = np.full((4, 32, 32), 120, np.uint8)
    data[3] = 255
    data[3, :, :8] = 0
    data[3, :, 8] = 128  # a soft edge: 1 column of 32 in between
    write_tif(tmp_path / "soft.tif", data)
    soft = read_image(tmp_path / "soft.tif")
    assert soft.declared_nodata is not None and soft.declared_nodata[:, :8].all() and soft.band_names == ["R", "G", "B"]


def test_auto_choice_never_picks_a_model_that_cannot_read_the_image(tmp_path: Path) -> None:
    from core.seg.model_choice import choose_model
    from core.store.catalog import ModelEntry

    rgbn = ModelEntry("run: rgbn", tmp_path / "a.safetensors", {"bands": ["R", "G", "B", "NIR"], "classes": []})
    rgb = ModelEntry("run: rgb", tmp_path / "b.safetensors", {"classes": []})  # no fingerprint: "unknown"
    image = np.zeros((64, 64, 3), np.uint8)
    nodata = np.zeros((64, 64), bool)
    choice = choose_model(image, nodata, None, [rgbn, rgb])
    assert choice.entry.label == "run: rgb"
    with pytest.raises(BandError, match="no model reads this image's bands.*no NIR band"):
        choose_model(image, nodata, None, [rgbn])


def test_a_vaihingen_model_reads_irrg_files_by_the_names_on_its_card(tmp_path: Path) -> None:
    irrg = np.stack([np.full((16, 16), v, np.uint8) for v in (200, 90, 60)])  # NIR, R, G as the file holds them
    write_tif(tmp_path / "area1.tif", irrg)
    loaded = read_image(tmp_path / "area1.tif")
    card = {"bands": ["R", "G", "NIR"], "file_bands": ["NIR", "R", "G"]}
    px = model_pixels(loaded, card)
    assert px[0, 0].tolist() == [90, 60, 200]


def test_rgb_tile_caches_read_a_4_band_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.imaging.tiffio as bands_module  # attach_bands lives with the TIFF reader

    write_tif(tmp_path / "f" / "a.tif", scene(0)[0])
    calls: list[int] = []
    real = bands_module.attach_bands
    monkeypatch.setattr(bands_module, "attach_bands", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = ImageFolderTiles(tmp_path / "f", tile_size=32, cache_root=tmp_path / "c", progress=False)
    assert ds.images.shape[-1] == 3 and calls == []  # the RGB picture alone: no second read of every band
    assert read_image(tmp_path / "f" / "a.tif").band_names == ["R", "G", "B", "NIR"] and calls == [1]


def _card(bands: list[str], stretch=None, **extra) -> dict:
    return {"bands": bands, "band_stretch": stretch, **extra}


def test_inference_reads_any_tiff_as_training_did(tmp_path: Path) -> None:
    """model_pixels of the loaded file equals read_bands of the same file with the card's bands and stretch: for
    1-band and 3-band 16-bit files, bands in another order, and an explicit [R, G, B] (by name, not by position)."""
    rng = np.random.default_rng(3)
    one = rng.integers(100, 4000, (1, 24, 24)).astype(np.uint16)
    write_tif(tmp_path / "one.tif", one)
    bgr16 = rng.integers(100, 4000, (3, 24, 24)).astype(np.uint16)
    write_tif(tmp_path / "bgr16.tif", bgr16, ["Blue", "Green", "Red"])
    bgrn = rng.integers(1, 250, (4, 24, 24)).astype(np.uint8)
    write_tif(tmp_path / "bgrn.tif", bgrn, ["Blue", "Green", "Red", "NIR"])
    cases = [("one.tif", ["band1"], [[150.0, 3900.0]]), ("bgr16.tif", ["B", "G", "R"], [[200.0, 3000.0]] * 3),
             ("bgr16.tif", ["R", "G", "B"], [[300.0, 3500.0]] * 3), ("bgrn.tif", ["R", "G", "B"], None)]
    for name, bands, stretch in cases:
        trained = read_bands(tmp_path / name, bands, stretch=stretch).pixels
        served = model_pixels(read_image(tmp_path / name), _card(bands, stretch, bands_by_name=True))
        assert np.array_equal(served, trained), (name, bands)
    plain = model_pixels(read_image(tmp_path / "bgrn.tif"), _card(["R", "G", "B"]))
    assert np.array_equal(plain, np.moveaxis(bgrn[2::-1], 0, -1))
    # ^ a plain RGB model (no data.bands) reads the one RGB picture, made of the bands the file names R, G, B


def test_a_format_s_band_names_never_rename_a_jpeg(tmp_path: Path) -> None:
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "photo.jpg")
    vaihingen = _card(["R", "G", "NIR"], file_bands=["NIR", "R", "G"])
    with pytest.raises(BandError, match="no NIR band"):
        model_pixels(read_image(tmp_path / "photo.jpg"), vaihingen)
    with pytest.raises(BandError, match="no NIR band"):  # training reads it alike
        read_bands(tmp_path / "photo.jpg", ["R", "G", "NIR"], names=["NIR", "R", "G"])
    irrg = np.random.default_rng(0).integers(1, 250, (3, 16, 16)).astype(np.uint8)
    write_tif(tmp_path / "irrg.tif", irrg)
    assert np.array_equal(model_pixels(read_image(tmp_path / "irrg.tif"), vaihingen)[..., 2], irrg[0])
    rgba = np.concatenate([irrg, np.full((1, 16, 16), 255, np.uint8)])
    rgba[3, :4] = 0
    write_tif(tmp_path / "rgba.tif", rgba)  # R, G, B and a real alpha: 4 bands, not the format's 3
    for read in (lambda: read_bands(tmp_path / "rgba.tif", ["R", "G", "NIR"], names=["NIR", "R", "G"]),
                 lambda: model_pixels(read_image(tmp_path / "rgba.tif"), vaihingen)):
        with pytest.raises(BandError, match="no NIR band"):
            read()


def test_no_data_bands_empty_files_and_nan(tmp_path: Path) -> None:
    empty = np.zeros((4, 16, 16), np.uint16)
    with rasterio.open(tmp_path / "empty.tif", "w", driver="GTiff", width=16, height=16, count=4, dtype="uint16",
                       nodata=0) as dst:
        dst.write(empty)
    assert not read_bands(tmp_path / "empty.tif", ["R", "G", "B", "NIR"]).pixels.any()  # empty tiles, no error
    data = np.random.default_rng(1).integers(10, 900, (4, 16, 16)).astype(np.int16)
    data[3] = -9999
    with rasterio.open(tmp_path / "nd.tif", "w", driver="GTiff", width=16, height=16, count=4, dtype="int16",
                       nodata=-9999) as dst:
        dst.write(data)
    with pytest.raises(BandError, match=r"band 4 \(NIR\) holds only its nodata value"):
        read_bands(tmp_path / "nd.tif", ["R", "G", "B", "NIR"])
    with pytest.raises(BandError, match=r"band 4 \(NIR\) holds only its nodata value"):  # and at inference
        model_pixels(read_image(tmp_path / "nd.tif"), _card(["R", "G", "B", "NIR"], [[0.0, 900.0]] * 4))
    f = np.random.default_rng(2).random((4, 16, 16)).astype(np.float32)
    f[3, :3] = np.nan
    write_tif(tmp_path / "nan.tif", f)
    loaded = read_image(tmp_path / "nan.tif")
    rgbn = _card(["R", "G", "B", "NIR"], [[0.0, 1.0]] * 4)
    assert loaded.declared_nodata is None  # an RGB model reads R, G, B: NaN in NIR is nothing to it
    assert band_nodata_mask(loaded, _card(["R", "G", "B"])) is None
    assert band_nodata_mask(loaded, rgbn)[:3].all()  # a model that reads NIR: no data there (zeroed, as trained)
    served = model_pixels(loaded, rgbn)
    trained = read_bands(tmp_path / "nan.tif", ["R", "G", "B", "NIR"], stretch=[[0.0, 1.0]] * 4).pixels
    assert np.array_equal(served, trained) and not served[:3].any()


def test_band_names_without_case_and_generic_descriptions(tmp_path: Path) -> None:
    assert resolve(["b4", "b3", "b2", "b8"], ["B2", "B3", "B4", "B8"], "s2.tif") == ([2, 1, 0, 3], ["b4", "b3", "b2", "b8"])
    # ^ the names as asked, so files spelling them differently still form one data set
    assert resolve(["Band 4", "R"], ["R", "G", "B", "NIR"], "a.tif") == ([3, 0], ["Band 4", "R"])  # older cards
    assert file_band_names(4, ["Band 1", "band_2", "Band3", "BAND 4"]) == ["R", "G", "B", "NIR"]


def test_a_band_bomb_is_refused_from_its_header(tmp_path) -> None:
    """Issue 29: the pixel budget counted width x height only, so a few MB of TIFF with thousands of bands decoded to
    gigabytes. Here at a small budget: 300 bands of 200 x 200 decode to 12 MB against 1.6 MB allowed."""
    import numpy as np
    import rasterio

    from core.imaging.raster import read_bands
    from core.imaging.imageio import ImageError, read_image

    def tiff(name: str, bands: int) -> Path:
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=bands, dtype="uint8",
                           compress="deflate") as dst:
            dst.write(np.full((bands, 200, 200), 7, np.uint8))
        return path

    bomb = tiff("bomb.tif", 300)
    assert bomb.stat().st_size < 200_000
    for read in (lambda p: read_image(p, 100_000), lambda p: read_bands(p, [1, 2, 3], max_pixels=100_000)):
        with pytest.raises(ImageError, match="300 bands x 1 bytes = 0.0 GB; the budget is 0.0 GB"):
            read(bomb)
    assert read_bands(tiff("ok.tif", 4), [1, 2, 3], max_pixels=100_000).pixels.shape == (200, 200, 3)
