"""The auto model choice never says something untrue (issue 26): a model trained on generated scenes is never picked
for a real photo, a real image that fits no model goes to the closest real one with a warning naming its training
data, near ties are said, and an out-of-domain result gives areas as shares only, with the warning in every output."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imaging.imageio import LoadedImage, generated_png, read_image
from core.seg.domain import training_data_kind, training_data_text
from core.seg.fingerprint import rewrite_card
from core.seg.model_choice import ModelCache, choose_model
from core.seg.segment import segment_choosing
from core.seg.resample import model_pixel_size, no_pixel_size_note
from core.seg.segmentation_result import write_outputs
from core.store.catalog import ModelEntry
from core.store.checkpoint import CheckpointError
from test_domain import model_for, scene  # noqa: E402 - the made-up green and sand domains
from workbench.segment_view import RELATIVE_NOTE, areas_frame

ROOT = Path(__file__).resolve().parents[1]


def generated_kind(entry: ModelEntry) -> ModelEntry:
    """The same model, its card (in the file too) saying it was trained on generated scenes."""
    card = {**entry.card, "domain": {**entry.card["domain"], "data_kind": "generated",
                                     "platform": "generated test scenes"}}
    rewrite_card(entry.path, card)
    return replace(entry, label=entry.label.replace("shipped", "shipped synthetic"), card=card)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelEntry, ModelEntry]:
    folder = tmp_path_factory.mktemp("choice")
    return generated_kind(model_for("green", folder, gsd=0.5)), model_for("sand", folder, gsd=0.5, seed=1)


def loaded(rgb: np.ndarray, generated: str | None = None, pixel_size_m: float | None = None) -> LoadedImage:
    return LoadedImage(rgb, pixel_size_m=pixel_size_m, generated=generated, name="tile.png")


def test_a_generated_scene_model_is_never_chosen_for_a_real_image(models) -> None:
    synthetic, sand = models
    green = scene("green", 300, 340, 7)  # fits the synthetic model best by far
    nodata = np.zeros(green.shape[:2], bool)
    choice = choose_model(loaded(green), nodata, None, [synthetic, sand], ModelCache())
    assert choice.entry.label == sand.label, choice.why
    assert choice.domain.in_domain is False  # a green scene is far from the sand model's tiles
    assert choice.why.startswith("no domain fits this image, the closest of 1 model(s) trained on real imagery")
    assert "1 trained on generated scenes left out" in choice.why
    assert "test sand" in choice.domain.warning() and "areas are given as shares" in choice.domain.warning()
    left_out = [t for t in choice.table if t["name"] == synthetic.label]
    assert left_out and left_out[0]["skipped"] == "trained on generated scenes: never chosen for a real image"
    # the same pixels from a file that says it was generated may go to the generated-scene model
    choice = choose_model(loaded(green, "core.data.generate_scene seed 1"), nodata, None, [synthetic, sand])
    assert choice.entry.label == synthetic.label and choice.domain.in_domain is True
    # no model of real imagery at all: refused in one line, never a synthetic answer
    with pytest.raises(CheckpointError, match="no model trained on real imagery"):
        choose_model(loaded(green), nodata, None, [synthetic], ModelCache())


def test_near_ties_are_reported(models, tmp_path: Path) -> None:
    synthetic, sand = models
    real_green = model_for("green", tmp_path, gsd=0.5, seed=2, name="green-real")
    purple = np.zeros((300, 300, 3), np.uint8)
    purple[..., 0], purple[..., 2] = 180, 220  # unlike both: both score 0.00
    choice = choose_model(loaded(purple), np.zeros((300, 300), bool), None, [sand, real_green], ModelCache())
    other = ({sand.label, real_green.label} - {choice.entry.label}).pop()
    assert f"; {other} fits it no better (domain fit 0 too): the nearer training tiles decided (relative " \
        in choice.why and "near tie" not in choice.why and "the others' domain fit" not in choice.why  # said once
    assert choice.as_dict()["near_tie"] == [{"name": other, "score": 0.0}]
    clear = choose_model(loaded(scene("sand", 300, 300, 3)), np.zeros((300, 300), bool), None, [sand, real_green])
    assert clear.entry.label == sand.label and clear.near_tie == [] and "near tie" not in clear.why
    # the Segment page gives the reason's first clause in its line and every clause as a bullet beneath (it was one
    # sentence of up to 450 characters); a clause's own parentheses are never split
    from workbench.segment_view import choice_parts

    parts = choice_parts(choice.why)
    assert "; ".join(parts) == choice.why and len(parts) >= 2 and parts[0].startswith("no domain fits this image")
    assert parts[1].startswith(f"{other} fits it no better (domain fit 0 too)")
    assert choice_parts("a (b; c); d") == ["a (b; c)", "d"] and choice_parts("one reason") == ["one reason"]


def test_the_near_tie_rule() -> None:
    from core.seg.domain import DomainScore
    from core.seg.model_choice import _near_ties, _tie_text

    def d(score: float, fit: float = 1.0) -> DomainScore:
        return DomainScore(known=True, score=score, fit=fit, in_domain=True)

    entries = [ModelEntry(f"m{k}", Path(f"m{k}"), {}) for k in range(4)]
    groups = {0: ("a",), 1: ("b",), 2: ("c",), 3: ("a",)}
    ranked = [(0, d(0.30)), (3, d(0.29)), (1, d(0.27)), (2, d(0.10))]
    near = _near_ties(0, ranked, entries, groups)
    assert [k for k, _ in near] == [1]  # a model of its own data is no rival; 0.10 is not near
    assert _tie_text(ranked[0][1], near, entries) == \
        "a near tie with m1 (0.300 vs 0.270): the scores are within 0.05, too close to tell the domains apart"
    assert _near_ties(0, [(0, d(0.021)), (1, d(0.0))], entries, groups) == []  # beyond all its tiles: no rival
    tie = _near_ties(0, [(0, d(0.0, 2.0)), (1, d(0.0, 3.0))], entries, groups)
    assert _tie_text(d(0.0, 2.0), tie, entries) == ("m1 fits it no better (domain fit 0 too): the nearer training "
                                                    "tiles decided (relative distance, the report's relative_distance: "
                                                    "2.00 vs 3.00)")
    assert _tie_text(d(0.1, 2.0), [(1, d(0.1, 3.0))], entries) == \
        ("a near tie with m1 (0.100 vs 0.100), decided by the nearer training tiles (relative distance, the report's "
         "relative_distance: 2.00 vs 3.00)")
    assert _tie_text(d(0.0, 2.0), [(1, d(0.0, 2.0))], entries) == \
        "a near tie with m1 (0.000 vs 0.000), equal in score and fit: the first listed was taken"


def test_an_out_of_domain_result_gives_shares_only_with_the_warning_in_every_output(models, tmp_path: Path) -> None:
    synthetic, sand = models
    image = loaded(scene("green", 300, 300, 5), pixel_size_m=0.5)
    seg = segment_choosing(image, [synthetic, sand], ModelCache(), tile=256)
    assert seg.model["name"] == sand.label and seg.areas_relative_only
    assert all(a["square_metres"] is None for a in seg.areas) and seg.warning
    out = write_outputs(seg, tmp_path, "tile", "tile.png")
    report = json.loads(out["report"].read_text())
    assert report["areas_relative_only"] is True and report["warning"] == seg.warning
    assert report["inference"] == {"tile": 256, "overlap": 0.25, "tta": False}  # the settings that made the mask
    assert report["model"]["training_data"] == training_data_text(sand.card)
    assert report["domain"]["trained_on"] == training_data_text(sand.card)
    import pandas as pd

    table = pd.read_csv(out["areas"])  # plain read_csv reads it whole (a `# warning:` first line broke it)
    assert list(table.columns) == ["class", "pixels", "percent", "square_metres", "warning"]
    assert set(table["warning"]) == {" ".join(seg.warning.split())} and table["square_metres"].isna().all()
    assert len(table) == len(seg.areas)
    frame = areas_frame(seg)
    assert "m²" not in frame.columns and set(frame["caution"]) == {RELATIVE_NOTE}
    # in its domain: square metres and no caution
    fit = segment_choosing(loaded(scene("sand", 300, 300, 6), pixel_size_m=0.5), [synthetic, sand], ModelCache(),
                           tile=256)
    assert fit.model["name"] == sand.label and not fit.areas_relative_only, fit.model["why"]
    assert "caution" not in areas_frame(fit).columns and areas_frame(fit)["m²"].notna().all()
    assert not fit.areas_csv().startswith("#")
    assert not [n for n in fit.notes if "pixel size" in n]
    # the same without a pixel size in the file: shares, and a note that says why (an empty column said nothing)
    plain = segment_choosing(loaded(scene("sand", 300, 300, 6)), [synthetic, sand], ModelCache(), tile=256)
    assert not plain.areas_relative_only and all(a["square_metres"] is None for a in plain.areas)
    gsd = model_pixel_size(sand.card)
    assert [n for n in plain.notes if "pixel size" in n] == [no_pixel_size_note(gsd)]
    assert no_pixel_size_note(0.5) == ("the file states no pixel size: areas are shares of the image only, not "
                                       "square metres (the model's card states 0.5 m per pixel for its own imagery); "
                                       "a georeferenced GeoTIFF gives them")


def test_a_generated_scene_model_picked_by_hand_warns_on_a_real_image(models) -> None:
    synthetic, _ = models
    green = scene("green", 300, 300, 8)
    seg = segment_choosing(loaded(green, pixel_size_m=0.5), [], ModelCache(), given=synthetic, tile=256)
    assert seg.areas_relative_only and "trained on generated scenes" in seg.warning
    assert "(generated scenes, not imagery of the ground)" in seg.warning
    same = segment_choosing(loaded(green, "a generator", 0.5), [], ModelCache(), given=synthetic, tile=256)
    assert same.warning is None and not same.areas_relative_only


def test_generated_pngs_say_so_and_other_files_do_not(tmp_path: Path) -> None:
    rgb = scene("sand", 64, 64, 1)
    (tmp_path / "gen.png").write_bytes(generated_png(rgb, "core.data.generate_scene seed 3"))
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    (tmp_path / "photo.jpg").write_bytes(buf.getvalue())
    assert read_image(tmp_path / "gen.png").generated == "core.data.generate_scene seed 3"
    assert np.array_equal(read_image(tmp_path / "gen.png").rgb, rgb)
    assert read_image(tmp_path / "plain.png").generated is None
    assert read_image(tmp_path / "photo.jpg").generated is None


def test_the_shipped_cards_say_what_their_training_data_is() -> None:
    kinds = {p.stem: training_data_kind(json.loads(p.read_text())) for p in (ROOT / "checkpoints").glob("*_seg.json")}
    assert kinds == {"synthetic_seg": "generated", "dubai_seg": "real", "deepglobe_seg": "real"}
    synthetic = json.loads((ROOT / "checkpoints/synthetic_seg.json").read_text())
    assert synthetic["domain"].get("data_kind") == "generated"  # stated on the card, not only inferred
    assert training_data_text(synthetic).endswith("(generated scenes, not imagery of the ground)")
    # a card without the field is read from its training config
    assert training_data_kind({"config": {"data": {"name": "synthetic"}}}) == "generated"
    assert training_data_kind({"config": {"data": {"name": "deepglobe"}}}) == "real"


def test_a_live_fine_tuning_run_offers_no_model_until_it_has_ended(tmp_path: Path) -> None:
    """Its best model is still changing and has no test score: a demo server started mid-run offered (and weighed by
    domain fit) a run still testing its 10-step model."""
    from core.store.catalog import segmentation_models
    from core.store.runs import create_run

    runs = tmp_path / "runs"
    live = create_run("live", "data:\n  name: synthetic\n", runs, kind="finetune", state="running")  # this pid: alive
    done = create_run("done", "data:\n  name: synthetic\n", runs, kind="finetune", state="completed")
    for run in (live, done):
        run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        (run.checkpoint_dir / "best.safetensors").write_bytes(b"weights")
    labels = [e.label for e in segmentation_models(runs) if not e.shipped]
    assert labels == [f"run: {done.id}"]
    live.write_status(state="completed")
    assert sorted(e.label for e in segmentation_models(runs) if not e.shipped) == sorted(
        [f"run: {done.id}", f"run: {live.id}"])


def test_a_run_whose_test_scenes_its_encoder_read_is_said_to_have_no_unseen_score() -> None:
    """Its test figure is not an unseen one, so it ranks by none; the note beside a better shipped model says so
    instead of "has no test score" (it has one)."""
    from core.seg.model_twins import better_shipped_note

    card = {"classes": [{"name": "a"}], "domain": {"test_scenes": ["t1"], "platform": "p", "gsd_m": None}}
    run = ModelEntry("run: leaky", Path("/r/best.safetensors"), card,
                     {"miou": 0.9, "scenes": ["t1"], "not_unseen": "model.init has read 1 of its test scenes (t1)"})
    shipped = ModelEntry("shipped: m", Path("/c/m.safetensors"), {**card, "domain": {**card["domain"],
                                                                                    "test_scenes": ["t9"]},
                                                                 "evaluation": {"miou": 0.5, "scenes": ["t9"]}})
    note = better_shipped_note(0, [run, shipped])
    assert run.test_miou() is None and "this run has no score on unseen test scenes" in note, note


def test_a_run_picked_without_a_test_score_is_said_to_be_unmeasured(monkeypatch) -> None:
    """A stopped or untested fine-tuning run can win a choice by fit alone: its reason says its quality is not
    measured (a review left it unsaid)."""
    from core.seg.model_choice import choose_model

    card = json.loads((ROOT / "checkpoints/synthetic_seg.json").read_text())
    card = {**card, "domain": {**card["domain"], "data_kind": "real"}}  # a real-imagery twin, to be a candidate
    untested = ModelEntry("run: halted", ROOT / "checkpoints/synthetic_seg.safetensors", card)
    tested = ModelEntry("run: done", ROOT / "checkpoints/synthetic_seg.safetensors", card,
                        {"miou": 0.4, "scenes": ["elsewhere"]})
    rgb = scene("sand", 128, 128, 1)
    for entry, said in ((untested, True), (tested, False)):
        choice = choose_model(rgb, np.zeros((128, 128), bool), None, [entry])
        assert ("this run has no test score (stopped, or not tested)" in choice.why) == said, choice.why
    # where the note on a better shipped model already says it, it is said once, not twice
    import core.seg.model_choice as model_choice

    said = "; note: shipped: twin scores 50.0 % on its test scenes, this run has no test score (other scenes)"
    monkeypatch.setattr(model_choice, "better_shipped_note", lambda *a: said)
    choice = choose_model(rgb, np.zeros((128, 128), bool), None, [untested])
    assert choice.why.endswith(said) and choice.why.count("no test score") == 1, choice.why
