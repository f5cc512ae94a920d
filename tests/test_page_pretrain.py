"""The Pretrain page: the form refuses bad values before launch; Launch starts a real background run."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.store import launch
from core.store.runs import list_runs
from tests.pages import errors, open_page, shown, texts

TINY = {"tiles": 24, "tile_size": 48, "image_size": 32, "batch": 8, "steps": 2, "proj_dim": 16,
        "proj_hidden": 32, "ckpt": 1, "log": 1}


def _set(at, **values) -> None:
    for name, value in values.items():
        at.number_input(key=f"pre-demo_cpu-{name}").set_value(value)


def test_renders_with_an_empty_store(empty_store: Path) -> None:
    at = open_page("pretrain")
    assert not at.exception
    assert "No pretraining runs yet" in texts(at)
    settings = next(e for e in at.expander if e.label == "Settings")
    assert settings.proto.expanded  # nothing to watch: the form is open
    assert [b.label for b in at.button] == ["↺ Preset values", "➕ Add", "🚀 Launch"]  # a data source, a run


def test_renders_with_a_populated_store(populated_store: Path) -> None:
    at = open_page("pretrain")
    assert not at.exception and not errors(at)
    # the newest run with curves is shown first, not the newer dead or broken ones
    assert at.selectbox(key="pretrain-run").value.endswith("tiny-infonce")
    import json

    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert sorted(titles) == ["Images / s", "Learning rate", "Loss"]  # InfoNCE flags nothing: no chart of zeros
    assert "FNCC's treatment" not in texts(at) and not at.warning


def test_a_false_run_says_what_its_calibration_changed(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    import json

    from tests.store import copy_store

    run = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-false"))
    pairs = run.flagged_pairs()
    steps = {p["step"] for p in pairs if p["calibrated"]}
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Flagged and calibrated pairs per step" in titles
    per_step = sum(p["calibrated"] for p in pairs) / 16
    figures = f"alibration fired in {len(steps)} of 16 steps ({per_step:.2f} calibrated pairs per step)"
    assert steps and figures in texts(at)  # as the caption, or within the verdict when that is negligible already
    # the same run trained on to step 200 without another calibration (at most 16 pairs in 16 steps: under 0.1 per
    # step and in under 1 step in 10): in effect SimCLR, said in plain words
    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    copy = next(r for r in list_runs(runs_root) if r.id == run.id)
    copy.write_status(step=200)
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    (warning,) = [w.value for w in at.warning]
    assert "of 200 steps" in warning and "this run is, in effect, SimCLR." in warning, warning


def test_every_bad_value_is_refused_at_once_in_the_forms_words(empty_store: Path, monkeypatch) -> None:
    at = open_page("pretrain")
    # no field has a range the browser enforces (out of range, it held the form back with a mark on the field only:
    # Launch seemed dead); values out of any range reach the config, which names them
    # (the GPUs field is no config setting: it keeps its range)
    assert [n.label for n in at.number_input if n.proto.has_min or n.proto.has_max] == ["GPUs (one process each)"]
    _set(at, threshold=0.0, temperature=0.0, batch=1, blur=1.5, steps=-3)
    at.selectbox(key="pre-demo_cpu-data").set_value("folder")
    at.text_input(key="pre-demo_cpu-folder").set_value("/etc")
    at.button(key="pretrain-launch").click().run()
    assert not at.exception
    assert len(errors(at)) == 1, errors(at)  # one list, every problem in it
    summary = errors(at)[0]
    assert "6 settings to change" in summary, summary
    for label in ("threshold (FNCC gate)", "temperature", "Batch size", "Data folder (all but synthetic)",
                  "Blur probability", "Steps"):
        assert f"**{label}**" in summary, summary
    assert "(0, 1]" in summary and "outside the folders" in summary
    assert "loss.threshold" not in summary and "train.batch_size" not in summary  # labels, not config keys
    beside = [m.value for m in at.markdown if m.value.startswith(":red[⚠")]
    assert len(beside) == 6, beside  # and each beneath its own field
    # the message's own "]" is escaped, so it cannot end the red span early and cut the message
    assert any(b.endswith(r"(0, 1\], got 0\.0]") and "(0, 1], got 0.0" in shown(b) for b in beside), beside
    assert list_runs(empty_store) == []
    _set(at, steps=5)  # corrected: its line goes at once (it stayed until the next Launch), the others stay
    at.run()
    beside = [m.value for m in at.markdown if m.value.startswith(":red[⚠")]
    assert len(beside) == 5 and "5 settings to change" in errors(at)[0] and "**Steps**" not in errors(at)[0], beside
    monkeypatch.setattr(launch, "launch", lambda *a, **k: (_ for _ in ()).throw(OSError("not started here")))
    _set(at, threshold=0.5, temperature=0.2, batch=8, blur=0.5, steps=2)
    at.selectbox(key="pre-demo_cpu-data").set_value("synthetic")
    at.button(key="pretrain-launch").click().run()  # good values: the launch is tried and the old problems are gone
    assert errors(at) == ["Could not start the run: not started here"], errors(at)
    assert not [m for m in at.markdown if m.value.startswith(":red[⚠")]


def test_a_folder_outside_the_roots_is_refused(empty_store: Path) -> None:
    at = open_page("pretrain")
    at.selectbox(key="pre-demo_cpu-data").set_value("folder")
    at.text_input(key="pre-demo_cpu-folder").set_value("/etc")
    at.button(key="pretrain-launch").click().run()
    assert any("outside the folders" in e for e in errors(at)), errors(at)
    assert list_runs(empty_store) == []


@pytest.mark.slow
def test_launch_creates_a_run_that_trains_in_the_background(empty_store: Path) -> None:
    at = open_page("pretrain")
    _set(at, **TINY)
    at.selectbox(key="pre-demo_cpu-opt").set_value("adamw")
    at.text_input(key="pre-demo_cpu-name").set_value("page-launch")
    at.button(key="pretrain-launch").click().run()
    assert not at.exception and not errors(at), errors(at)
    runs = list_runs(empty_store)
    assert len(runs) == 1 and runs[0].id.endswith("page-launch")
    run = runs[0]
    assert (run.path / "config.yaml").is_file() and run.status()["pid"]
    deadline = time.time() + 240
    while run.is_live() and time.time() < deadline:
        time.sleep(0.5)
    assert run.state() == "completed", (run.status(), (run.path / "console.txt").read_text()[-2000:])
    assert [m["step"] for m in run.metrics()] == [1, 2]
    assert run.last_checkpoint() is not None
    at.run()  # the watcher now shows the finished run
    assert "completed" in texts(at)


@pytest.mark.slow  # two runs or a run and its scoring: the full suite (the fast tier is kept under 3 minutes)
def test_a_labeled_data_set_pretrains_on_its_training_scenes_only(empty_store: Path, tmp_path: Path) -> None:
    import numpy as np
    import yaml
    from PIL import Image

    from core.store import launch

    root = tmp_path / "data" / "dg" / "train"
    root.mkdir(parents=True)
    for k in range(5):
        Image.fromarray(np.full((64, 64, 3), 40 * k, np.uint8)).save(root / f"{k}_sat.jpg")
        Image.fromarray(np.full((64, 64, 3), (0, 255, 255), np.uint8)).save(root / f"{k}_mask.png")
    at = open_page("pretrain")
    _set(at, **TINY)
    at.selectbox(key="pre-demo_cpu-data").set_value("deepglobe")
    at.text_input(key="pre-demo_cpu-folder").set_value("dg")
    _set(at, tile_size=32, batch=4, val_fraction=0.2, test_fraction=0.2)
    at.text_input(key="pre-demo_cpu-name").set_value("dg-page")
    at.button(key="pretrain-launch").click().run()
    assert not at.exception and not errors(at), errors(at)
    (run,) = list_runs(empty_store)
    try:
        cfg = yaml.safe_load((run.path / "config.yaml").read_text())
        assert cfg["data"]["name"] == "deepglobe" and cfg["data"]["pretrain_splits"] == ["train"]
        assert cfg["data"]["root"] == str(root.parent.resolve())
        deadline = time.time() + 120
        while not (run.path / "data.json").is_file() and run.is_live() and time.time() < deadline:
            time.sleep(0.5)
        import json

        record = json.loads((run.path / "data.json").read_text())
        assert record["pretrain_scenes"] == record["split_scenes"]["train"] and len(record["pretrain_scenes"]) == 3
        assert record["tiles"] == 3 * 4  # 3 training scenes of 2 x 2 tiles
    finally:
        launch.stop(run)


def _values(data) -> list:
    """A plotly trace's values, whether a list or a typed array ({"dtype", "bdata"} in base64)."""
    import base64

    import numpy as np

    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


def test_the_flagged_pairs_curve_counts_every_step_from_fns_jsonl(populated_store: Path) -> None:
    """tiny-false logs every 4th step; the curve still shows each of its 16 steps, equal to fns.jsonl's counts."""
    import json

    run = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-false"))
    pairs = run.flagged_pairs()
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    chart = next(s for s in specs if "Flagged" in s["layout"]["title"]["text"])
    traces = {t["name"]: {k: _values(t[k]) for k in ("x", "y")} for t in chart["data"]}
    assert traces["flagged"]["x"] == list(range(1, 17))
    per_step = [sum(p["step"] == s for p in pairs) for s in range(1, 17)]
    assert traces["flagged"]["y"] == per_step and sum(per_step) == len(pairs) > 0
    assert sum(traces["calibrated"]["y"]) == sum(bool(p["calibrated"]) for p in pairs)
    assert len([m for m in run.metrics() if "flagged" in m]) == 4  # what the curve used to read


def test_the_knn_monitor_is_plotted_beside_the_loss(populated_store: Path) -> None:
    import json

    run = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-false"))
    knn = [m for m in run.metrics() if "knn_acc" in m]
    assert [m["step"] for m in knn] == [0, 8, 16]  # step 0: the untrained encoder
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [s["layout"]["title"]["text"] for s in specs]
    # two columns, filled in turn: the loss first in the left one, the kNN curve first in the right one
    knn_chart = next(s for s in specs if s["layout"]["title"]["text"].startswith("kNN accuracy"))
    assert titles[0] == "Loss" and len(titles) == 5, titles
    traces = {t["name"]: {k: _values(t[k]) for k in ("x", "y")} for t in knn_chart["data"]}
    assert traces["kNN accuracy"] == {"x": [0, 8, 16], "y": [m["knn_acc"] for m in knn]}  # in words, not keys
    assert traces["majority class"]["y"] == [m["knn_baseline"] for m in knn]
    said = "What the encoder has learned is its rise from step 0"  # read against step 0 and the dashed line
    assert sum(said in c.value for c in at.caption) == 1
    reading = next(c.value for c in at.caption if said in c.value)  # and the last value read against both references
    assert reading.startswith(f"📏 Step 16: kNN accuracy {100 * knn[-1]['knn_acc']:.1f} % (95 % ")
    assert "the untrained encoder's" in reading and "at step 0" in reading
    other = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-infonce"))
    at.selectbox(key="pretrain-run").set_value(other.id).run()
    assert not any("kNN" in json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart"))
    assert not any(said in c.value for c in at.caption)


def test_a_folder_added_as_a_data_source_is_used_by_the_form(empty_store: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    mine = tmp_path / "elsewhere" / "my_tiles"
    mine.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(mine / f"t{i}.png")
    at = open_page("pretrain")
    at.text_input(key="pre-demo_cpu-folder").set_value(str(mine)).run()  # a folder the synthetic set does not read
    assert at.text_input(key="pre-demo_cpu-name").value == "demo-simclr-false"
    at.selectbox(key="pre-demo_cpu-data").set_value("folder")
    at.text_input(key="pre-demo_cpu-folder").set_value(str(mine))
    at.button(key="pretrain-launch").click().run()
    summary = errors(at)[0]
    assert "outside the folders" in summary and "data source" in summary  # says how to add it
    at.text_input(key="pretrain-source-path").set_value(str(mine))
    at.button(key="pretrain-source-add").click().run()
    assert not at.exception and any("Added" in s.value and "6 image(s)" in s.value for s in at.success)
    at.button(key="pretrain-source-use").click().run()
    assert at.selectbox(key="pre-demo_cpu-data").value == "folder"
    assert at.text_input(key="pre-demo_cpu-folder").value == str(mine.resolve())
    # the untouched name says the data when it is not the preset's (a Dubai run was named "demo-simclr-false")
    assert at.text_input(key="pre-demo_cpu-name").value == "my_tiles-simclr-false"
    seen: dict = {}

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen["cfg"] = cfg
        raise OSError("not started in this test")

    monkeypatch.setattr(launch, "launch", fake_launch)
    at.button(key="pretrain-launch").click().run()  # refused before launching: a batch the folder cannot fill
    assert "is larger than the data set (6 tiles)" in errors(at)[0] and "cfg" not in seen, errors(at)
    _set(at, batch=4)
    at.button(key="pretrain-launch").click().run()
    assert seen["cfg"].data.name == "folder" and seen["cfg"].data.root == str(mine.resolve())
    assert seen["cfg"].name == "my_tiles-simclr-false"



def test_a_labeled_source_keeps_its_labels_through_use_for_pretraining(empty_store: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """A review: Use for pretraining on Dubai's images/ + masks/ left the class table empty, so the run would have
    pretrained unlabeled (no kNN, no flag precision, no oracle) while the source said "with labels". The class table of
    a preset reading the folder comes with it now; without one, the message says the masks are not read."""
    import numpy as np
    from PIL import Image

    import core.seg.data_defaults as defaults

    labeled = tmp_path / "elsewhere" / "aerial"
    for part in ("images", "masks"):
        (labeled / part / "tile_1").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 60 * i, np.uint8)).save(labeled / "images" / "tile_1" / f"p{i}.jpg")
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(labeled / "masks" / "tile_1" / f"p{i}.png")
    at = open_page("pretrain")
    at.text_input(key="pretrain-source-path").set_value(str(labeled))
    at.button(key="pretrain-source-add").click().run()
    at.button(key="pretrain-source-use").click().run()
    table = next(t for t in at.text_input if t.label.startswith("Class table"))
    assert table.value == "" and any("masks are not read until you give its class table" in w.value
                                     for w in at.warning), texts(at)
    monkeypatch.setattr(defaults, "preset_reading", lambda folder: ("finetune_dubai_cpu", {
        "class_table": "configs/classes/dubai.yaml", "test_scenes": ["tile_1/p1"], "split_unit": "file",
        "val_fraction": 0.2}))
    at.button(key="pretrain-source-use").click().run()
    table = next(t for t in at.text_input if t.label.startswith("Class table"))
    assert table.value == "configs/classes/dubai.yaml", texts(at)
    assert any("read with the class table configs/classes/dubai.yaml" in s.value for s in at.success), texts(at)
    assert next(t for t in at.text_input if t.label == "Test scenes").value == "tile_1/p1"
    _set(at, batch=2)  # the three training images fill it
    seen = _capture_launches(monkeypatch)
    at.button(key="pretrain-launch").click().run()
    assert seen and seen[-1][0].data.class_table.endswith("configs/classes/dubai.yaml"), errors(at)
    data = seen[-1][0].data  # the split the preset reading the folder makes: its test scenes never pretrained on
    assert (data.test_scenes, data.split_unit, data.val_fraction) == (["tile_1/p1"], "file", 0.2), data
    launched = len(seen)
    next(t for t in at.text_input if t.label == "Test scenes").set_value("tile_9").run()
    at.button(key="pretrain-launch").click().run()  # read before launching: a scene that names nothing is refused
    assert len(seen) == launched and "names no scene of dubai" in texts(at), texts(at)
    next(t for t in at.text_input if t.label == "Test scenes").set_value("tile_1/p1").run()
    table.set_value("").run()  # no class table: no split, so scenes named for the test would be pretrained on
    at.button(key="pretrain-launch").click().run()
    assert "an image folder without a class table has no split" in texts(at), texts(at)
    next(s for s in at.selectbox if s.label == "Data set").set_value("synthetic").run()  # names of another set: gone
    assert next(t for t in at.text_input if t.label == "Test scenes").value == ""
    next(s for s in at.selectbox if s.label == "Data set").set_value("synthetic").run()
    at.button(key="pretrain-launch").click().run()  # a published or generated set: no folder unit to refuse
    assert seen[-1][0].data.name == "synthetic" and seen[-1][0].data.split_unit is None, errors(at)


def test_bands_typed_in_the_form_reach_the_run_and_a_bad_band_is_refused_beside_the_field(
        empty_store: Path, monkeypatch) -> None:
    at = open_page("pretrain")
    at.text_input(key="pre-demo_cpu-bands").set_value("R, R")
    at.button(key="pretrain-launch").click().run()
    assert not at.exception and len(errors(at)) == 1 and "**Bands**" in errors(at)[0]
    assert "named twice" in errors(at)[0] and list_runs(empty_store) == []
    launched: list = []
    monkeypatch.setattr(launch, "launch", lambda kind, cfg, *a, **k: launched.append(cfg) or
                        (_ for _ in ()).throw(OSError("not started here")))
    at.text_input(key="pre-demo_cpu-bands").set_value("r, g, b, near-infrared")
    at.button(key="pretrain-launch").click().run()
    assert launched and launched[0].data.bands == ["R", "G", "B", "NIR"]


def test_the_form_its_data_source_and_its_expanders_survive_a_page_trip(empty_store: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    mine = tmp_path / "elsewhere" / "trip_tiles"
    mine.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 60 * i, np.uint8)).save(mine / f"t{i}.png")
    at = open_page("pretrain")
    at.text_input(key="pretrain-source-path").set_value(str(mine))
    at.button(key="pretrain-source-add").click().run()
    at.button(key="pretrain-source-use").click().run()  # the data source fills the form
    _set(at, batch=2, steps=7)
    at.text_input(key="pre-demo_cpu-name").set_value("kept")
    monkeypatch.setattr(launch, "launch", lambda *a, **k: (_ for _ in ()).throw(OSError("not started here")))
    at.button(key="pretrain-launch").click().run()  # a form's values reach the app when it is submitted
    assert errors(at) == ["Could not start the run: not started here"], errors(at)
    settings = next(e for e in at.expander if e.label == "Settings")
    assert settings.proto.expanded  # an empty store opens it
    at.session_state["pretrain-settings"] = False  # the user folds the form ...
    at.session_state["pretrain-sources-open"] = True  # ... and unfolds the data sources
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/pretrain.py").run()
    assert not at.exception and not errors(at), errors(at)
    assert at.selectbox(key="pre-demo_cpu-data").value == "folder"
    assert at.text_input(key="pre-demo_cpu-folder").value == str(mine.resolve())
    assert at.number_input(key="pre-demo_cpu-batch").value == 2 and at.number_input(key="pre-demo_cpu-steps").value == 7
    assert at.text_input(key="pre-demo_cpu-name").value == "kept"
    expanders = {e.label.split(":")[0]: e.proto.expanded for e in at.expander}
    assert expanders == {"Settings": False, "📁 Data sources": True}, expanders


def _capture_launches(monkeypatch) -> list:
    """Launch hands its config (and the run's name) to this list instead of starting a process."""
    seen: list = []

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen.append((cfg, name))
        raise OSError("not started in this test")

    monkeypatch.setattr(launch, "launch", fake_launch)
    return seen


def test_a_detector_and_a_treatment_picked_in_the_form_reach_the_config(empty_store: Path, monkeypatch) -> None:
    """nearest + eliminate: the form shows that pair's settings only (no FNCC alpha or gate, no FNSD selection),
    names the run as the tables will, and launches exactly that loss; DCL shows its tau+, refused beside it when
    out of range."""
    seen = _capture_launches(monkeypatch)
    at = open_page("pretrain")
    assert at.radio(key="pre-demo_cpu-loss").value == "false"  # the preset: FALSE
    assert at.selectbox(key="pre-demo_cpu-detector").value == "fnsd"
    assert "simclr + FALSE" in shown(texts(at))
    assert at.selectbox(key="pre-demo_cpu-selection").value == "global"  # one pair per batch: no top-k to set
    assert "top-k" not in {w.label for w in at.number_input}
    at.selectbox(key="pre-demo_cpu-selection").set_value("per_anchor").run()
    assert "top-k" in {w.label for w in at.number_input}
    at.selectbox(key="pre-demo_cpu-selection").set_value("global").run()
    at.selectbox(key="pre-demo_cpu-detector").set_value("nearest").run()
    at.selectbox(key="pre-demo_cpu-treatment").set_value("eliminate").run()
    labels = {w.label for w in [*at.number_input, *at.selectbox, *at.checkbox]}
    assert {"top-k", "similarity", "Symmetric treatment"} <= labels
    assert not labels & {"alpha (FNCC)", "threshold (FNCC gate)", "selection (FNSD)", "Support views", "tau+ (DCL)"}
    at.number_input(key="pre-demo_cpu-topk").set_value(3)
    at.number_input(key="pre-demo_cpu-similarity").set_value(0.8)
    at.button(key="pretrain-launch").click().run()
    assert errors(at) == ["Could not start the run: not started in this test"], errors(at)
    cfg, name = seen[-1]
    assert (cfg.loss.name, cfg.loss.detector, cfg.loss.treatment) == ("false", "nearest", "eliminate")
    assert cfg.loss.topk == 3 and cfg.loss.similarity == pytest.approx(0.8)
    assert cfg.loss.alpha == 1.0 and cfg.loss.threshold == 0.9  # not drawn: the preset's values
    # the untouched name follows the loss (it stayed "demo-simclr-false": a baseline launched as "false")
    assert at.text_input(key="pre-demo_cpu-name").value == "demo-simclr-nearest-eliminate"
    assert name == cfg.name == "demo-simclr-nearest-eliminate"
    assert "simclr + nearest + eliminate" in shown(texts(at))
    at.radio(key="pre-demo_cpu-loss").set_value("info_nce").run()
    assert at.text_input(key="pre-demo_cpu-name").value == "demo-simclr-info_nce"
    at.radio(key="pre-demo_cpu-loss").set_value("false").run()  # the preset's loss again: the preset's name
    at.selectbox(key="pre-demo_cpu-detector").set_value("fnsd").run()
    at.selectbox(key="pre-demo_cpu-treatment").set_value("fncc").run()
    assert at.text_input(key="pre-demo_cpu-name").value == "demo-simclr-false"
    at.text_input(key="pre-demo_cpu-name").set_value("mine").run()  # typed: it stays whatever the loss
    at.selectbox(key="pre-demo_cpu-detector").set_value("nearest").run()
    at.selectbox(key="pre-demo_cpu-treatment").set_value("eliminate").run()
    assert at.text_input(key="pre-demo_cpu-name").value == "mine"
    at.text_input(key="pre-demo_cpu-name").set_value("")
    at.button(key="pretrain-launch").click().run()
    assert seen[-1][1] == "demo-simclr-nearest-eliminate"  # a run without a typed name says its loss
    # DCL: no detector or treatment, its class prior instead; a prior out of (0, 1) is refused beneath its field
    at.radio(key="pre-demo_cpu-loss").set_value("dcl").run()
    assert not [s for s in at.selectbox if s.label in ("Detector", "Treatment")]
    at.number_input(key="pre-demo_cpu-tau_plus").set_value(0.0)
    at.button(key="pretrain-launch").click().run()
    assert "**tau+ (DCL)**" in errors(at)[0], errors(at)
    assert any(m.value.startswith(":red[⚠") for m in at.markdown)
    at.number_input(key="pre-demo_cpu-tau_plus").set_value(0.2)
    at.button(key="pretrain-launch").click().run()
    cfg, _ = seen[-1]
    assert (cfg.loss.name, cfg.loss.detector, cfg.loss.treatment, cfg.loss.tau_plus) == ("dcl", "fnsd", "fncc", 0.2)
    assert "simclr + DCL (tau+ 0.2)" in shown(texts(at))


def test_the_oracle_is_marked_as_using_labels_and_refused_on_a_folder_without_them(empty_store: Path, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    import numpy as np
    from PIL import Image

    seen = _capture_launches(monkeypatch)
    at = open_page("pretrain")
    detector = at.selectbox(key="pre-demo_cpu-detector")
    assert "oracle (uses labels)" in detector.options
    assert "uses labels" in detector.help and "not a method" in detector.help
    detector.set_value("oracle").run()
    assert any("ceiling" in i.value and "oracle (uses labels)" in i.value for i in at.info), texts(at)
    assert "simclr + oracle (uses labels) + fncc" in shown(texts(at))
    at.button(key="pretrain-launch").click().run()  # the synthetic set has labels: the oracle may run on it
    assert seen and seen[-1][0].loss.detector == "oracle"
    folder = tmp_path / "data" / "my_tiles"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 80 * i, np.uint8)).save(folder / f"t{i}.png")
    at.selectbox(key="pre-demo_cpu-data").set_value("folder")
    at.text_input(key="pre-demo_cpu-folder").set_value("my_tiles")
    at.button(key="pretrain-launch").click().run()
    assert len(seen) == 1, "a folder without labels: refused before launch"
    summary = errors(at)[0]
    assert "**Detector**" in summary and "reads the labels" in summary, summary  # beneath the detector, in words
    assert any(m.value.startswith(":red[⚠") and "reads the labels" in shown(m.value) for m in at.markdown)
    assert any("Launch will refuse it" in w.value for w in at.warning)  # and said before the next Launch


def test_a_run_of_another_treatment_is_named_and_charted_in_its_words(populated_store: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """The live view names a pretraining run's method as the run tables do (``strategy_label``); a run whose
    treatment is not FNCC charts its pairs as treated, not calibrated."""
    import json

    import yaml

    from tests.store import copy_store

    runs_root = copy_store(populated_store.parent, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs_root))
    run = next(r for r in list_runs(runs_root) if r.id.endswith("tiny-false"))
    cfg = yaml.safe_load((run.path / "config.yaml").read_text())
    cfg["loss"].update(detector="nearest", treatment="eliminate")
    (run.path / "config.yaml").write_text(yaml.safe_dump(cfg))
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    assert not at.exception
    header = next(shown(m.value) for m in at.markdown if m.value.startswith(f"**{run.id}**"))
    assert header.endswith("· simclr + nearest + eliminate"), header
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in specs]
    assert "Flagged pairs per step (each one treated: eliminate)" in titles, titles
    pairs_chart = specs[titles.index("Flagged pairs per step (each one treated: eliminate)")]
    assert [t["name"] for t in pairs_chart["data"]] == ["flagged"]  # one line: a "treated" twin would hide it
    assert "FNCC's treatment" not in texts(at) and "The treatment (eliminate) applied in" in texts(at)


def test_a_broken_sources_file_is_said_and_the_page_still_works(empty_store: Path) -> None:
    """Issue 29: {"sources": null} broke the Pretrain page ("'NoneType' object is not iterable")."""
    settings = empty_store.parent / "data" / "sources.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"sources": null}')
    at = open_page("pretrain")
    assert not at.exception and not errors(at)
    assert any("set aside" in w.value for w in at.warning)
    assert [b.label for b in at.button] == ["↺ Preset values", "➕ Add", "🚀 Launch"]


def test_a_launch_from_the_form_can_ask_for_trackers(empty_store: Path, monkeypatch) -> None:
    """Issue 30: the trackers are a setting of the form, not only of a preset."""
    seen = _capture_launches(monkeypatch)
    at = open_page("pretrain")
    at.multiselect(key="pre-demo_cpu-trackers").set_value(["tensorboard", "mlflow"])
    at.button(key="pretrain-launch").click().run()
    cfg, _ = seen[-1]
    assert cfg.train.trackers == ["tensorboard", "mlflow"]


def test_a_knn_value_recorded_once_beside_a_loss_curve_is_a_value_not_a_lone_dot(empty_store: Path) -> None:
    """A review: kNN every 50 steps of a 60-step run drew a chart of one dot on a 49-51 axis."""
    import json

    from core.store.runs import create_run

    run = create_run("knn-once", "method: simclr\nloss:\n  name: info_nce\ndata:\n  name: synthetic\n", empty_store,
                     kind="pretrain", state="completed")
    records = [{"step": s, "loss": 5.0 - s / 30, "lr": 0.01} for s in range(1, 61)]
    records.insert(50, {"step": 50, "knn_acc": 0.432, "knn_baseline": 0.301})
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run.write_status(step=60, total_steps=60)
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Loss" in titles and not any(t.startswith("kNN") for t in titles), titles
    said = next(c.value for c in at.caption if c.value.startswith("Recorded once in this run"))
    assert said.endswith(": kNN accuracy 43.2%, majority class 30.1% (step 50)."), said
    assert any("What the encoder has learned is its rise from step 0" in c.value for c in at.caption)  # still said


def test_the_length_field_not_read_is_greyed_and_a_run_inside_its_warm_up_is_said(empty_store: Path) -> None:
    """Live fields (no st.form) can follow each other: the field Length in does not read is disabled (its help said a
    form could not), and a warm-up as long as the run is said beside it (the demo preset's 20 of a 20-step run)."""
    at = open_page("pretrain")
    assert at.radio(key="pre-demo_cpu-by").value == "steps"
    steps, epochs = at.number_input(key="pre-demo_cpu-steps"), at.number_input(key="pre-demo_cpu-epochs")
    assert not steps.disabled and epochs.disabled
    said = "the run is all warm-up"
    assert not any(said in c.value for c in at.caption)
    at.number_input(key="pre-demo_cpu-warmup").set_value(20)
    _set(at, steps=20)
    at.run()
    assert any(said in c.value for c in at.caption), texts(at)
    at.radio(key="pre-demo_cpu-by").set_value("epochs").run()
    steps, epochs = at.number_input(key="pre-demo_cpu-steps"), at.number_input(key="pre-demo_cpu-epochs")
    assert steps.disabled and not epochs.disabled
    assert not any(said in c.value for c in at.caption)


def test_picking_a_preset_sets_the_form_to_its_values(empty_store: Path) -> None:
    """A review edited demo_cpu's form, picked demo_cpu_rgbn, then demo_cpu again: its edits came back, not the
    preset's values, and re-picking the chosen preset did nothing. Now a pick (or the button) sets its values."""
    at = open_page("pretrain")
    at.number_input(key="pre-demo_cpu-batch").set_value(3).run()
    at.number_input(key="pre-demo_cpu-steps").set_value(7).run()
    at.selectbox(key="pre-preset").set_value("demo_cpu_rgbn").run()
    at.selectbox(key="pre-preset").set_value("demo_cpu").run()
    assert not at.exception
    assert at.number_input(key="pre-demo_cpu-batch").value == 64
    assert at.number_input(key="pre-demo_cpu-steps").value == 300
    at.number_input(key="pre-demo_cpu-batch").set_value(5).run()
    at.button(key="pretrain-preset-reset").click().run()  # new widgets (new keys): the browser's values go too
    assert not at.exception and at.number_input(key="pre-demo_cpu-1-batch").value == 64
    assert "pre-demo_cpu-batch" not in at.session_state
    at.number_input(key="pre-demo_cpu-1-steps").set_value(9).run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/pretrain.py").run()  # the reset's form, its edit kept across pages
    assert at.number_input(key="pre-demo_cpu-1-steps").value == 9
    assert not any("Session State" in w.value for w in at.warning)


def test_the_warnings_a_run_gave_on_its_terminal_are_shown_with_it(empty_store: Path) -> None:
    """A review's Pretrain-page run on Dubai split by image warned that its test images shared tiles with training
    ones on the terminal (console.txt) only."""
    from core.store.runs import create_run

    run = create_run("warned", "method: simclr\nloss:\n  name: false\ndata:\n  name: synthetic\n", empty_store,
                     kind="pretrain", state="completed")
    (run.path / "console.txt").write_text("loading\nwarning: dubai: the test images share 4 folder(s) with training "
                                          "images\nwarning: warm-up of 20 steps in a run of 20\n")
    run.log("warning: warm-up of 20 steps in a run of 20")  # said in both: shown once
    at = open_page("pretrain")
    at.selectbox(key="pretrain-run").set_value(run.id).run()
    box = next(e for e in at.expander if e.label.startswith("⚠️ The run gave"))
    assert box.label == "⚠️ The run gave 2 warning(s)"
    said = shown(" ".join(m.value for m in box.markdown))
    assert "the test images share 4 folder(s)" in said and said.count("warm-up of 20 steps") == 1
