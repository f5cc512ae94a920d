"""Domain awareness of segmentation: fingerprints, auto model choice, out-of-domain warnings, pixel-size resampling,
no-data masks, the per-image report and palette masks (issue 9), on small fixtures from two made-up domains."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import Affine

from core.store.catalog import ModelEntry
from core.config import SegDataConfig
from core.data.labeled import build_seg_splits
from core.seg.domain import (TOO_LITTLE, DomainScore, card_fingerprint, colour_fit, fingerprint, image_crops,
                             score_image)
from core.seg.finetune import class_weights
from core.imaging.imageio import read_image
from core.seg.infer import NODATA, class_areas, palette
from core.seg.model_choice import ModelCache, _unknown_why, best_tested_twin, choose_model
from core.seg.nodata import nodata_mask
from core.seg.segment import DARK_LEVEL, dark_level
from core.seg.resample import resample_factor, resample_mask, resample_rgb
from core.seg.segment_cli import main
from core.seg.segmentation_result import palette_png
from core.seg.segmodel import build_seg_model, load_seg_model, make_card, save_seg_checkpoint
from test_infer import write_tiff  # noqa: E402 - the tests' GeoTIFF writer

CLASSES = [{"name": "a", "color": [200, 30, 30]}, {"name": "b", "color": [30, 200, 30]},
           {"name": "c", "color": [30, 30, 200]}]


def scene(kind: str, h: int, w: int, seed: int) -> np.ndarray:
    """Two made-up domains: 'green' (dark vegetation-like texture) and 'sand' (bright desert-like texture)."""
    rng = np.random.default_rng(seed)
    base = np.array([40, 110, 40]) if kind == "green" else np.array([210, 185, 140])
    noise = rng.normal(0, 18, (h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return np.clip(base + noise + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def model_for(kind: str, folder: Path, gsd: float | None = None, seed: int = 0, name: str | None = None,
              test_scenes: list[str] | None = None) -> ModelEntry:
    torch.manual_seed(seed)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    model = build_seg_model(card).eval()
    tiles = [scene(kind, 256, 256, 100 + i) for i in range(12)]
    card["domain"] = {"platform": f"test {kind}", "gsd_m": gsd, "region": kind, "classes": ["a", "b", "c"],
                      "training_scenes": 12, "test_scenes": test_scenes or [], "fingerprint": fingerprint(model, tiles)}
    path = folder / f"{name or kind}.safetensors"
    save_seg_checkpoint(path, model, card)
    path.with_suffix(".json").write_text(json.dumps(card))
    return ModelEntry(f"shipped: {name or kind}", path, card)


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelEntry, ModelEntry]:
    folder = tmp_path_factory.mktemp("models")
    return model_for("green", folder, gsd=0.5), model_for("sand", folder, gsd=None, seed=1)


# ------------------------------------------------------------------------------------------------ scores
def test_auto_choice_picks_the_fitting_domain_and_warns_for_neither(two_domains) -> None:
    green, sand = two_domains
    entries = [sand, green]  # the order must not decide
    cache = ModelCache()
    for kind, want in (("green", green), ("sand", sand)):
        img = scene(kind, 300, 340, 7)
        choice = choose_model(img, np.zeros(img.shape[:2], bool), None, entries, cache)
        assert choice.entry.label == want.label and choice.how == "auto"
        assert choice.domain.in_domain is True and choice.domain.score > 0.05
        assert [t["name"] for t in choice.table][0] == want.label and "best domain fit of 2" in choice.why
    purple = np.zeros((300, 300, 3), np.uint8)
    purple[..., 0], purple[..., 2] = 180, 220
    choice = choose_model(purple, np.zeros((300, 300), bool), None, entries, cache)
    assert choice.domain.in_domain is False and choice.domain.score == 0.0
    assert choice.why.startswith("no domain fits this image, the closest of 2 model(s): domain fit 0.00")
    assert "colours are unlike any training tile" in choice.domain.warning()
    # of the training tiles, not the data set (a data set's own validation scene may be unlike them: a review)
    assert choice.domain.warning().startswith("This image is unlike the tiles the model was trained on")


def test_a_card_without_fingerprint_is_unknown_never_an_error(two_domains, tmp_path: Path) -> None:
    green, _ = two_domains
    model = build_seg_model(green.card).eval()
    old = {k: v for k, v in green.card.items() if k != "domain"}
    d = score_image(model, old, scene("green", 256, 256, 3))
    assert d.known is False and d.score is None and d.in_domain is None and d.warning() is None
    assert card_fingerprint(old) is None
    old_entry = ModelEntry("shipped: old", green.path, old)
    choice = choose_model(scene("green", 256, 256, 3), np.zeros((256, 256), bool), None, [old_entry, green])
    assert choice.entry.label == green.label  # a known fit beats an unknown one
    choice = choose_model(scene("green", 256, 256, 3), np.zeros((256, 256), bool), None, [old_entry])
    assert choice.entry.label == "shipped: old" and "no candidate has a domain fingerprint" in choice.why


def test_an_image_too_small_to_compare_is_unknown_and_the_choice_says_why(two_domains) -> None:
    """An 8 px patch was padded by mirroring to a 256 px crop and scored "in domain": now its fit is unknown, and
    auto's reason names the image's size, not a missing fingerprint."""
    green, desert = two_domains
    tiny = scene("green", 8, 8, 3)
    d = colour_fit(green.card, tiny)
    assert isinstance(d, DomainScore) and d.known is False and d.in_domain is None and "too small" in d.reasons[0] and "8 x 8 px" in d.reasons[0]
    choice = choose_model(tiny, np.zeros((8, 8), bool), None, [green, desert])
    assert choice.domain.known is False and choice.domain.in_domain is None
    assert choice.domain.warning().startswith("This image cannot be held against")  # not "outside": unknown
    assert choice.why.startswith("no domain fit could be measured because the image is too small") and \
        "fingerprint" not in choice.why
    # a large image whose valid part is a thin strip is too small as well; 64 px a side is enough
    strip = np.zeros((256, 256), bool)
    strip[:, 100:106] = True
    assert isinstance(colour_fit(green.card, scene("green", 256, 256, 3), strip), DomainScore)
    assert not isinstance(colour_fit(green.card, scene("green", 64, 64, 3)), DomainScore)


def test_a_scene_in_a_wide_no_data_frame_is_scored_inside_it(two_domains, tmp_path: Path) -> None:
    """A grid over the whole image put no crop inside a scene with a wide no-data collar: its fit came out unknown,
    with no warning and areas in m²; the crops now lie in the box that holds the valid pixels."""
    green, desert = two_domains
    framed = np.zeros((700, 700, 3), np.uint8)
    framed[200:500, 200:500] = scene("green", 300, 300, 5)
    valid = framed.any(axis=2)
    crops = image_crops(framed, valid)
    assert len(crops) >= 1 and all(c.any(axis=2).mean() > 0.9 for c in crops)
    Image.fromarray(framed).save(tmp_path / "framed.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "framed.png"), "--checkpoint", str(desert.path), "--out", str(out), "--tile", "256",
                 "--no-progress"]) == 0
    report = json.loads((out / "framed_report.json").read_text())
    assert report["domain"]["known"] is True and report["domain"]["in_domain"] is False
    assert report["areas_relative_only"] is True


def test_unmeasured_fits_name_the_models_each_reason_holds_for() -> None:
    """A 0.1 m image can be too small for a 0.5 m model and too empty for another: one merged sentence read as
    if both reasons were the first model's."""
    entries = [ModelEntry("shipped: a", Path("a"), {}), ModelEntry("shipped: b", Path("b"), {})]
    small = DomainScore(known=False, reasons=["the image is too small to compare with the training tiles (48 x 48 px)"])
    empty = DomainScore(known=False, reasons=[TOO_LITTLE])
    why = _unknown_why({0: empty, 1: small}, entries)
    assert f"{TOO_LITTLE} (for shipped: a)" in why and "(48 x 48 px) (for shipped: b)" in why
    same = _unknown_why({0: small, 1: small}, entries)  # one reason for both: said once, no model named
    assert same.startswith("no domain fit could be measured because the image is too small") and "(for" not in same
    assert same.endswith("; the first model in the list of candidates")  # not "the default model": which one?


def test_a_model_trained_on_small_tiles_is_fingerprinted_and_scored_at_their_size() -> None:
    """64 px training tiles were mirrored up to 256 px crops, kaleidoscopes that no crop of a real image resembles
    (and 16 times the work): the fingerprint keeps their own side, and images are cut into crops of it."""
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    model = build_seg_model(card).eval()
    small = fingerprint(model, [scene("green", 64, 64, 100 + i) for i in range(6)])
    assert small["side"] == 64
    card["domain"] = {"fingerprint": small}
    fitted = colour_fit(card, scene("green", 200, 300, 7))
    assert not isinstance(fitted, DomainScore) and fitted.crops.shape[1:3] == (64, 64) and len(fitted.crops) == 12
    assert score_image(model, card, scene("green", 200, 300, 7), colour=fitted).known
    assert fingerprint(model, [scene("green", 300, 280, 100 + i) for i in range(3)])["side"] == 256  # as before


def test_the_model_line_states_the_score_once() -> None:
    from core.seg.domain import DomainScore
    from core.seg.segmentation_result import Segmentation

    def line(how: str, why: str, score: float | None, reasons: list[str] | None = None) -> str:
        seg = Segmentation(rgb=np.zeros((2, 2, 3), np.uint8), mask=np.zeros((2, 2), np.uint8), classes=[], areas=[],
                           domain=DomainScore(known=score is not None, score=score, reasons=reasons or []),
                           model={"name": "m", "how": how, "why": why})
        return seg.model_line("**")

    auto = line("auto", "best domain fit of 2 model(s): domain fit 0.70", 0.7)
    assert auto == "**m** (auto: best domain fit of 2 model(s): domain fit 0.70)" and auto.count("0.70") == 1
    assert line("given", "chosen by the user", 0.24) == "**m** (given: chosen by the user); domain fit 0.24"
    assert line("auto", "no candidate has a domain fingerprint: the default model", None).endswith(
        "; domain fit unknown (no fingerprint)")
    assert line("given", "chosen by the user", None, ["too little valid imagery to compare"]).endswith(
        "; domain fit unknown (too little valid imagery to compare)")  # the reason, not a guess



@pytest.mark.slow
def test_models_of_the_same_data_compete_on_their_test_scores_not_on_fingerprint_noise(two_domains,
                                                                                        tmp_path: Path) -> None:
    from dataclasses import replace

    green, sand = two_domains
    tests = ["g1", "g2"]
    a, b, c = (model_for("green", tmp_path, gsd=0.5, seed=s, name=f"green{s}", test_scenes=tests) for s in (2, 3, 4))
    fp = a.card["domain"]["fingerprint"]  # the shipped twin's fingerprint made to fit worst: never the fit winner
    far = {**a.card["domain"], "fingerprint": {**fp, "distance_quantiles": [1e-6] * len(fp["distance_quantiles"])}}
    card = {**a.card, "domain": far, "evaluation": {"miou": 0.45, "scenes": tests}}  # and its card's own figure
    save_seg_checkpoint(tmp_path / "shipped.safetensors", load_seg_model(a.path)[0], card)  # scoring reads the file
    shipped = ModelEntry("shipped: green", tmp_path / "shipped.safetensors", card)
    run_low = replace(b, label="run: low", test={"miou": 0.30, "scenes": tests})
    run_untested = replace(c, label="run: untested")
    elsewhere = replace(run_untested, label="run: other split", test={"miou": 0.9, "scenes": ["x"]},
                        card={**c.card, "domain": {**c.card["domain"], "test_scenes": ["x"]}})
    img = scene("green", 300, 340, 7)
    nodata = np.zeros(img.shape[:2], bool)
    for order in ([run_low, run_untested, shipped, sand], [shipped, sand, run_untested, run_low]):
        choice = choose_model(img, nodata, None, order, ModelCache())
        assert choice.entry.label == shipped.label, choice.why  # the best tested twin, though it fits worst
        assert choice.table[0]["name"] in (run_low.label, run_untested.label)
        assert choice.why.startswith(f"best domain fit of 4 model(s): domain fit 0.25 ({choice.table[0]['name']}, "
                                     "trained on the same data as this one); of the 3 models with that training data "
                                     "and test scenes, this is the best on those scenes (mIoU 45.0 %), its own domain "
                                     "fit 0.00"), choice.why
        assert choice.domain.score == 0.0 and choice.domain.in_domain is False  # its own encoder's view
    # a run of its own split picked by fit over a shipped model of the same data that scores higher on its own
    # scenes (the review: a 20-step experiment took every later image): the pick stands, said with the way back
    own = replace(run_low, label="run: own split", test={"miou": 0.30, "scenes": ["x"]},
                  card={**b.card, "domain": {**b.card["domain"], "test_scenes": ["x"]}})
    why = choose_model(img, nodata, None, [shipped, own], ModelCache()).why
    assert why.endswith("; note: shipped: green scores 45.0 % on its test scenes, this run 30.0 % on its own (other "
                        "scenes, so no ranking): --checkpoint green runs it"), why
    (tmp_path / "torn.safetensors").write_bytes(b"not a checkpoint")  # a shipped file that cannot run this image
    torn = replace(shipped, path=tmp_path / "torn.safetensors")
    torn_why = choose_model(img, nodata, None, [torn, own], ModelCache()).why
    assert "note: shipped" not in torn_why and "--checkpoint green" not in torn_why, torn_why
    strong = replace(own, test={"miou": 0.5, "scenes": ["x"]})
    assert "note: shipped" not in choose_model(img, nodata, None, [shipped, strong], ModelCache()).why
    better = replace(run_low, label="run: better", test={"miou": 0.60, "scenes": tests})
    assert choose_model(img, nodata, None, [shipped, better, run_untested], ModelCache()).entry.label == "run: better"
    assert choose_model(img, nodata, None, [run_untested, replace(shipped, card={**card, "evaluation": None})],
                        ModelCache()).entry.label == shipped.label  # no figures at all: the shipped one
    from core.store.runs import read_json_file  # a run's damaged test_metrics.json is no figure, not a crash

    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00{")
    assert read_json_file(tmp_path / "bad.json") is None
    # no figures and no shipped twin: the fit winner stays; a twin that cannot run the image is never switched to
    assert best_tested_twin(1, [run_untested, replace(run_untested, label="run: fit winner")]) == (1, 2)
    assert best_tested_twin(0, [run_untested, shipped, run_low], unusable={1}) == (2, 2)
    # another split's figure is not comparable, and a card without test scenes has no twins
    assert best_tested_twin(0, [elsewhere, shipped, run_low]) == (0, 1)
    assert best_tested_twin(1, [elsewhere, run_low, shipped]) == (2, 2)
    assert best_tested_twin(0, [green, sand]) == (0, 1)


class CountingCache(ModelCache):
    """A model cache that counts which candidates were loaded (i.e. had their encoder run)."""

    def __init__(self) -> None:
        super().__init__(size=8)
        self.loaded: list[str] = []

    def load(self, path: Path, device: torch.device | str = "cpu"):
        self.loaded.append(Path(path).stem)
        return super().load(path, device)


def _full_choice(img: np.ndarray, entries: list[ModelEntry], cache: ModelCache) -> str:
    """The winner by scoring every candidate's encoder (the rule the pruned choice must reproduce)."""
    scores = [score_image(cache.load(e.path)[0], e.card, img) for e in entries]
    best = min(range(len(entries)), key=lambda k: (-(scores[k].score or 0.0), scores[k].fit, k))
    return entries[best].label


@pytest.mark.slow
def test_auto_choice_skips_candidates_that_cannot_win_and_scores_twins_once(two_domains, tmp_path: Path) -> None:
    from dataclasses import replace

    green, sand = two_domains
    twin = ModelEntry("run: green again", tmp_path / "twin.safetensors", green.card)
    twin.path.write_bytes(green.path.read_bytes())
    entries = [sand, twin, green]
    reference = ModelCache(size=8)
    grey = np.full((256, 256, 3), 128, np.uint8)
    for img in (scene("green", 300, 300, 11), scene("sand", 300, 300, 12), grey):
        cache = CountingCache()
        choice = choose_model(img, np.zeros(img.shape[:2], bool), None, entries, cache)
        full = _full_choice(img, entries, reference)
        assert choice.entry.label == full
        assert choice.domain.score == score_image(reference.load(choice.entry.path)[0], choice.entry.card, img).score
        assert cache.loaded.count("green") + cache.loaded.count("twin") <= 1  # twins share one scoring
        assert len(choice.table) == 3
    # An image in the green domain: sand is the only model of its domain, so it is scored all the same; a model of
    # the green data (same classes, platform, pixel size, test scenes) whose colours alone cannot win is not run.
    tests = ["g1"]
    green_t = model_for("green", tmp_path, gsd=0.5, seed=5, name="green-t", test_scenes=tests)
    sandy = model_for("sand", tmp_path, gsd=0.5, seed=6, name="sandy", test_scenes=tests)
    sandy = replace(sandy, card={**sandy.card, "domain": {**sandy.card["domain"], "platform": "test green"}})
    cache = CountingCache()
    choice = choose_model(scene("green", 300, 300, 13), np.zeros((300, 300), bool), None, [sand, sandy, green_t],
                          cache)
    assert choice.entry.label == green_t.label
    assert "sand" in cache.loaded and "sandy" not in cache.loaded and "ruled out by colour alone" in choice.why
    skipped = [t for t in choice.table if t.get("skipped")]
    assert [t["name"] for t in skipped] == [sandy.label] and skipped[0]["score"] is None
    assert "below another model of its data" in skipped[0]["skipped"]
    # the same twin, now the better one on the shared test scenes: it is used, so it is scored after all, and the
    # report's score and warning are its own, not the fit winner's (the review found the winner's 0.43 reported
    # for a model whose colours capped it at 0.34)
    best_sandy = replace(sandy, test={"miou": 0.9, "scenes": tests})
    cache = CountingCache()
    img = scene("green", 300, 300, 13)
    choice = choose_model(img, np.zeros((300, 300), bool), None, [sand, best_sandy, replace(green_t, test={
        "miou": 0.3, "scenes": tests})], cache)
    assert choice.entry.label == sandy.label and "sandy" in cache.loaded, choice.why
    own = score_image(cache.load(sandy.path)[0], sandy.card, img)
    assert choice.domain.score == own.score and choice.domain.in_domain == own.in_domain
    assert f"its own domain fit {own.score:.2f}" in choice.why and "ruled out by colour alone" not in choice.why
    assert not [t for t in choice.table if t.get("skipped")]
    assert f"{sandy.label} " not in choice.why.split("the others' domain fit")[-1], choice.why  # said once, not twice
# ------------------------------------------------------------------------------------------------ pixel size
def test_resampling_helpers_round_trip() -> None:
    assert resample_factor(0.1, 0.5) == pytest.approx(0.2)
    assert resample_factor(0.4, 0.5) is None  # within 1.5x
    assert resample_factor(None, 0.5) is None and resample_factor(0.1, None) is None
    rgb = scene("green", 400, 300, 1)
    small = resample_rgb(rgb, 0.2)
    assert small.shape == (80, 60, 3)
    mask = np.random.default_rng(0).integers(0, 3, (80, 60)).astype(np.uint8)
    back = resample_mask(mask, (400, 300))
    assert back.shape == (400, 300) and back.dtype == np.uint8 and set(np.unique(back)) <= {0, 1, 2}
    assert back[::5, ::5].shape == mask.shape and (back[2::5, 2::5] == mask).all()


def test_cli_resamples_a_fine_geotiff_and_keeps_its_grid(two_domains, tmp_path: Path) -> None:
    green, _ = two_domains
    transform = Affine(0.1, 0.0, 300000.0, 0.0, -0.1, 5000000.0)
    img = scene("green", 320, 400, 5).transpose(2, 0, 1).copy()
    src = write_tiff(tmp_path / "fine.tif", img, crs="EPSG:32618", transform=transform)
    out = tmp_path / "out"
    assert main([str(src), "--checkpoint", str(green.path), "--out", str(out), "--tile", "128", "--no-progress"]) == 0
    report = json.loads((out / "fine_report.json").read_text())
    assert report["pixel_size_m"] == pytest.approx(0.1) and report["pixel_size_used_m"] == pytest.approx(0.5)
    assert report["resampled"] == pytest.approx(0.2) and (report["width"], report["height"]) == (400, 320)
    assert any("resampled to the model's pixel size" in n for n in report["notes"])
    assert not any("is only" in n for n in report["notes"])  # large enough: no "a guess" caution
    with rasterio.open(out / "fine_mask.tif") as m:
        assert m.transform == transform and (m.width, m.height) == (400, 320) and m.crs.to_epsg() == 32618
        assert json.loads(m.tags()["CLASS_NAMES"]) == ["a", "b", "c"] and m.nodata == 255
        assert m.colormap(1)[1][:3] == (30, 200, 30)
    assert main([str(src), "--checkpoint", str(green.path), "--out", str(tmp_path / "raw"), "--tile", "128",
                 "--no-progress", "--no-resample"]) == 0
    raw = json.loads((tmp_path / "raw" / "fine_report.json").read_text())
    assert raw["resampled"] is None and raw["pixel_size_used_m"] == pytest.approx(0.1)
    assert raw["warning"] is not None and "not resampled" in raw["warning"]


# ------------------------------------------------------------------------------------------------ no data
def test_nodata_from_geotiff_value_alpha_and_borders(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(100, 4000, (3, 60, 80)).astype("uint16")
    data[:, :, :20] = 0
    t = write_tiff(tmp_path / "nd.tif", data, nodata=0, crs="EPSG:32618",
                   transform=Affine(0.5, 0, 300000, 0, -0.5, 5000000))
    m = nodata_mask(read_image(t))
    assert m[:, :20].all() and not m[:, 20:].any()

    rgba = np.dstack([scene("sand", 50, 60, 1), np.full((50, 60), 255, np.uint8)])
    rgba[10:20, 10:30, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    m = nodata_mask(read_image(tmp_path / "a.png"))
    assert m[10:20, 10:30].all() and m.sum() == 200

    rgb = scene("green", 100, 120, 2)
    rgb[:30] = 255  # a white collar along the top
    rgb[60:64, 50:54] = 255  # a small white roof inside: data
    rgb[50:70, :20] = 255  # a sunlit yard cut by the left edge, 3 % of the image, in no corner: data
    wedge = np.add.outer(np.arange(100), np.arange(120)) >= 190  # a reprojection's black wedge in a corner
    rgb[wedge] = 0
    Image.fromarray(rgb).save(tmp_path / "collar.png")
    loaded = read_image(tmp_path / "collar.png")
    m = nodata_mask(loaded)
    assert m[:30].all() and m[wedge].all() and not m[30:][~wedge[30:]].any()
    assert not nodata_mask(loaded, borders=False).any()

    eight = scene("green", 60, 60, 3).transpose(2, 0, 1).copy()
    eight[:, :, :10] = 255  # border region equal to the declared nodata value: no data
    eight[:, 30:34, 30:34] = 255  # a white roof inside: kept
    t = write_tiff(tmp_path / "eight.tif", eight, nodata=255, crs="EPSG:32618",
                   transform=Affine(0.5, 0, 300000, 0, -0.5, 5000000))
    m = nodata_mask(read_image(t), borders=False)
    assert m[:, :10].all() and not m[30:34, 30:34].any() and m.sum() == 600


def test_a_grey_image_is_said_to_be_grey_to_a_colour_model(two_domains, tmp_path: Path) -> None:
    """A grey scan read as RGB scored a higher domain fit than its colour original, and nothing said so."""
    green, _ = two_domains
    colour = scene("green", 64, 80, 4)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray(colour).convert("L").save(tmp_path / "grey.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "colour.png"), str(tmp_path / "grey.png"), "--checkpoint", str(green.path), "--out",
                 str(out), "--tile", "64", "--no-progress"]) == 0
    said = "the image is grey (its red, green and blue are one)"
    grey = json.loads((out / "grey_report.json").read_text())  # a reason of the warning: the fit cannot see it
    assert any(r.startswith(said) for r in grey["domain"]["reasons"]) and grey["areas_relative_only"] is True
    assert grey["domain"]["in_domain"] is False and said in grey["warning"]
    colour = json.loads((out / "colour_report.json").read_text())
    assert not any(said in r for r in colour["domain"]["reasons"] + colour["notes"])
    # beside its fit the model line says why it still warns (a review read "far from" beside a fit of 0.40)
    from core.seg.segmentation_result import Segmentation

    def line(how: str, reasons: list[str], score: float = 0.4) -> str:
        domain = DomainScore(known=True, score=score, in_domain=not reasons, reasons=reasons)
        return Segmentation(rgb=colour_img, mask=np.zeros((2, 2), np.uint8), classes=[], areas=[], domain=domain,
                            model={"name": "m", "how": how, "why": "best fit"}).model_line()

    colour_img = np.zeros((2, 2, 3), np.uint8)
    assert line("given", [said]) == ("m (given: best fit); domain fit 0.40; out of the domain all the same, for what "
                                     "the fit cannot see (the warning says)")
    assert line("auto", [said]).endswith("out of the domain all the same, for what the fit cannot see (the warning "
                                         "says)")
    assert line("given", []) == "m (given: best fit); domain fit 0.40"
    assert line("given", ["its colours are unlike any training tile's"], 0.0) == "m (given: best fit); domain fit 0.00"


def test_a_very_dark_image_is_out_of_the_domain_and_its_areas_relative(two_domains, tmp_path: Path) -> None:
    """An underexposed photo looks like deep water to the fingerprint: it scored a fit of 0.92 and came back as
    water, in the domain; now the darkness is the warning's reason, and areas are shares only."""
    green, _ = two_domains
    colour = scene("green", 64, 80, 4)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    Image.fromarray((colour // 12).astype(np.uint8)).save(tmp_path / "dark.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "colour.png"), str(tmp_path / "dark.png"), "--checkpoint", str(green.path), "--out",
                 str(out), "--tile", "64", "--no-progress"]) == 0
    dark = json.loads((out / "dark_report.json").read_text())
    assert dark["domain"]["in_domain"] is False and dark["areas_relative_only"] is True
    assert any(r.startswith("the image is very dark (its brightest pixels reach") for r in dark["domain"]["reasons"])
    assert "very dark" in dark["warning"]
    lit = json.loads((out / "colour_report.json").read_text())
    assert not any("very dark" in r for r in lit["domain"]["reasons"])
    assert dark_level(colour, np.ones(colour.shape[:2], bool)) >= DARK_LEVEL > dark_level(colour // 12, np.ones(
        colour.shape[:2], bool))
    assert dark_level(colour, np.zeros(colour.shape[:2], bool)) is None


def test_a_white_corner_taken_for_no_data_says_so_and_how_to_keep_it(two_domains, tmp_path: Path) -> None:
    """An overexposed corner of sand vanished from the areas and the score as "no data" with no word on why."""
    _, desert = two_domains
    img = scene("sand", 96, 96, 6)
    img[:40, :40] = 255
    Image.fromarray(img).save(tmp_path / "bright.png")
    for flag, said in (([], True), (["--keep-borders"], False)):
        out = tmp_path / f"out{len(flag)}"
        assert main([str(tmp_path / "bright.png"), "--checkpoint", str(desert.path), "--out", str(out), "--tile", "64",
                     "--no-progress", *flag]) == 0
        notes = json.loads((out / "bright_report.json").read_text())["notes"]
        assert any("17.4 % a near-white or near-black region at a corner, taken for a no-data collar" in n
                   and "--keep-borders" in n for n in notes) is said
    alpha = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    alpha[:40, :40, 3] = 0  # the file's own no-data (transparent): --keep-borders would not keep it, so no such note
    Image.fromarray(alpha).save(tmp_path / "clear.png")
    assert main([str(tmp_path / "clear.png"), "--checkpoint", str(desert.path), "--out", str(tmp_path / "c"), "--tile",
                 "64", "--no-progress"]) == 0
    notes = json.loads((tmp_path / "c" / "clear_report.json").read_text())["notes"]
    assert any("hold no data" in n for n in notes) and not any("taken for a no-data collar" in n for n in notes)
    collar = np.moveaxis(img, 2, 0).copy()
    collar[:, :, :24] = 0  # a GeoTIFF's nodata value (0) in a black collar: the file's no-data too
    write_tiff(tmp_path / "collar.tif", collar, nodata=0)
    assert main([str(tmp_path / "collar.tif"), "--checkpoint", str(desert.path), "--out", str(tmp_path / "t"),
                 "--tile", "64", "--no-progress"]) == 0
    notes = json.loads((tmp_path / "t" / "collar_report.json").read_text())["notes"]
    assert any("hold no data" in n for n in notes) and not any("taken for a no-data collar" in n for n in notes)


def test_nodata_is_transparent_and_left_out_of_the_areas(two_domains, tmp_path: Path) -> None:
    green, _ = two_domains
    rgba = np.dstack([scene("green", 64, 80, 4), np.full((64, 80), 255, np.uint8)])
    rgba[:, :20, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    out = tmp_path / "out"
    assert main([str(tmp_path / "alpha.png"), "--checkpoint", str(green.path), "--out", str(out), "--tile", "64",
                 "--no-progress"]) == 0
    report = json.loads((out / "alpha_report.json").read_text())
    assert report["nodata_share"] == pytest.approx(0.25)
    assert sum(a["pixels"] for a in report["areas"]) == 64 * 60
    assert sum(a["percent"] for a in report["areas"]) == pytest.approx(100.0)
    with Image.open(out / "alpha_mask.png") as m:
        idx = np.asarray(m)
        assert m.mode == "P" and m.info.get("transparency") == NODATA
    assert (idx[:, :20] == NODATA).all() and (idx[:, 20:] < 3).all()
    over = np.asarray(Image.open(out / "alpha_overlay.png"))
    assert (over[:, :20] == rgba[:, :20, :3]).all()  # no class colour over no data


def test_palette_png_opens_in_class_colours() -> None:
    mask = np.array([[0, 1], [2, NODATA]], np.uint8)
    import io

    with Image.open(io.BytesIO(palette_png(mask, CLASSES))) as img:
        assert img.mode == "P" and (np.asarray(img) == mask).all()
        rgb = np.asarray(img.convert("RGB"))
    assert (rgb[0, 0] == CLASSES[0]["color"]).all() and (rgb[1, 0] == CLASSES[2]["color"]).all()
    assert (palette(CLASSES)[:3] == np.array([c["color"] for c in CLASSES])).all()
    areas = class_areas(mask, CLASSES)
    assert [a["pixels"] for a in areas] == [1, 1, 1] and len(areas) == 3


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_are_one_line_each_and_the_others_still_run(two_domains, tmp_path: Path, capsys) -> None:
    green, _ = two_domains
    empty = np.zeros((3, 40, 40), np.uint16)
    write_tiff(tmp_path / "allnodata.tif", empty, nodata=0, crs="EPSG:32618",
               transform=Affine(0.5, 0, 300000, 0, -0.5, 5000000))
    write_tiff(tmp_path / "nogeo.tif", scene("green", 50, 70, 1).transpose(2, 0, 1).copy())
    Image.fromarray(scene("green", 40, 48, 2)).save(tmp_path / "small.png")
    out = tmp_path / "out"
    rc = main([str(tmp_path / "allnodata.tif"), str(tmp_path / "nogeo.tif"), str(tmp_path / "small.png"),
               "--checkpoint", str(green.path), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "allnodata.tif: every pixel is no data" in errors[0]
    nogeo = json.loads((out / "nogeo_report.json").read_text())
    assert nogeo["pixel_size_m"] is None and nogeo["resampled"] is None and not (out / "nogeo_mask.tif").exists()
    small = json.loads((out / "small_report.json").read_text())
    assert any("smaller than the 512 px window" in n for n in small["notes"])
    for report in (small, nogeo):  # the warning stands exactly where the image is too small for a domain fit
        reasons = report["domain"]["reasons"]
        too_small = bool(reasons) and reasons[0].startswith("the image is too small")
        assert (report["warning"] is not None) == too_small == report["areas_relative_only"]
    assert set(small) >= {"version", "image", "model", "domain", "classes", "areas", "pixel_size_m",
                          "pixel_size_used_m", "nodata_share", "warning", "notes"}
    assert small["model"]["how"] == "given" and small["domain"]["known"] is False  # 40 px: mirrored copies
    assert small["model"]["why"] == "named with --checkpoint"  # not "chosen by the user" (a review, of the demo)
    assert small["version"] == 2 and "relative_distance" in small["domain"] and "fit" not in small["domain"]
    assert small["domain"]["reasons"][0].startswith("the image is too small")
    # a review: "a guess" stood only in a note, with no warning beside the shares in the page, the demo's table or
    # the CSV; now it is the warning, said once (no note repeats it)
    assert small["warning"].startswith("This image cannot be held against what the model was trained on")
    assert "48 x 40 px" in small["warning"] and "a guess" in small["warning"]
    assert not any("a guess" in n for n in small["notes"])
    assert (out / "small_areas.csv").read_text().splitlines()[0].endswith(",warning")


# ------------------------------------------------------------------------------------------------ training side
def folder_set(tmp_path: Path) -> Path:
    """Three 'tiles' of three labeled images each, with a class table; returns the table's path."""
    table = tmp_path / "t.yaml"
    table.write_text("classes:\n  - {name: a, color: [255, 0, 0]}\n  - {name: b, color: [0, 255, 0]}\n"
                     "domain: {platform: test, gsd_m: 0.3, region: nowhere}\n")
    for tile in ("tile_1", "tile_2", "tile_3"):
        for k in range(3):
            (tmp_path / "images" / tile).mkdir(parents=True, exist_ok=True)
            (tmp_path / "masks" / tile).mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene("green", 64, 64, k)).save(tmp_path / "images" / tile / f"p{k}.png")
            lab = np.zeros((64, 64, 3), np.uint8)
            lab[:, :32] = [255, 0, 0]
            lab[:, 32:] = [0, 255, 0] if k else [255, 0, 0]
            Image.fromarray(lab).save(tmp_path / "masks" / tile / f"p{k}.png")
    return table


def test_named_test_scenes_hold_out_whole_folders(tmp_path: Path) -> None:
    table = folder_set(tmp_path)
    cfg = SegDataConfig(name="folder", root=str(tmp_path), class_table=str(table), tile_size=32, seed=0,
                        test_scenes=["tile_2"], val_fraction=0.15)
    splits = build_seg_splits(cfg, progress=False)
    assert splits.scenes["test"] == ["tile_2/p0", "tile_2/p1", "tile_2/p2"]
    assert not any(s.startswith("tile_2/") for s in splits.scenes["train"] + splits.scenes["val"])
    assert splits.dataset.table.domain["gsd_m"] == 0.3
    with pytest.raises(Exception, match="test_scenes: 'tile_9' names no scene"):
        build_seg_splits(cfg.model_copy(update={"test_scenes": ["tile_9"]}), progress=False)
    with pytest.raises(ValueError, match="tile_2 is named in both"):
        SegDataConfig(name="folder", root=str(tmp_path), class_table=str(table), test_scenes=["tile_2"],
                      val_scenes=["tile_2"])
    w = class_weights(splits.train, "balanced")
    counts = splits.train.counts.sum(axis=0)
    assert counts[0] > counts[1] and w[1] > w[0] and w.mean().item() == pytest.approx(1.0)
    assert class_weights(splits.train, "none") is None


def test_evaluate_scores_the_scenes_the_card_names(tmp_path: Path, capsys) -> None:
    from core.config import FinetuneConfig
    from core.seg.evaluate import main as evaluate_main

    table = folder_set(tmp_path)
    cfg = FinetuneConfig.model_validate({"data": {"name": "folder", "root": str(tmp_path), "class_table": str(table),
                                                  "tile_size": 32, "test_scenes": ["tile_3"]},
                                         "train": {"max_steps": 1}})
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES[:2])
    card["config"] = cfg.model_dump(mode="json")
    path = tmp_path / "m.safetensors"
    save_seg_checkpoint(path, build_seg_model(card).eval(), card)
    assert evaluate_main([str(path), "--no-progress", "--write-card"]) == 0
    out = capsys.readouterr().out
    assert "(3 images of 1 scene (tile_3), which it never saw: tile_3/p0, tile_3/p1, tile_3/p2;" in out  # as the card
    assert "IoU a" in out
    from core.store.checkpoint import read_metadata

    ev = read_metadata(path)["card"]["evaluation"]
    assert ev["scenes"] == ["tile_3/p0", "tile_3/p1", "tile_3/p2"] and ev["pixels"] == 3 * 64 * 64
    assert not set(ev["scenes"]) & set(ev["training_scenes"]) and ev["command"].startswith("python -m core.evaluate")
    calls: list[int] = []  # --tta: every window also goes through the model mirrored
    from core.seg import segmodel

    with pytest.MonkeyPatch.context() as mp:
        forward = segmodel.SegModel.forward
        mp.setattr(segmodel.SegModel, "forward", lambda self, x: calls.append(1) or forward(self, x))
        assert evaluate_main([str(path), "--no-progress"]) == 0
        plain_calls = len(calls)
        capsys.readouterr()
        assert evaluate_main([str(path), "--no-progress", "--tta", "--json"]) == 0
    assert plain_calls > 0 and len(calls) == 3 * plain_calls
    res = json.loads(capsys.readouterr().out)
    assert res["method"].startswith("whole scenes, flip TTA, window") and 0 <= res["miou"] <= 1
    assert evaluate_main([str(path), "--no-progress", "--tta", "--write-card"]) == 2  # the card's figures: no TTA
    assert "--write-card" in capsys.readouterr().err and read_metadata(path)["card"]["evaluation"] == ev
    for sub in ("images", "masks"):  # one test scene gone: a score on the others is no card figure
        (tmp_path / sub / "tile_3" / "p2.png").unlink()
    assert evaluate_main([str(path), "--no-progress", "--write-card"]) == 2
    err = capsys.readouterr().err
    assert "--write-card: not the card's figure: 1 of the card's 3 test scenes are not in this data" in err
    assert read_metadata(path)["card"]["evaluation"] == ev  # kept
    assert evaluate_main([str(tmp_path / "missing.safetensors"), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    noval = cfg.model_dump(mode="json")
    noval["data"]["val_fraction"], noval["train"]["average_from"] = 0.0, 0.5
    card["config"] = noval  # the shipped Dubai model's way: every non-test scene trains
    save_seg_checkpoint(tmp_path / "noval.safetensors", build_seg_model(card).eval(), card)
    assert evaluate_main([str(tmp_path / "noval.safetensors"), "--no-progress", "--split", "val"]) == 2
    assert "is empty: the model trained with no validation images" in capsys.readouterr().err
    import core.seg.evaluate as evaluate_module  # many scenes: the first few named, the rest counted

    many = {**ev, "scenes": [f"s{k}" for k in range(200)], "data": "folder", "split": "test"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_module, "evaluate_checkpoint", lambda *a, **k: many)
        assert evaluate_main([str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "200 scenes, which it never saw: s0, s1," in out and "s11 and 188 more (--json lists them all)" in out
    assert "s12" not in out
    # validation scenes are no unseen score: said so; long class names keep the figures in one column
    val = {**ev, "scenes": ["v1"], "split": "val", "iou": {"a": 0.5, "impervious surfaces": 0.25}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_module, "evaluate_checkpoint", lambda *a, **k: val)
        assert evaluate_main([str(path), "--no-progress", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "(1 scene, watched as validation: v1;" in out and "never saw" not in out and "no unseen score" in out
    assert "  IoU a                     50.0 %" in out and "  IoU impervious surfaces   25.0 %" in out, out
    # a card whose data folder is not on this machine (an exported model elsewhere): the error names --data-root
    away = {**card, "config": {**card["config"], "data": {**card["config"]["data"], "root": str(tmp_path / "gone")}}}
    save_seg_checkpoint(tmp_path / "away.safetensors", build_seg_model(card).eval(), away)
    assert evaluate_main([str(tmp_path / "away.safetensors"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not on this machine: pass --data-root DIR" in err, err
    assert evaluate_main([str(tmp_path / "away.safetensors"), "--no-progress", "--data-root", str(tmp_path)]) == 0


def test_fingerprint_of_an_exported_card_reads_its_data_from_data_root(tmp_path: Path, capsys) -> None:
    """The review: an exported card names its data folder <elsewhere>/...; core.fingerprint had no --data-root and
    failed on "/work/main/<elsewhere>/labeled" where core.evaluate asked for one."""
    from core.config import FinetuneConfig
    from core.seg.fingerprint import main as fingerprint_main

    table = folder_set(tmp_path)
    cfg = FinetuneConfig.model_validate({"data": {"name": "folder", "root": "<elsewhere>/labeled",
                                                  "class_table": str(table), "tile_size": 32,
                                                  "test_scenes": ["tile_3"]}, "train": {"max_steps": 1}})
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES[:2])
    card["config"] = cfg.model_dump(mode="json")
    path = tmp_path / "exported.safetensors"
    save_seg_checkpoint(path, build_seg_model(card).eval(), card)
    for out in (tmp_path, tmp_path / "exported.safetensors" / "x.safetensors"):  # said before any work (a review)
        assert fingerprint_main([str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out}") and ("is a folder" in err or "cannot make its folder" in err)
    assert fingerprint_main([str(path)]) == 2
    assert "data set folder <elsewhere>/labeled is not on this machine: pass --data-root DIR" in capsys.readouterr().err
    assert fingerprint_main([str(path), "--data-root", str(tmp_path)]) == 0
    assert "test scenes tile_3/p0, tile_3/p1, tile_3/p2" in capsys.readouterr().out
