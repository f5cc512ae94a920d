"""The Embeddings page: renders without runs, computes two maps side by side, selects tiles, reads the cache,
and turns a bad checkpoint or missing data into one error line."""
from __future__ import annotations

import re

import json
from pathlib import Path

import pytest

from core.store.runs import list_runs
from tests.pages import errors, open_page, texts
from tests.store import copy_store, deepglobe_encoder_store


def label_of(at, suffix: str) -> str:
    return next(o for o in at.multiselect(key="emb-models").options if o.endswith(suffix))


def choose(at, suffixes: list[str], pairs: bool = True):
    at.multiselect(key="emb-models").set_value([label_of(at, s) for s in suffixes]).run()
    at.radio(key="emb-source").set_value("own").run()
    if pairs:
        at.checkbox(key="emb-pairs").check().run()
    return at


@pytest.fixture()
def private_data(populated_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared runs, but a private data root: the embeddings cache must not change the shared store."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return populated_store


def test_renders_without_runs(empty_store: Path) -> None:
    at = open_page("embeddings")
    assert not at.exception and not errors(at)
    assert "press **Compute**" in texts(at) or "No pretrained encoders" in texts(at)


def test_two_checkpoints_side_by_side_then_selection_then_cache(private_data: Path) -> None:
    at = choose(open_page("embeddings"), ["tiny-false", "tiny-infonce"])
    assert texts(at).count("press **Compute**") == 2
    at.button(key="emb-compute").click().run(timeout=180)
    assert not at.exception and not errors(at)
    shown = [m for m in at.metric if m.label == "5-NN accuracy"]
    assert len(shown) == 2 and all(0 <= float(m.value) <= 1 for m in shown)
    for m in shown:  # each compared with the other one, with its interval, in grey (no colour calls a winner)
        interval = r"(within noise: )?[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]"
        assert re.fullmatch(interval, m.proto.delta), m.proto.delta
        assert m.proto.color == 2, m.proto  # GRAY: delta_color="off"
        noise = m.proto.delta.startswith("within noise")  # no arrow then (NONE); else up or down as the sign says
        assert m.proto.direction == (2 if noise else 0 if m.proto.delta.startswith("-") else 1), m.proto
    # what the chip is the difference to, said beside it (it was cut off)
    assert texts(at).count("Under the value: this map's minus the other map's, with the 95 % interval of that "
                           "difference (paired: each map's right and wrong answers on the same") == 2
    assert len(at.get("plotly_chart")) == 2
    false_run = next(r for r in list_runs(private_data) if r.id.endswith("tiny-false"))
    n_pairs = len({tuple(sorted((r["anchor_index"], r["candidate_index"]))) for r in false_run.flagged_pairs()})
    page = texts(at)
    assert f"{n_pairs} flagged pairs of run {false_run.id}" in page and "FALSE was off" in page
    assert "computed in" in page
    at.session_state["emb-map-0"] = {"selection": {"points": [{"customdata": 3}, {"customdata": 5}],
                                                   "point_indices": [], "box": [], "lasso": []}}
    at.run()
    assert not at.exception and "2 selected tiles" in texts(at) and len(at.get("image")) == 1
    # linked: the other map rings the same two tiles where its encoder put them
    assert "2 tile(s) selected in the other map are ringed here" in texts(at)
    other = json.loads(at.get("plotly_chart")[1].proto.spec)
    ring = next(t for t in other["data"] if str(t.get("name", "")).startswith("selected in the other map"))
    assert ring["name"] == "selected in the other map (2)"
    from core.data.synthetic_canvas import CLASSES  # each class in its own colour, as the Fine-tune and Segment pages draw
    drawn = {t["name"]: t["marker"]["color"] for t in other["data"] if t.get("mode") == "markers" and "marker" in t}
    own = {name: f"rgb({r},{g},{b})" for name, (r, g, b) in CLASSES}
    assert {n: c for n, c in drawn.items() if n in own} == {n: own[n] for n in drawn if n in own} != {}
    baselines = [m for m in at.metric if m.label == "majority class"]
    assert len(baselines) == 2 and all(0 < float(m.value) <= 1 for m in baselines)  # beside the accuracy
    colours = [m for m in at.metric if m.label == "colour statistics"]  # and what colour alone scores, the same way
    assert len(colours) == 2 and all(0 <= float(m.value) <= 1 for m in colours)
    said = [c.value for c in at.caption if c.value.startswith("Voters: the 5 nearest labeled tiles")]
    assert len(said) == 2 and all("colours alone" in c and "paired interval" in c for c in said), said

    again = choose(open_page("embeddings"), ["tiny-false", "tiny-infonce"])  # a new session: from disk
    assert not again.exception and texts(again).count("from the cache") == 2


@pytest.mark.parametrize("damage, says", [("weights", "not a readable safetensors"), ("data", "not found")])
def test_bad_checkpoint_or_missing_data_is_one_error_line(store_base: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, damage: str,
                                                          says: str) -> None:
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "private-data"))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-false"))
    ckpt = run.checkpoint_dir / "encoder.safetensors"
    if damage == "weights":
        ckpt.unlink()  # a hard link into the shared store (copy_store): writing through it would tear that one too
        ckpt.write_bytes(b"torn")
    else:
        card = json.loads(ckpt.with_suffix(".json").read_text())
        card["config"]["data"] = {**card["config"]["data"], "name": "folder", "root": str(tmp_path / "gone")}
        ckpt.with_suffix(".json").write_text(json.dumps(card))
    at = choose(open_page("embeddings"), ["tiny-false"], pairs=False)
    at.button(key="emb-compute").click().run(timeout=120)
    assert not at.exception
    assert len(errors(at)) == 1 and says in errors(at)[0] and "\n" not in errors(at)[0]


def test_the_encoders_own_labeled_data_is_the_default(private_data: Path) -> None:
    at = open_page("embeddings")
    assert not at.exception and not errors(at), errors(at)
    assert at.multiselect(key="emb-models").value[0].endswith("tiny-infonce")
    assert at.radio(key="emb-source").value == "own"  # pretrained on a labeled (synthetic) set: that set, not another
    assert at.radio(key="emb-source").options[0].startswith("the pretraining data of run:")
    # the tiles of its pretraining scenes, as its run recorded them: fewer than the set generates (a walkthrough
    # read "400 tiles" beside a map of 320)
    run = next(r for r in list_runs(private_data) if r.id.endswith("tiny-infonce"))
    tiles, generated = json.loads((run.path / "data.json").read_text())["tiles"], run.config()["data"]["num_tiles"]
    assert tiles < generated and f"{generated} tiles of" in at.radio(key="emb-source").options[0]
    assert f"{tiles} tiles in them" in at.radio(key="emb-source").options[0]
    assert f"All {tiles} tiles of this set are embedded" in texts(at)


def test_added_data_sources_are_offered(private_data: Path, tmp_path: Path) -> None:
    from core.store.sources import add_source
    from tests.test_baseline import deepglobe_folder

    folder = deepglobe_folder(tmp_path / "elsewhere" / "dg", scenes=4, size=300)
    add_source(str(folder))
    at = open_page("embeddings")
    key = f"source:{folder.resolve()}"
    assert any(o.startswith(f"data source {folder.resolve()}") for o in at.radio(key="emb-source").options)
    at.radio(key="emb-source").set_value(key).run()
    assert not at.exception and not errors(at), errors(at)
    page = texts(at)
    assert "Labeled; no preset reads this folder" in page  # its scenes' labels colour the map
    assert "All 16 tiles of this set are embedded" in page  # 4 scenes of 300 px, 2 x 2 tiles of 256 px each


def deepglobe_encoder(store_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, splits: list[str]):
    """A private store whose tiny-infonce encoder says it was pretrained on DeepGlobe scenes of ``splits``."""
    return deepglobe_encoder_store(store_base, tmp_path, monkeypatch, {"pretrain_splits": splits},
                                   data_dir="private-data")


@pytest.mark.parametrize("recorded", [640, None])
def test_the_own_sets_size_comes_from_its_run_not_from_tiling_it(store_base: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  recorded: int | None) -> None:
    """The encoder's own labeled set used to be built on every view just to count it (all of it tiled, for an
    encoder made on another machine): the count is the ``tiles`` of its pretraining run's data.json, and without
    one the slider goes to 5000 and says the size is counted when the map is computed."""
    import workbench.common

    run = deepglobe_encoder(store_base, tmp_path, monkeypatch, ["train", "val"])
    (run.path / "data.json").unlink(missing_ok=True)
    if recorded is not None:
        (run.path / "data.json").write_text(json.dumps({"name": "deepglobe", "tiles": recorded, "labeled": True}))
    built: list = []
    monkeypatch.setattr(workbench.common, "dataset_of", lambda data: built.append(data) or [0] * 10_000)
    at = open_page("embeddings")
    assert not at.exception and not errors(at), errors(at)
    assert at.multiselect(key="emb-models").value[0] == f"run: {run.id}" and at.radio(key="emb-source").value == "own"
    assert built == []  # not built (nor tiled) to be counted
    slider = at.slider(key="emb-own-tiles")
    assert slider.max == (recorded or 5000)
    assert ("Its size is counted when the map is computed" in texts(at)) == (recorded is None)


def test_a_smaller_own_set_after_a_bigger_one_restarts_the_tiles_slider(store_base: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """500 tiles chosen for a 1000-tile set, then an encoder of a 204-tile set: "The value 500 is greater than the
    max_value 204" replaced the page, Compute included, until a reload."""
    run = deepglobe_encoder(store_base, tmp_path, monkeypatch, ["train"])
    record = lambda tiles: (run.path / "data.json").write_text(  # noqa: E731
        json.dumps({"name": "deepglobe", "tiles": tiles, "labeled": True}))
    record(1000)
    at = open_page("embeddings")
    at.slider(key="emb-own-tiles").set_value(800).run()
    record(204)  # as another encoder's smaller set: the slider keeps its key
    at.run()
    assert not at.exception and not errors(at), [e.value for e in at.exception] or errors(at)
    slider = at.slider(key="emb-own-tiles")
    assert slider.max == 204 and 200 <= slider.value <= 204
    assert any(b.label.startswith("Compute") for b in at.button), [b.label for b in at.button]


def test_the_settings_survive_a_visit_to_another_page(empty_store: Path) -> None:
    """Tiles, colouring and the other settings came back as the defaults after a page trip, showing another map."""
    at = open_page("embeddings")
    assert at.multiselect(key="emb-models").value  # the shipped encoder, in every checkout
    at.radio(key="emb-source").set_value("synthetic").run()
    at.slider(key="emb-tiles").set_value(200).run()
    at.radio(key="emb-colour").set_value("cluster").run()
    at.checkbox(key="emb-pairs").check().run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/embeddings.py").run()
    assert not at.exception
    assert at.radio(key="emb-source").value == "synthetic" and at.slider(key="emb-tiles").value == 200
    assert at.radio(key="emb-colour").value == "cluster" and at.checkbox(key="emb-pairs").value


def test_another_first_checkpoint_brings_its_own_data_back(populated_store: Path) -> None:
    """A review picked synthetic tiles for one pair, then two other runs: the pick stayed, and real-imagery encoders
    were embedded on generated tiles."""
    at = open_page("embeddings")
    options = at.multiselect(key="emb-models").options
    first = at.multiselect(key="emb-models").value[0]
    assert at.radio(key="emb-source").value == "own"  # its own data first, labeled or not
    at.radio(key="emb-source").set_value("synthetic").run()
    at.run()
    assert at.radio(key="emb-source").value == "synthetic"  # kept while the first checkpoint stays
    other = next(o for o in options if o != first and o.startswith("run:"))
    at.multiselect(key="emb-models").set_value([other]).run()
    assert not at.exception and at.radio(key="emb-source").value == "own"
    assert at.radio(key="emb-source").options[0].startswith(f"the pretraining data of {other}")


def test_the_difference_between_two_maps_leads_with_its_verdict() -> None:
    """A narrow column cut the end of "… vs the other: within noise" (the review): the verdict comes first, and
    nothing follows the numbers (the page's caption says what the difference is to)."""
    from workbench.common import difference_text

    assert difference_text("5-NN accuracy", 0.60, 100, 0.62, 100) == "within noise: -0.020 [-0.152, +0.113]"
    assert difference_text("5-NN accuracy", 0.90, 400, 0.50, 400) == "+0.400 [+0.341, +0.455]"
    # the normal approximation called 4/4 against 2/4 a difference (+0.50 ± 0.49) and gave 3/3 against 0/3 no width
    # two maps of the same 100 tiles that disagree on 10, all won by the first: told apart only when paired
    a, b = [1] * 70 + [0] * 30, [1] * 60 + [0] * 40
    from core.analysis.stats import paired_shares_difference

    _, low, high = paired_shares_difference(a, b)
    assert difference_text("5-NN accuracy", 0.70, 100, 0.60, 100, (a, b)) == f"+0.100 [{low:+.3f}, {high:+.3f}]"
    assert low > 0 and difference_text("5-NN accuracy", 0.70, 100, 0.60, 100).startswith("within noise")
    assert difference_text("5-NN accuracy", 1.0, 4, 0.5, 4) == "within noise: +0.500 [-0.102, +0.850]"
    assert difference_text("5-NN accuracy", 1.0, 3, 0.0, 3) == "+1.000 [+0.206, +1.000]"
    assert difference_text("silhouette", 0.2, 100, 0.1, 100) == "+0.100 (no interval)"


def test_a_labeled_folder_no_preset_reads_takes_its_class_table_here(private_data: Path, tmp_path: Path) -> None:
    """A review: the page said "images and masks, but no class table yet: give one" and had no field for it, so a
    Dubai folder's map was coloured by cluster."""
    import numpy as np
    from PIL import Image

    from core.store.sources import add_source

    folder = tmp_path / "elsewhere" / "my_dubai"
    colours = [(60, 16, 152), (132, 41, 246), (110, 193, 228)]
    for k in range(3):
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (64, 64, 3), np.uint8)).save(
            folder / "images" / f"s{k}.png")
        Image.fromarray(np.full((64, 64, 3), colours[k], np.uint8)).save(folder / "masks" / f"s{k}.png")
    add_source(str(folder))
    at = open_page("embeddings")
    at.radio(key="emb-source").set_value(f"source:{folder.resolve()}").run()
    assert "Unlabeled: coloured by cluster; images and masks, read once a class table is given above" in texts(at)
    key = f"emb-class-table-{folder.resolve()}"  # each source its own
    at.text_input(key=key).set_value("configs/classes/nosuch.yaml").run()
    assert any("Class table: configs/classes/nosuch.yaml: no such file" in e for e in errors(at)), errors(at)
    at.text_input(key=key).set_value("/etc/passwd").run()  # the path guard: nothing outside is read or said to exist
    assert any("Class table: /etc/passwd: outside the folders" in e for e in errors(at)), errors(at)
    at.text_input(key=key).set_value("configs/classes/dubai.yaml").run()
    assert not at.exception and not errors(at), errors(at)
    assert "Labeled; masks read with configs/classes/dubai.yaml" in texts(at)


def test_an_unfinished_runs_encoder_says_its_step(store_base: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A review's map was of a run stopped at step 10 of 80, picked by default, with no word of it."""
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-infonce"))
    card_path = run.checkpoint_dir / "encoder.json"
    card = json.loads(card_path.read_text())
    total = card["total_steps"]
    card_path.write_text(json.dumps({**card, "step": 2}))
    at = open_page("embeddings")
    at.multiselect(key="emb-models").set_value([label_of(at, "tiny-infonce"), label_of(at, "tiny-false")]).run()
    said = [c.value for c in at.caption if c.value.startswith("⚠️ The encoder of step")]
    assert said == [f"⚠️ The encoder of step 2 of {total}: the run's last checkpoint, not a finished run."], said
