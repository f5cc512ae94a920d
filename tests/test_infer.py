"""Sliding-window inference, image reading rules and the ``core.seg.segment`` command line.

A tiny random resnet18 DeepLabV3+ (3 classes, through ``core.seg.segmodel``) stands in for a trained model; where the
test is about blending arithmetic, small convolutional "models" whose answer we can compute directly are used.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
import torch
from PIL import Image
from affine import Affine
from torch import nn

from core.store.checkpoint import save_checkpoint
from core.data.augment import IMAGENET_MEAN, IMAGENET_STD
from core.imaging.imageio import ALPHA_NOTE, ImageError, read_image
from core.imaging.tiffio import write_mask_geotiff
from core.seg.infer import (axis_positions, class_areas, colorize, count_windows, overlap_pixels, overlay, predict,
                            predict_logits, ramp)
from core.seg.segment_cli import main
from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

CLASSES = [{"name": "building", "color": [255, 0, 0]}, {"name": "tree", "color": [0, 255, 0]},
           {"name": "water", "color": [0, 0, 255]}]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    """(model, card, checkpoint path) of a random 3-class resnet18 DeepLabV3+."""
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    model = build_seg_model(card).eval()
    path = tmp_path_factory.mktemp("ckpt") / "seg.safetensors"
    save_seg_checkpoint(path, model, card)
    return model, card, path


def pointwise(classes: int = 3) -> nn.Module:
    """A 1x1 convolution: every pixel's logits depend on that pixel only, so any window sees the same values."""
    torch.manual_seed(1)
    return nn.Conv2d(3, classes, 1).eval()


def context_net(classes: int = 3) -> nn.Module:
    """Small CNN with a 7x7 receptive field and zero padding: windows disagree near their edges."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, classes, 3, padding=1)).eval()


def normalised(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def rand_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_tiff(path: Path, data: np.ndarray, **kw) -> Path:
    """data: (bands, H, W)."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    return path


# ------------------------------------------------------------------------------------------------ predict
def test_window_geometry():
    assert axis_positions(100, 128, 32) == [0]
    assert axis_positions(512, 512, 128) == [0]
    pos = axis_positions(1000, 256, 64)
    assert pos[0] == 0 and pos[-1] == 1000 - 256
    assert all(0 < b - a <= 256 - 64 for a, b in zip(pos, pos[1:]))
    w = ramp(64, 16)
    assert w.min() > 0 and w.max() == 1 and np.allclose(w, w[::-1])
    assert count_windows(2048, 2048, 512, 0.25) == 25


@pytest.mark.parametrize("shape", [(20, 37), (64, 64), (65, 64), (150, 97), (31, 200)])
def test_predict_shape_any_size(shape):
    image = rand_image(*shape)
    out = predict(context_net(), image, tile=64, overlap=0.25, batch_size=3)
    assert out.shape == shape and out.dtype == np.uint8 and out.max() < 3


def test_pixel_overlap_with_an_axis_shorter_than_the_tile():
    out = predict(context_net(), rand_image(20, 200), tile=64, overlap=40)  # 40 px > the 32-px short axis
    assert out.shape == (20, 200)


def test_predict_real_model_smaller_and_larger_than_tile(seg):
    model, card, _ = seg
    for shape in [(40, 50), (97, 70)]:
        calls = []
        out = predict(model, rand_image(*shape), tile=64, overlap=0.25, card=card,
                      progress=lambda d, t: calls.append((d, t)))
        assert out.shape == shape and out.max() < 3
        assert calls[-1][0] == calls[-1][1] == count_windows(*shape, 64, 0.25)


def test_blending_equals_single_forward_pass():
    """With a per-pixel model every window agrees, so the blended result must be the full-image forward pass."""
    model = pointwise()
    image = rand_image(157, 203, seed=3)
    with torch.inference_mode():
        full = model(normalised(image))[0].numpy()
    blended = predict_logits(model, image, tile=64, overlap=0.3, batch_size=5)
    np.testing.assert_allclose(blended, full, rtol=1e-5, atol=1e-5)
    mask = predict(model, image, tile=64, overlap=0.3, batch_size=5)
    top2 = np.sort(full, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert clear.mean() > 0.99
    assert (mask == full.argmax(0))[clear].all()


def test_strips_equal_full_accumulator_reference():
    """The rolling-strip accumulator gives the same classes as the whole-image accumulator (a model with context,
    so windows disagree and the weights matter), for fractional, pixel and zero overlap."""
    model = context_net()
    cases = [((301, 259), 0.25, 4), ((301, 259), 20, 4), ((301, 259), 0.0, 4),  # batches straddle two rows
             ((250, 100), 0.25, 5), ((97, 300), 0.5, 1)]  # a batch spans three rows; one window per batch
    for shape, overlap, batch in cases:
        image = rand_image(*shape, seed=4)
        ref = predict_logits(model, image, tile=64, overlap=overlap, batch_size=batch)
        mask = predict(model, image, tile=64, overlap=overlap, batch_size=batch)
        top2 = np.sort(ref, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-4
        assert clear.mean() > 0.99
        assert (mask == ref.argmax(0))[clear].all(), (shape, overlap, batch)


def test_overlap_blends_windows():
    """Sanity of the reference itself: with context, overlapped windows differ from no overlap near seams."""
    model = context_net()
    image = rand_image(128, 128, seed=5)
    a = predict_logits(model, image, tile=64, overlap=0.0)
    b = predict_logits(model, image, tile=64, overlap=0.5)
    assert not np.allclose(a, b)


def test_tta_flip(seg):
    model, card, _ = seg
    out = predict(model, rand_image(70, 90), tile=64, tta_flip=True, card=card)
    assert out.shape == (70, 90)
    pw = pointwise()  # a 1x1 conv commutes with the flip: TTA changes nothing
    image = rand_image(80, 100, seed=6)
    np.testing.assert_allclose(predict_logits(pw, image, tile=64, tta_flip=True),
                               predict_logits(pw, image, tile=64), rtol=1e-5, atol=1e-5)


def test_predict_refuses_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 32"):
        predict(pointwise(), rand_image(40, 40), tile=50)
    with pytest.raises(ValueError, match="uint8"):
        predict(pointwise(), rand_image(40, 40).astype(np.float32))
    with pytest.raises(ValueError, match="overlap"):
        predict(pointwise(), rand_image(40, 40), tile=32, overlap=40)
    with pytest.raises(ValueError, match="whole number of pixels"):  # 1.5: neither a fraction nor pixels
        predict(pointwise(), rand_image(40, 40), tile=32, overlap=1.5)
    assert overlap_pixels(8.0, 32) == 8 and overlap_pixels(0.25, 32) == 8
    import argparse
    from core.cli_args import _overlap
    assert _overlap("64") == 64 and _overlap("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="overlap 1.0: a fraction must be below 1"):
        _overlap("1.0")  # on the command line, 1.0 was read as 1 pixel: a fraction was meant
    with pytest.raises(ValueError, match="classes"):
        predict(pointwise(3), rand_image(40, 40), tile=32, num_classes=5)


def test_areas_colorize_overlay():
    mask = np.array([[0, 0, 1, 2]] * 4, np.uint8)
    rows = class_areas(mask, CLASSES, pixel_size_m=0.5)
    assert [r["pixels"] for r in rows] == [8, 4, 4]
    assert [r["percent"] for r in rows] == [50.0, 25.0, 25.0]
    assert [r["square_metres"] for r in rows] == [2.0, 1.0, 1.0]
    assert class_areas(mask, CLASSES)[0]["square_metres"] is None
    col = colorize(mask, CLASSES)
    assert col.shape == (4, 4, 3) and tuple(col[0, 3]) == (0, 0, 255)
    ov = overlay(np.zeros((4, 4, 3), np.uint8), mask, CLASSES, opacity=0.5)
    assert tuple(ov[0, 0]) == (128, 0, 0)


# ------------------------------------------------------------------------------------------------ imageio
def test_tiff_band_rules(tmp_path):
    rng = np.random.default_rng(0)
    b = rng.integers(0, 256, (5, 16, 20), dtype=np.uint8)

    one = read_image(write_tiff(tmp_path / "one.tif", b[:1]))
    assert one.rgb.shape == (16, 20, 3) and (one.rgb == b[0][..., None]).all()
    assert "grey band replicated to RGB" in one.notes

    two = read_image(write_tiff(tmp_path / "two.tif", b[:2]))  # band 2 not marked alpha: no transparency either
    assert (two.rgb == b[0][..., None]).all() and two.declared_nodata is None
    assert two.notes[:2] == ["grey band replicated to RGB", "band 2 (band2) ignored"]
    grey_alpha = write_tiff(tmp_path / "grey_alpha.tif", b[:2])
    with rasterio.open(grey_alpha, "r+") as dst:
        dst.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    assert ALPHA_NOTE in read_image(grey_alpha).notes

    three = read_image(write_tiff(tmp_path / "three.tif", b[:3]))
    assert (three.rgb == np.moveaxis(b[:3], 0, -1)).all() and three.notes == [] and three.profile is None

    four = read_image(write_tiff(tmp_path / "four.tif", b[:4], photometric="MINISBLACK"))  # band 4: not alpha
    assert (four.rgb == np.moveaxis(b[:3], 0, -1)).all()
    assert any("4 bands" in n and "RGB-IR" in n for n in four.notes)

    alpha = b[:4].copy()
    alpha[3] = np.where(b[3] < 128, 0, 255)  # a real alpha band: 0 or 255
    rgba = read_image(write_tiff(tmp_path / "rgba.tif", alpha))  # GDAL's default for 4 x uint8: RGBA
    assert (rgba.rgb == np.moveaxis(b[:3], 0, -1)).all()
    assert any("4 bands" in n and ALPHA_NOTE in n for n in rgba.notes)
    # GDAL marks the 4th band alpha whatever it holds: one of many values is near-infrared (docs/bands.md)
    marked = read_image(write_tiff(tmp_path / "marked.tif", b[:4]))
    assert (marked.rgb == np.moveaxis(b[:3], 0, -1)).all() and marked.declared_nodata is None
    assert any("4 bands" in n and "RGB-IR" in n for n in marked.notes)

    five = read_image(write_tiff(tmp_path / "five.tif", b))
    assert (five.rgb == np.moveaxis(b[:3], 0, -1)).all()
    assert any(n.startswith("5 bands: used bands 1-3") for n in five.notes)

    # B, G, R, NIR (PlanetScope's order), named by descriptions or by colour interpretation: the picture is R, G, B
    bgrn = np.concatenate([b[2::-1], b[3:4]])
    for named in ("descriptions", "colorinterp"):
        path = write_tiff(tmp_path / f"bgrn-{named}.tif", bgrn, photometric="MINISBLACK")
        with rasterio.open(path, "r+") as dst:
            if named == "descriptions":
                for k, name in enumerate(["Blue", "Green", "Red", "NIR"]):
                    dst.set_band_description(k + 1, name)
            else:
                dst.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
        img = read_image(path)
        assert (img.rgb == np.moveaxis(b[:3], 0, -1)).all(), named
        assert "4 bands (B, G, R, NIR): used bands 3, 2, 1 (named R, G, B) as RGB, band(s) 4 (NIR) ignored" in img.notes


def test_tiff_16bit_float_nodata(tmp_path):
    rng = np.random.default_rng(1)
    d16 = rng.integers(1000, 4000, (3, 32, 32)).astype(np.uint16)
    d16[:, 0, 0] = 0
    img = read_image(write_tiff(tmp_path / "d16.tif", d16, nodata=0))
    assert any("16-bit data rescaled to 8 bit by its 2nd-98th percentiles" in n for n in img.notes)
    assert any("nodata" in n for n in img.notes) and (img.rgb[0, 0] == 0).all()
    assert img.rgb.min() == 0 and img.rgb.max() == 255 and img.rgb.dtype == np.uint8

    grey = read_image(write_tiff(tmp_path / "grey16.tif", d16[:1]))  # one 16-bit band: says who reads what
    assert grey.notes[-1] == ("1 band (band1): an RGB model reads the 8-bit RGB picture made from it; a model trained "
                              "on this band reads the file's own values")

    i16 = read_image(write_tiff(tmp_path / "i16.tif", (d16.astype(np.int16) - 2000)))
    assert any("16-bit data rescaled" in n for n in i16.notes)

    f = rng.random((1, 32, 32)).astype(np.float32)
    f[0, 3, 4] = np.nan
    fl = read_image(write_tiff(tmp_path / "f.tif", f))
    assert any("float data rescaled" in n for n in fl.notes) and any("NaN" in n for n in fl.notes)
    assert (fl.rgb[3, 4] == 0).all() and fl.rgb.max() == 255


def test_png_rules(tmp_path):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert (img.rgb == rgba[..., :3]).all() and img.profile is None
    transparent = rgba[..., 3] == 0
    assert img.notes == [ALPHA_NOTE, f"{int(transparent.sum())} transparent pixels treated as no data"]
    assert ALPHA_NOTE == "alpha band read as transparency (no data where 0), not as colour"  # not "dropped"
    assert (img.declared_nodata == transparent).all()

    grey = rgba[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert (img.rgb == grey[..., None]).all() and img.notes == ["grey band replicated to RGB"]

    Image.fromarray((grey.astype(np.uint16) * 200)).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert any("16-bit data rescaled" in n for n in img.notes) and img.rgb.max() == 255

    Image.fromarray(rgba[..., :3]).save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.rgb.shape == (20, 24, 3) and img.notes == []



def _png16(path: Path, bands: np.ndarray) -> Path:
    """A PNG of 16-bit colour (GDAL's PNG driver: PIL writes none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not georeferenced: a plain PNG is meant
        with rasterio.open(path, "w", driver="PNG", width=bands.shape[2], height=bands.shape[1], count=len(bands),
                           dtype="uint16") as dst:
            dst.write(bands)
    return path


def test_a_16bit_colour_png_is_read_with_all_its_bits_as_the_same_tiff(tmp_path):
    """A review's 12-bit aerial PNG: PIL kept the high bytes (values 0-15), the picture came out nearly black, no note
    said so, and the model saw 100 % water. Its 16 bits are read now, and stretched as the same pixels in a TIFF."""
    from core.imaging.pixels import is_16bit_png

    data = np.random.default_rng(3).integers(100, 4000, (3, 24, 32)).astype(np.uint16)
    png = read_image(_png16(tmp_path / "rgb12.png", data))
    tif = read_image(write_tiff(tmp_path / "rgb12.tif", data))
    assert (png.rgb == tif.rgb).all() and png.rgb.max() == 255
    assert png.notes == ["16-bit data rescaled to 8 bit by its 2nd-98th percentiles, per band"] and png.profile is None
    alpha = np.full((1, 24, 32), 65535, np.uint16)
    alpha[0, :4] = 0
    rgba = read_image(_png16(tmp_path / "rgba16.png", np.concatenate([data, alpha])))
    assert (rgba.rgb[4:] == tif.rgb[4:]).all() and rgba.declared_nodata is not None
    assert rgba.declared_nodata[:4].all() and not rgba.declared_nodata[4:].any()
    grey_alpha = read_image(_png16(tmp_path / "ga16.png", np.concatenate([data[:1], alpha])))  # colour type 4
    assert (grey_alpha.rgb[4:, :, 0] == read_image(write_tiff(tmp_path / "g.tif", data[:1])).rgb[4:, :, 0]).all()
    from core.imaging.raster import read_bands  # a model of the file's own bands: the data set's stretch, as a TIFF's
    stretched = [read_bands(p, ["R", "G", "B"], stretch=[[0, 4095]] * 3) for p in (tmp_path / "rgb12.png",
                                                                                  tmp_path / "rgb12.tif")]
    assert (stretched[0].pixels == stretched[1].pixels).all() and stretched[0].dtype == "uint16"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb8.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "grey16.png")  # PIL reads these whole
    assert not any(is_16bit_png((tmp_path / n).read_bytes()[:32]) for n in ("rgb8.png", "grey16.png"))

def test_pil_decompression_bomb_guard(tmp_path, monkeypatch):
    Image.fromarray(rand_image(64, 64)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL would warn / refuse; our own limit decides
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "x.png").rgb.shape == (64, 64, 3)
    with pytest.raises(ImageError, match="too large"):
        read_image(tmp_path / "x.png", max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_refusals_are_one_line(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n" * 10)
    buf = tmp_path / "full.png"
    Image.fromarray(rand_image(64, 64)).save(buf)
    (tmp_path / "cut.png").write_bytes(buf.read_bytes()[:len(buf.read_bytes()) // 2])
    Image.fromarray(rand_image(32, 32)).save(tmp_path / "whole.tif")
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:600])
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.fromarray(rand_image(1, 1)).save(tmp_path / "dot.png")
    cases = {"notes.png": "not an image", "cut.png": "truncated or corrupt", "cut.tif": "truncated or corrupt",
             "empty.jpg": "empty file", "dot.png": "too small", "missing.png": "no such file",
             "full.png": "too large"}
    for name, reason in cases.items():
        with pytest.raises(ImageError) as info:
            read_image(tmp_path / name, max_pixels=1000 if name == "full.png" else 10**8)
        msg = str(info.value)
        assert reason in msg and "\n" not in msg, (name, msg)


def test_geotiff_write_round_trip(tmp_path):
    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)
    data = np.random.default_rng(3).integers(0, 256, (3, 40, 48), dtype=np.uint8)
    src = write_tiff(tmp_path / "geo.tif", data, crs="EPSG:32611", transform=transform)
    img = read_image(src)
    assert img.profile is not None and img.pixel_size_m == pytest.approx(0.5)
    mask = np.zeros((40, 48), np.uint8)
    write_mask_geotiff(tmp_path / "m.tif", mask, img.profile, CLASSES)
    with rasterio.open(tmp_path / "m.tif") as m:
        assert m.crs == img.profile["crs"] and m.transform == transform and m.count == 1 and m.dtypes[0] == "uint8"
    with pytest.raises(ValueError):
        write_mask_geotiff(tmp_path / "bad.tif", np.zeros((10, 10), np.uint8), img.profile)


def test_an_out_of_domain_geotiff_mask_carries_its_warning(tmp_path):
    """A GIS user who loads only the mask saw no caution (a review: the CSV and JSON had it, the GeoTIFF not)."""
    from core.seg.domain import DomainScore
    from core.seg.segmentation_result import Segmentation, write_outputs

    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4100000.0)
    data = np.random.default_rng(3).integers(0, 256, (3, 40, 48), dtype=np.uint8)
    img = read_image(write_tiff(tmp_path / "geo.tif", data, crs="EPSG:32611", transform=transform))
    areas = [{"name": "a", "pixels": 1920, "percent": 100.0, "square_metres": None}]
    far = DomainScore(known=True, score=0.0, in_domain=False, reasons=["its colours are unlike any training tile's"])
    for domain in (far, DomainScore(known=True, score=0.4, in_domain=True)):
        seg = Segmentation(rgb=img.rgb, mask=np.zeros((40, 48), np.uint8), classes=CLASSES, areas=areas,
                           profile=img.profile, domain=domain)
        out = tmp_path / str(domain.in_domain)
        out.mkdir()
        written = write_outputs(seg, out, "scene")
        (out / "bytes.tif").write_bytes(seg.geotiff())  # the page's and the demo's download: the same file
        for path in (written["geotiff"], out / "bytes.tif"):
            with rasterio.open(path) as m:
                tags, band = m.tags(), m.descriptions[0]
            if domain is far:
                assert tags["WARNING"] == seg.warning and "unlike any training tile" in tags["WARNING"]
                assert band.startswith("CAUTION, see the WARNING tag") and "0=" in band
            else:
                assert "WARNING" not in tags and band.startswith("class index: 0=")


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_everything_georeferenced(seg, tmp_path, capsys):
    _, _, ckpt = seg
    transform = Affine(0.25, 0.0, 300000.0, 0.0, -0.25, 5000000.0)
    data = np.random.default_rng(4).integers(0, 256, (3, 48, 56), dtype=np.uint8)
    geo = write_tiff(tmp_path / "scene.tif", data, crs="EPSG:32618", transform=transform)
    Image.fromarray(rand_image(40, 60)).convert("L").save(tmp_path / "grey.png")
    out = tmp_path / "out"
    rc = main([str(geo), str(tmp_path / "grey.png"), "--checkpoint", str(ckpt), "--out", str(out),
               "--tile", "64", "--tta"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    assert "grey band replicated to RGB" in captured.out
    for stem in ("scene", "grey"):
        for suffix in ("_mask.png", "_color.png", "_overlay.png", "_areas.csv", "_report.json"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    assert not (out / "grey_mask.tif").exists()
    mask = np.asarray(Image.open(out / "scene_mask.png"))
    assert Image.open(out / "scene_mask.png").mode == "P" and mask.shape == (48, 56) and mask.max() < 3
    with rasterio.open(out / "scene_mask.tif") as m:
        assert m.crs.to_epsg() == 32618 and m.transform == transform
        assert (m.read(1) == mask).all()
    lines = (out / "scene_areas.csv").read_text().strip().splitlines()
    assert lines[0] == "class,pixels,percent,square_metres,warning" and len(lines) == 4  # always the same columns
    for line in lines[1:]:
        name, pixels, _, sqm, warning = line.split(",")
        assert warning == ""
        assert float(sqm) == pytest.approx(int(pixels) * 0.0625, abs=1e-3)
    assert all(line.endswith(",") for line in (out / "grey_areas.csv").read_text().strip().splitlines()[1:])
    assert "replacing" not in captured.out
    assert main([str(tmp_path / "grey.png"), "--checkpoint", str(ckpt), "--out", str(out), "--tile", "64"]) == 0
    assert "(replacing an earlier result's 5 files)" in capsys.readouterr().out  # said, not silent (a review)


def test_cli_bad_image_among_good(seg, tmp_path, capsys):
    _, _, ckpt = seg
    Image.fromarray(rand_image(40, 40)).save(tmp_path / "a.png")
    Image.fromarray(rand_image(36, 44)).save(tmp_path / "b.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "out"
    rc = main([str(tmp_path / "a.png"), str(tmp_path / "broken.png"), str(tmp_path / "b.jpg"),
               "--checkpoint", str(ckpt), "--out", str(out), "--tile", "64"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'broken.png'}: ")
    assert (out / "a_mask.png").is_file() and (out / "b_mask.png").is_file()
    none = tmp_path / "none"  # only bad images: no empty folder left behind, but one the user had stays
    capsys.readouterr()
    assert main([str(tmp_path / "broken.png"), "--checkpoint", str(ckpt), "--out", str(none)]) == 2
    assert not none.exists()
    assert "0 of 1 image(s) segmented (nothing written); 1 failed" in capsys.readouterr().out  # no folder named
    assert main([str(tmp_path / "broken.png"), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert out.is_dir()


def test_cli_bad_checkpoints(seg, tmp_path, capsys):
    model, card, _ = seg
    Image.fromarray(rand_image(40, 40)).save(tmp_path / "a.png")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    pre = tmp_path / "pretrain.safetensors"
    save_checkpoint(pre, model=nn.Linear(2, 2), card={"kind": "pretrain", "encoder": "resnet18"})
    mismatch = tmp_path / "mismatch.safetensors"  # a 3-class network under a 4-class card
    save_seg_checkpoint(mismatch, model, {**card, "classes": CLASSES + [{"name": "road", "color": [9, 9, 9]}]})
    # cards whose model would take gigabytes before the weights are compared (issue 29): sized on the meta device
    wide = tmp_path / "wide.safetensors"
    save_seg_checkpoint(wide, model, {**card, "decoder_channels": 2_000_000})
    bands = tmp_path / "bands.safetensors"
    save_seg_checkpoint(bands, model, {**card, "bands": [f"b{i}" for i in range(200_000)]})
    odd = tmp_path / "odd.safetensors"
    save_seg_checkpoint(odd, model, {**card, "output_stride": 3})
    for ckpt in (tmp_path / "missing.safetensors", garbage, pre, mismatch, wide, bands, odd):
        rc = main([str(tmp_path / "a.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2, ckpt
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and str(ckpt) in lines[0], err
    assert not (tmp_path / "out" / "a_mask.png").exists()
    main([str(tmp_path / "a.png"), "--checkpoint", str(garbage), "--out", str(tmp_path / "out")])
    assert "is not a safetensors file" in capsys.readouterr().err  # not the parser's "header too large"
    run = tmp_path / "a-run"  # a run folder where its model file was meant: the message names the file
    save_seg_checkpoint(run / "checkpoints" / "best.safetensors", model, card)
    assert main([str(tmp_path / "a.png"), "--checkpoint", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run} is a folder, not a checkpoint file; give {run / 'checkpoints' / 'best.safetensors'}"


@pytest.mark.parametrize("classes,needle", [
    ("water", "not a list of {'name', 'color'} entries"),
    ([], "not a list of {'name', 'color'} entries"),
    ([{"colour": [0, 0, 0]}], "not a list of {'name', 'color'} entries"),
    ([{"name": f"c{i}", "color": [0, 0, 0]} for i in range(300)], "300 classes do not fit an 8-bit mask"),
])
def test_the_card_check_refuses_classes_no_mask_can_hold(classes, needle: str) -> None:
    """One check, in core.seg.segmodel, for the CLI, the Segment page and the Gradio demo alike."""
    from core.store.checkpoint import CheckpointError
    from core.seg.segmodel import check_card

    card = {"kind": "segmentation", "arch": "deeplabv3plus", "encoder": "resnet18", "classes": classes}
    with pytest.raises(CheckpointError, match=re.escape(needle)):
        check_card(card, Path("m.safetensors"))
