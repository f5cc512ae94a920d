"""The Fine-tune page: launch form, scores of a finished run (IoU bars, confusion heatmap), comparisons."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.store.runs import list_runs
from tests.pages import errors, open_page, shown, texts
from tests.store import copy_store, deepglobe_encoder_store

ROOT = Path(__file__).resolve().parent.parent


def test_renders_with_an_empty_store(empty_store: Path) -> None:
    at = open_page("finetune")
    assert not at.exception and not errors(at)
    assert "No fine-tuning or probe runs yet" in texts(at) and "No comparison yet" in texts(at)
    assert at.selectbox(key="ft-init").value == "random"  # nothing pretrained yet


@pytest.mark.slow
def test_shows_the_scores_of_a_finished_run(populated_store: Path) -> None:
    at = open_page("finetune")
    assert not at.exception and not errors(at), errors(at)
    assert at.selectbox(key="ft-init").value.endswith("tiny-infonce")  # the newest pretraining run, not random
    assert at.selectbox(key="ft-run").value.endswith("tiny-ft")
    labels = [m.label for m in at.metric]
    assert any(label.startswith("mIoU (test)") for label in labels), labels
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # curves, IoU bars, confusion heatmap
    val = [json.loads(c.proto.spec) for c in charts if "Validation mIoU" in c.proto.spec]
    # in percent, as the scores beside it (with the decimals the values' spread needs)
    assert len(val) == 1 and val[0]["layout"]["yaxis"]["tickformat"].endswith("%")
    assert any(c.value.startswith("The run's model: the evaluation with the best validation mIoU")
               for c in at.caption), [c.value for c in at.caption]  # how the scored model was chosen



def test_a_score_on_test_images_whose_folders_trained_says_it_is_on_no_unseen_scenes(store_base: Path,
                                                                                     tmp_path: Path,
                                                                                     monkeypatch) -> None:
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-ft"))
    record = json.loads((run.path / "test_metrics.json").read_text())
    note = "dubai: the test images share 4 folder(s) with training images (tile_2, ...): parts of one scene ..."
    (run.path / "test_metrics.json").write_text(json.dumps({**record, "not_unseen": note}))
    at = open_page("finetune")
    assert at.selectbox(key="ft-run").value.endswith("tiny-ft")
    assert [shown(w.value) for w in at.warning if "share 4 folder" in w.value] == ["D" + note[1:]]

def test_a_bad_value_is_refused(empty_store: Path) -> None:
    at = open_page("finetune")
    # no field has a range the browser enforces: out of range, it would hold the form back with a mark on the field
    # only, and Launch would seem dead; the config refuses the value in words instead
    # (the GPUs field is no config setting: it keeps its range)
    assert [n.label for n in at.number_input if n.proto.has_min or n.proto.has_max] == ["GPUs (one process each)"]
    at.selectbox(key="ft-data").set_value("potsdam")
    at.number_input(key="ft-lr").set_value(-0.5)
    at.number_input(key="ft-batch").set_value(0)
    at.button(key="ft-launch").click().run()
    assert len(errors(at)) == 1 and "3 settings to change" in errors(at)[0], errors(at)
    summary = errors(at)[0]  # all at once, in the form's words
    assert "**lr**" in summary and "“Data set folder (not synthetic)”" in summary and "data.root" not in summary
    assert "**Batch**: Input should be greater than or equal to 2" in summary, summary
    # beside lr, Batch and the data folder the data check names (a review: a data problem had no red line)
    assert len([m for m in at.markdown if m.value.startswith(":red[⚠")]) == 3
    assert list_runs(empty_store) == []


@pytest.mark.slow
def test_launch_creates_a_finetuning_run(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))  # data stays the shared cache
    at = open_page("finetune")
    for key, value in {"ft-steps": 2, "ft-batch": 4, "ft-crop": 48, "ft-eval": 2, "ft-tiles": 24,
                       "ft-tile-size": 48, "ft-fraction": 1.0}.items():
        at.number_input(key=key).set_value(value)
    at.text_input(key="ft-name").set_value("page-ft")
    at.button(key="ft-launch").click().run()
    assert not at.exception and not errors(at), errors(at)
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == 1 and runs[0].kind() == "finetune"
    run = runs[0]
    deadline = time.time() + 240
    while run.is_live() and time.time() < deadline:
        time.sleep(0.5)
    assert run.state() == "completed", (run.path / "console.txt").read_text()[-2000:]
    assert run.read_json("test_metrics.json") is not None


def test_with_two_gpus_the_launch_uses_two_processes_and_the_colour_jitter(empty_store: Path, monkeypatch) -> None:
    """On a machine with 2 GPUs the form offers "GPUs" (both by default) and the launch is a torchrun of 2
    processes (tests/test_launch.py runs such a launch on 2 CPU ranks); the colour jitter and the weight averaging
    reach the config."""
    import core.device
    from core.store import launch

    seen: dict = {}

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen.update(kind=kind, cfg=cfg, processes=processes)
        raise OSError("not started in this test")

    monkeypatch.setattr(core.device, "gpu_count", lambda: 2)
    monkeypatch.setattr(launch, "launch", fake_launch)
    at = open_page("finetune")
    assert at.number_input(key="ft-gpus").value == 2 and not at.number_input(key="ft-gpus").disabled
    at.number_input(key="ft-jitter").set_value(3.0)
    at.button(key="ft-launch").click().run()
    assert seen["kind"] == "finetune" and seen["processes"] == 2 and seen["cfg"].data.colour_jitter == 3.0
    assert seen["cfg"].train.average_from is None  # 0 in the form: the best validation chooses
    at.selectbox(key="ft-device").set_value("cpu")
    at.number_input(key="ft-average").set_value(0.5)
    at.number_input(key="ft-scale").set_value(0.5)
    at.button(key="ft-launch").click().run()
    assert seen["processes"] == 1  # the CPU is one process
    assert seen["cfg"].train.average_from == 0.5 and seen["cfg"].model.input_scale == 0.5


def test_with_one_gpu_or_none_the_gpu_count_is_fixed_at_one(empty_store: Path) -> None:
    at = open_page("finetune")
    assert at.number_input(key="ft-gpus").value == 1 and at.number_input(key="ft-gpus").disabled


def test_an_rgbn_encoder_fine_tunes_on_its_bands_unless_others_are_typed(empty_store: Path, monkeypatch) -> None:
    from core.ssl.pretrain import main as pretrain_main
    from core.store import launch

    root = Path(__file__).resolve().parent.parent
    assert pretrain_main(["--config", str(root / "configs/demo_cpu_rgbn.yaml"), "--no-progress", "name=rgbn",
                          "model.proj_hidden=32", "model.proj_dim=16", "data.num_tiles=24", "data.tile_size=64",
                          "data.image_size=32", "train.batch_size=8", "train.max_steps=1", "train.optimizer=adamw",
                          "train.knn_every=0"]) == 0
    seen: list = []
    monkeypatch.setattr(launch, "launch", lambda kind, cfg, *a, **k: seen.append(cfg) or
                        (_ for _ in ()).throw(OSError("not started in this test")))
    at = open_page("finetune")
    assert at.selectbox(key="ft-init").value.endswith("rgbn")  # the newest pretraining run
    at.button(key="ft-launch").click().run()
    assert seen[-1].data.bands == ["R", "G", "B", "NIR"]  # the encoder's bands
    at.text_input(key="ft-bands").set_value("NIR, R, G")
    at.button(key="ft-launch").click().run()
    assert seen[-1].data.bands == ["NIR", "R", "G"]


# ---------------------------------------------------------------------------------------------- issue 26, point 4
PRESET_FIELDS = {  # preset -> widget values the form must show once it is picked
    "finetune_dglc_cpu": {"ft-data": "deepglobe", "ft-root": "../shared/data/deepglobe_landcover", "ft-table": "",
                          "ft-steps": 400, "ft-batch": 8, "ft-lr": 0.001, "ft-crop": 256, "ft-tile-size": 256,
                          "ft-val": 0.12, "ft-test": 0.34, "ft-class-weights": "balanced", "ft-protocol": "full",
                          "ft-name": "dglc-seg", "ft-fraction": 1.0},
    "finetune_dubai_cpu": {"ft-data": "folder", "ft-root": "../shared/data/dubai_aerial",
                           "ft-table": "configs/classes/dubai.yaml", "ft-test-scenes": "tile_3", "ft-steps": 300,
                           "ft-split-unit": "file",
                           "ft-batch": 8, "ft-val": 0.1, "ft-class-weights": "balanced", "ft-name": "dubai-seg"},
    "finetune_paper_frozen": {"ft-data": "potsdam", "ft-root": "data/potsdam", "ft-protocol": "frozen",
                              "ft-steps": 1300, "ft-batch": 16, "ft-lr": 0.01, "ft-tile-size": 512, "ft-eval": 260},
    "probe_dglc_cpu": {"ft-data": "deepglobe", "ft-root": "../shared/data/deepglobe_landcover", "ft-val": 0.12,
                       "ft-test": 0.34, "pb-epochs": 30, "pb-batch": 32, "pb-lr": 0.01, "pb-stride": 4,
                       "pb-scale": 0.5, "pb-name": "probe-dglc"},
}


def _capture_launches(monkeypatch, read_data: bool = False) -> list:
    """The configs the form would launch; ``read_data``: also run its data check (else skipped: a preset's data is
    ../shared/data, which tests never read)."""
    from core.store import launch
    from workbench import seg_form

    seen: list = []
    if not read_data:
        monkeypatch.setattr(seg_form, "data_problem", lambda cfg, probe=False: None)

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen.append((kind, cfg))
        raise OSError("not started in this test")

    monkeypatch.setattr(launch, "launch", fake_launch)
    return seen


@pytest.mark.parametrize("preset", list(PRESET_FIELDS))
def test_a_preset_fills_every_field_and_launches_exactly_itself(empty_store: Path, monkeypatch, preset: str) -> None:
    """Picking a preset sets the form's fields to its values (they used to stay on the synthetic set and 200 steps
    while the hidden settings came from the preset), and Launch runs the preset as written."""
    from core.config import FinetuneConfig, ProbeConfig, load_config

    seen = _capture_launches(monkeypatch)
    probe = preset.startswith("probe")
    at = open_page("finetune")
    if probe:
        at.radio(key="ft-kind").set_value("probe").run()
    at.selectbox(key="pb-preset" if probe else "ft-preset").set_value(preset).run()
    assert not at.exception and not errors(at), errors(at)
    for key, value in PRESET_FIELDS[preset].items():
        assert at.session_state[key] == value, key
    assert f"Data fields from preset {preset}" in shown(texts(at))
    at.button(key="pb-launch" if probe else "ft-launch").click().run()
    assert errors(at) == ["Not launched: not started in this test"]  # the preset's own folders pass the path guard
    kind, cfg = seen[-1]
    assert kind == ("probe" if probe else "finetune")
    assert cfg == load_config(ROOT / f"configs/{preset}.yaml", model=ProbeConfig if probe else FinetuneConfig)


def test_the_form_keeps_its_values_across_kinds_and_launches_what_it_shows(empty_store: Path, monkeypatch) -> None:
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    at.selectbox(key="ft-preset").set_value("finetune_dubai_cpu").run()
    at.radio(key="ft-kind").set_value("compare").run()
    at.radio(key="ft-kind").set_value("probe").run()  # the data fields stay; the probe's own come from its preset
    assert at.session_state["ft-data"] == "folder" and at.session_state["pb-epochs"] == 20
    at.number_input(key="pb-epochs").set_value(3)
    at.text_input(key="ft-test-scenes").set_value("tile_3, tile_5")
    at.button(key="pb-launch").click().run()
    kind, cfg = seen[-1]
    assert kind == "probe" and cfg.train.epochs == 3 and cfg.data.test_scenes == ["tile_3", "tile_5"]
    assert cfg.data.class_table == "configs/classes/dubai.yaml" and cfg.data.name == "folder"
    at.radio(key="ft-kind").set_value("finetune").run()
    assert at.session_state["ft-steps"] == 300 and at.session_state["ft-preset"] == "finetune_dubai_cpu"


def test_the_split_unit_is_a_field_of_image_folders_only(empty_store: Path, monkeypatch) -> None:
    """"Split by" shows the unit the Dubai preset splits by; another choice is launched as chosen, and a published
    set launched from that preset is split by its own scenes (the preset's unit would be refused there)."""
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    at.selectbox(key="ft-preset").set_value("finetune_dubai_cpu").run()
    assert at.selectbox(key="ft-split-unit").value == "file" and not at.selectbox(key="ft-split-unit").disabled
    at.selectbox(key="ft-split-unit").set_value("folder")
    at.button(key="ft-launch").click().run()
    assert seen[-1][1].data.split_unit == "folder"
    at.selectbox(key="ft-split-unit").set_value("class table's")
    at.button(key="ft-launch").click().run()
    assert seen[-1][1].data.split_unit == "folder"  # the Dubai table keeps each tile whole
    at.selectbox(key="ft-split-unit").set_value("file").run()
    at.text_input(key="ft-table").set_value(" configs/classes/dubai.yaml").run()  # another table: its own unit
    assert at.selectbox(key="ft-split-unit").value == "class table's"
    at.text_input(key="ft-table").set_value("").run()
    assert at.selectbox(key="ft-split-unit").disabled  # a folder without a class table is read unlabeled
    at.text_input(key="ft-table").set_value("configs/classes/dubai.yaml").run()
    at.selectbox(key="ft-data").set_value("deepglobe").run()
    assert at.selectbox(key="ft-split-unit").disabled
    at.button(key="ft-launch").click().run()
    assert errors(at) == ["Not launched: not started in this test"], errors(at)
    assert seen[-1][1].data.name == "deepglobe" and seen[-1][1].data.split_unit is None



def test_values_typed_and_not_launched_survive_a_page_trip_until_a_newer_encoder_appears(
        store_base: Path, tmp_path: Path, monkeypatch) -> None:
    """A review: Steps 77 typed on Fine-tune came back 200 after a look at Runs (the form refilled on every arrival,
    for the newest encoder's sake). Now the values are kept; a pretraining run that finished while the user was on
    another page still starts the form afresh from it, on arrival, never while the user types."""
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    newest = next(r for r in list_runs(runs) if r.id.endswith("tiny-infonce"))
    aside = tmp_path / "aside"
    newest.path.rename(aside)  # not there yet
    at = open_page("finetune")
    assert at.selectbox(key="ft-init").value.endswith("tiny-false")
    at.number_input(key="ft-steps").set_value(77)
    at.checkbox(key="ft-baseline").uncheck().run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/finetune.py").run()
    assert at.number_input(key="ft-steps").value == 77 and at.selectbox(key="ft-init").value.endswith("tiny-false")
    assert not at.checkbox(key="ft-baseline").value
    aside.rename(newest.path)  # a pretraining run finishes while the form is open: it is listed, nothing moves
    at.number_input(key="ft-steps").set_value(66).run()
    assert at.number_input(key="ft-steps").value == 66 and at.selectbox(key="ft-init").value.endswith("tiny-false")
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/finetune.py").run()  # ... nor on the next visit: the user had it in the Encoder box
    assert at.number_input(key="ft-steps").value == 66 and at.selectbox(key="ft-init").value.endswith("tiny-false")
    newest.path.rename(aside)
    at.switch_page("../pages/runs.py").run()  # the newest run deleted meanwhile: an older one is no news either
    at.switch_page("../pages/finetune.py").run()
    assert at.number_input(key="ft-steps").value == 66
    at.switch_page("../pages/runs.py").run()
    shutil.copytree(aside, runs / "29991231-000000-later")  # a pretraining run finishes while the user is elsewhere
    at.switch_page("../pages/finetune.py").run()
    assert at.selectbox(key="ft-init").value.endswith("-later") and at.number_input(key="ft-steps").value == 200


def test_the_comparison_form_and_the_kind_picked_survive_a_page_trip(empty_store: Path) -> None:
    at = open_page("finetune")
    at.radio(key="ft-kind").set_value("compare").run()
    at.number_input(key="cmp-pre-steps").set_value(55).run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/finetune.py").run()
    assert not at.exception
    assert at.radio(key="ft-kind").value == "compare" and at.number_input(key="cmp-pre-steps").value == 55


def test_the_open_tab_survives_a_page_trip(empty_store: Path) -> None:
    at = open_page("finetune")
    assert at.session_state["ft-tab"] == "Launch"
    at.session_state["ft-tab"] = "Comparisons"  # as a click on the tab sets it
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/finetune.py").run()
    assert not at.exception and at.session_state["ft-tab"] == "Comparisons"

def _deepglobe_encoder(store_base: Path, tmp_path: Path, monkeypatch, root: str | None = None) -> tuple[Path, str]:
    """A private copy of the store whose newest encoder's card says it was pretrained on DeepGlobe scenes (in
    ``root``, by default a folder of the test's own: the folder is never read here)."""
    data = {"val_fraction": 0.12, "test_fraction": 0.34, "pretrain_splits": ["train", "val"], "seed": 3}
    run = deepglobe_encoder_store(store_base, tmp_path, monkeypatch, {**data, **({"root": root} if root else {})})
    return run.path.parent, run.id


def test_the_encoders_own_labeled_set_is_the_default(store_base: Path, tmp_path: Path, monkeypatch) -> None:
    runs, dg_run = _deepglobe_encoder(store_base, tmp_path, monkeypatch)
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    assert at.selectbox(key="ft-init").value.endswith("tiny-infonce")
    want = {"ft-data": "deepglobe", "ft-root": str(tmp_path / "dg"), "ft-tile-size": 96, "ft-val": 0.12,
            "ft-test": 0.34, "ft-data-seed": 3, "ft-crop": 96}  # the preset's 128 px crop shrinks to the tiles
    assert {k: at.session_state[k] for k in want} == want
    assert f"pretraining data of run: {dg_run}" in shown(texts(at)) and "never reached the encoder" in shown(texts(at))
    at.number_input(key="ft-test").set_value(0.2).run()  # another split: no longer "as in its pretraining"
    said = shown(" ".join(w.value for w in at.warning))
    assert "no longer split as the encoder's pretraining did (Test share: 0.34 → 0.2)" in said
    assert "never reached the encoder" not in shown(texts(at))
    at.number_input(key="ft-test").set_value(0.34).run()
    assert not any("no longer split" in w.value for w in at.warning) and "never reached the encoder" in shown(texts(at))
    false_run = next(str(r.path) for r in list_runs(runs) if r.id.endswith("tiny-false"))
    at.selectbox(key="ft-init").set_value(false_run).run()  # pretrained on the synthetic set: that set
    assert (at.session_state["ft-data"], at.session_state["ft-tiles"], at.session_state["ft-tile-size"]) == \
        ("synthetic", 48, 64)
    # a preset of another data set brings its data; one of the encoder's own set brings its recipe only: its own
    # 2,000 synthetic tiles (the same seeds) would test on scenes the encoder was pretrained on (the review's case)
    at.selectbox(key="ft-preset").set_value("finetune_dglc_cpu").run()
    assert at.session_state["ft-data"] == "deepglobe"
    at.selectbox(key="ft-preset").set_value("finetune_demo_cpu").run()
    assert (at.session_state["ft-data"], at.session_state["ft-tiles"], at.session_state["ft-tile-size"]) == \
        ("synthetic", 48, 64) and at.session_state["ft-steps"] == 200
    assert "kept under preset finetune_demo_cpu" in shown(texts(at))
    at.selectbox(key="ft-init").set_value("random").run()  # a random encoder saw nothing: the fields stay
    assert at.session_state["ft-data"] == "synthetic"
    at.selectbox(key="ft-init").set_value(str(runs / dg_run)).run()
    at.number_input(key="ft-test").set_value(0.2).run()
    assert any("Pick the encoder again" in w.value for w in at.warning)
    at.selectbox(key="ft-init").set_value("random").run()  # no encoder to pick again: the warning goes (a review)
    assert not any("no longer split" in w.value for w in at.warning)
    at.selectbox(key="ft-init").set_value(str(runs / dg_run)).run()
    at.radio(key="ft-kind").set_value("probe").run()  # the probe starts from the same data
    assert at.session_state["ft-data"] == "deepglobe"
    at.button(key="pb-launch").click().run()
    kind, cfg = seen[-1]
    assert kind == "probe" and cfg.data.name == "deepglobe" and cfg.data.root == str(tmp_path / "dg")
    assert cfg.model.init.endswith("tiny-infonce") and cfg.model.encoder == "resnet18"


def test_the_recipe_made_for_the_encoders_set_is_the_default_preset(store_base: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    runs, dg_run = _deepglobe_encoder(store_base, tmp_path, monkeypatch, root="../shared/data/deepglobe_landcover")
    at = open_page("finetune")
    assert (at.session_state["ft-preset"], at.session_state["pb-preset"]) == ("finetune_dglc_cpu", "probe_dglc_cpu")
    assert (at.session_state["ft-steps"], at.session_state["ft-class-weights"]) == (400, "balanced")  # its recipe
    assert (at.session_state["ft-root"], at.session_state["ft-tile-size"]) == ("../shared/data/deepglobe_landcover",
                                                                               96)  # the encoder's own tiles
    assert "is the recipe made for this data set" not in shown(texts(at))
    at.selectbox(key="ft-preset").set_value("finetune_demo_cpu").run()  # the demo's synthetic set and recipe
    at.selectbox(key="ft-init").set_value("random").run()
    at.selectbox(key="ft-init").set_value(str(runs / dg_run)).run()  # DeepGlobe again, under the demo's recipe
    assert at.session_state["ft-data"] == "deepglobe" and at.session_state["ft-steps"] == 200
    assert "Preset finetune_dglc_cpu is the recipe made for this data set" in shown(texts(at))


def test_added_data_sources_are_offered_and_fill_the_data_fields(empty_store: Path, tmp_path: Path) -> None:
    from core.store.sources import add_source
    from tests.test_baseline import deepglobe_folder

    labeled = deepglobe_folder(tmp_path / "elsewhere" / "dg")
    unlabeled = tmp_path / "elsewhere" / "photos"
    unlabeled.mkdir()
    (labeled / "0_sat.jpg").rename(unlabeled / "a.jpg")
    add_source(str(labeled))
    add_source(str(unlabeled))
    at = open_page("finetune")
    offered = at.selectbox(key="ft-source-pick").options  # as labels: path · format · images · labels
    assert sorted(o.split(" · ")[0] for o in offered) == sorted([str(labeled.resolve()), str(unlabeled.resolve())])
    at.selectbox(key="ft-source-pick").set_value(str(labeled.resolve())).run()
    at.button(key="ft-source-use").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert (at.session_state["ft-data"], at.session_state["ft-root"]) == ("deepglobe", str(labeled.resolve()))
    assert f"Data fields from data source {labeled.resolve()}" in shown(texts(at))
    fraction = at.session_state["ft-fraction"]  # the demo preset's share stays, and is said beside the data
    assert fraction < 1 and f"Label fraction {fraction:.3g}: only that share" in shown(texts(at))
    at.selectbox(key="ft-source-pick").set_value(str(unlabeled.resolve())).run()
    at.button(key="ft-source-use").click().run()
    assert any("has no masks" in e for e in errors(at)) and at.session_state["ft-data"] == "deepglobe"


def test_a_switch_to_the_probe_says_its_data_fields_came_from_a_fine_tuning_preset(empty_store: Path) -> None:
    at = open_page("finetune")
    came = next(c.value for c in at.caption if "Data fields from preset" in c.value)
    assert "shared by both kinds" not in came  # the fine-tuning form's own preset
    at.radio(key="ft-kind").set_value("probe").run()
    came = next(c.value for c in at.caption if "Data fields from preset" in c.value)
    assert "shared by both kinds" in came and not at.exception


def test_a_preset_brings_the_other_kinds_preset_made_for_its_data_set(empty_store: Path) -> None:
    at = open_page("finetune")
    assert at.session_state["pb-preset"] == "probe_demo_cpu"
    at.selectbox(key="ft-preset").set_value("finetune_dglc_cpu").run()
    at.radio(key="ft-kind").set_value("probe").run()
    assert not at.exception and at.selectbox(key="pb-preset").value == "probe_dglc_cpu"
    assert at.session_state["ft-data"] == "deepglobe" and "is the recipe made for" not in shown(texts(at))
    at.selectbox(key="pb-preset").set_value("probe_demo_cpu").run()  # and back: the synthetic set's own
    at.radio(key="ft-kind").set_value("finetune").run()
    assert at.selectbox(key="ft-preset").value == "finetune_demo_cpu" and at.session_state["ft-data"] == "synthetic"


def test_a_probe_is_launched_from_the_form(populated_store: Path, monkeypatch) -> None:
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    at.radio(key="ft-kind").set_value("probe").run()
    assert at.button(key="pb-launch").label == "🚀 Launch the linear probe"
    at.number_input(key="pb-epochs").set_value(2)
    at.button(key="pb-launch").click().run()
    kind, cfg = seen[-1]
    assert kind == "probe" and cfg.train.epochs == 2 and cfg.model.init.endswith("tiny-infonce")
    assert (cfg.data.name, cfg.data.num_tiles, cfg.data.tile_size) == ("synthetic", 48, 64)  # the encoder's set


@pytest.mark.slow
def test_a_probe_runs_in_the_background_and_its_score_shows(populated_store: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))  # data stays the shared cache
    at = open_page("finetune")
    at.radio(key="ft-kind").set_value("probe").run()
    for key, value in {"ft-tiles": 48, "ft-tile-size": 64, "ft-val": 0.2, "ft-test": 0.2, "pb-epochs": 2,
                       "pb-batch": 8}.items():
        at.number_input(key=key).set_value(value)
    at.text_input(key="pb-name").set_value("page-probe")
    at.button(key="pb-launch").click().run()
    assert not at.exception and not errors(at), errors(at)
    (run,) = list_runs(tmp_path / "runs")
    assert run.kind() == "probe"
    deadline = time.time() + 240
    while run.is_live() and time.time() < deadline:
        time.sleep(0.5)
    assert run.state() == "completed", (run.path / "console.txt").read_text()[-2000:]
    at = open_page("finetune")
    assert at.selectbox(key="ft-run").value == run.id
    assert any(m.label == "mIoU (test)" for m in at.metric)
    assert run.config()["model"]["init"] == "random"  # nothing pretrained in this runs root: it is its own baseline
    assert any(m.label == "Random encoder" and m.value == "this run" for m in at.metric)


def _baseline_twin(store_base: Path, tmp_path: Path, monkeypatch, trained: bool):
    """A private copy of the store plus the random-encoder twin of its fine-tuning run (its config with init random):
    trained for real, or a finished folder whose test scores are those of the run on the same scenes, 10 points
    lower."""
    from core.seg.finetune_cli import main as finetune_main
    from core.store.runs import atomic_write_json, create_run

    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    ft = next(r for r in list_runs(runs) if r.id.endswith("tiny-ft"))
    if trained:
        assert finetune_main(["--config", str(ft.path / "config.yaml"), "--no-progress", "model.init=random",
                              "name=random-twin", "train.device=cpu"]) == 0
        return ft, next(r for r in list_runs(runs) if r.id.endswith("random-twin"))
    twin = create_run("random-twin", ft.config_text().replace(f"init: {ft.config()['model']['init']}", "init: random"),
                      runs, kind="finetune", state="completed")
    twin.write_status(pid=2**22 + 9)
    mine = ft.read_json("test_metrics.json")
    atomic_write_json(twin.path / "test_metrics.json", {**mine, "miou": mine["miou"] - 0.1})
    return ft, twin


@pytest.mark.parametrize("trained", [pytest.param(True, marks=pytest.mark.slow), False])
def test_a_score_stands_beside_its_random_encoder_baseline(store_base: Path, tmp_path: Path, monkeypatch,
                                                           trained: bool) -> None:
    ft, twin = _baseline_twin(store_base, tmp_path, monkeypatch, trained)
    assert twin.config()["model"]["init"] == "random"
    at = open_page("finetune")
    at.selectbox(key="ft-run").set_value(ft.id).run()
    assert not at.exception and not errors(at), errors(at)
    mine, base = ft.read_json("test_metrics.json"), twin.read_json("test_metrics.json")
    assert mine["scenes"] == base["scenes"]  # the same test scenes
    (metric,) = [m for m in at.metric if m.label == "Random encoder, same recipe (test)"]
    assert metric.value == f"{100 * base['miou']:.1f} %"
    assert metric.proto.delta == f"{100 * (mine['miou'] - base['miou']):+.1f} points for this run (one seed each: no " \
                                 "verdict)"
    assert metric.proto.color == 2 and metric.proto.direction == 2  # grey, no arrow: a green "+0.1" read as a gain
    page = shown(texts(at))
    assert twin.id in page and f"the same test scenes ({len(mine['scenes'])} scene" in page and "random encoder" in page
    at.selectbox(key="ft-run").set_value(twin.id).run()  # the twin itself is a random encoder: its own baseline
    assert any(m.label == "Random encoder" and m.value == "this run" for m in at.metric)


def test_the_baseline_button_launches_the_runs_recipe_from_a_random_encoder(populated_store: Path,
                                                                           monkeypatch) -> None:
    from core.config import FinetuneConfig, validate_config

    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    ft = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-ft"))
    assert at.selectbox(key="ft-run").value == ft.id
    assert "No baseline yet: no run of this recipe from a random encoder yet" in shown(texts(at))
    at.button(key=f"baseline-{ft.id}").click().run()
    kind, cfg = seen[-1]
    want = validate_config({**ft.config(), "name": f"baseline-{ft.config()['name']}",
                            "model": {**ft.config()["model"], "init": "random"}}, FinetuneConfig)
    assert kind == "finetune" and cfg == want
    assert any("Not launched: not started in this test" in e for e in errors(at))


def test_a_baseline_on_other_scenes_offers_a_new_one(store_base: Path, tmp_path: Path, monkeypatch) -> None:
    """A random-encoder twin tested on other scenes cannot stand beside the score: the page says why and offers a
    new baseline (it used to show "—" and no button, for ever)."""
    from core.store.runs import atomic_write_json

    ft, twin = _baseline_twin(store_base, tmp_path, monkeypatch, trained=False)
    atomic_write_json(twin.path / "test_metrics.json", {**twin.read_json("test_metrics.json"), "scenes": ["elsewhere"]})
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    at.selectbox(key="ft-run").set_value(ft.id).run()
    assert not any(m.label.startswith("Random encoder") for m in at.metric)
    assert f"No comparable baseline: run {twin.id} was tested on other scenes" in shown(texts(at))
    assert at.button(key=f"baseline-{ft.id}").label == "Compute a new random-encoder baseline"
    at.button(key=f"baseline-{ft.id}").click().run()
    kind, cfg = seen[-1]
    assert kind == "finetune" and cfg.model.init == "random" and cfg.name == f"baseline-{ft.config()['name']}"


def test_a_launch_brings_its_random_encoder_baseline_once_per_recipe(store_base: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """Issue 26: every score beside a random-encoder baseline computed once. Launch starts the baseline with the run
    by default; the same recipe launched again finds it and starts none."""
    import os

    from core.config import config_to_yaml
    from core.store import launch
    from core.store.runs import create_run

    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    started: list = []

    def fake_launch(kind, cfg, root=None, name=None, processes=1):  # the run folder, running as this process
        run = create_run(name or kind, config_to_yaml(cfg), root, state="running", kind=kind)
        run.write_status(pid=os.getpid())
        started.append(run)
        return run

    monkeypatch.setattr(launch, "launch", fake_launch)
    at = open_page("finetune")
    assert at.checkbox(key="ft-baseline").value is True
    at.button(key="ft-launch").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert len(started) == 2 and started[0].config()["model"]["init"].endswith("tiny-infonce")
    assert started[1].config()["model"]["init"] == "random" and started[1].id.endswith("baseline-" +
                                                                                        started[0].config()["name"])
    assert "Baseline: launched its random-encoder baseline" in shown(texts(at))
    at.button(key="ft-launch").click().run()  # the same recipe: its baseline is running
    assert len(started) == 3 and f"Baseline: its baseline exists: run {started[1].id} is running" in shown(texts(at))


def test_each_kind_keeps_its_presets_device(empty_store: Path, tmp_path: Path, monkeypatch) -> None:
    """Fine-tuning and the probe had one Device widget (``ft-device``): on a first visit the probe preset's device
    overwrote the fine-tuning one. Two presets with different devices keep theirs, in the form and the launch."""
    from workbench import seg_form

    presets = {}
    for mode, device in (("finetune", "cpu"), ("probe", "cuda")):
        name = seg_form.DEFAULT_PRESET[mode]
        path = tmp_path / f"{name}.yaml"
        text = (ROOT / "configs" / f"{name}.yaml").read_text()
        path.write_text(text.replace("train:\n", f"train:\n  device: {device}\n", 1))
        presets[mode] = {name: path}
    monkeypatch.setattr(seg_form, "config_presets", lambda mode: presets.get(mode, {}))
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    assert at.selectbox(key="ft-device").value == "cpu"
    at.button(key="ft-launch").click().run()
    at.radio(key="ft-kind").set_value("probe").run()
    assert at.selectbox(key="pb-device").value == "cuda"
    at.button(key="pb-launch").click().run()
    at.radio(key="ft-kind").set_value("finetune").run()
    assert at.selectbox(key="ft-device").value == "cpu"
    assert [(kind, cfg.train.device) for kind, cfg in seen] == [("finetune", "cpu"), ("probe", "cuda")]


def test_a_comparison_offers_every_detector_and_treatment_and_launches_them(empty_store: Path, monkeypatch) -> None:
    """Issue 27: the comparison form offers DCL and every detector x treatment (the oracle marked as reading labels);
    a preset that names them (compare_fn_cpu) opens with them, and a launch carries what was picked."""
    seen = _capture_launches(monkeypatch)
    at = open_page("finetune")
    at.radio(key="ft-kind").set_value("compare").run()
    at.selectbox(key="cmp-preset").set_value("compare_fn_cpu").run()
    assert not at.exception and not errors(at), errors(at)
    picker = at.multiselect(key="cmp-methods")
    assert picker.value == ["simclr", "simclr_false_pa", "simclr+nearest+eliminate", "simclr+dcl",
                            "simclr+oracle+eliminate"]
    for method in ("moco+support+attract", "simclr+fnsd+eliminate", "moco+dcl"):
        assert method in picker.options or picker.format_func(method) in picker.options, method
    assert "SimCLR + oracle (uses labels) + eliminate" in picker.options
    at.selectbox(key="cmp-preset").set_value("compare_cpu").run()
    at.multiselect(key="cmp-methods").set_value(["simclr", "simclr+nearest+attract"]).run()
    assert not [n for n in at.number_input if n.key == "cmp-tau-plus"]  # DCL's prior only where DCL is picked
    at.multiselect(key="cmp-methods").set_value(["simclr", "simclr+nearest+attract", "simclr+dcl"]).run()
    at.number_input(key="cmp-pseeds").set_value(2)
    assert at.number_input(key="cmp-tau-plus").value == pytest.approx(0.1)  # the loss's default: no preset sets it
    next(b for b in at.button if "Launch comparison" in b.label).click().run()
    assert errors(at) == ["Not launched: not started in this test"], errors(at)
    kind, cfg = seen[-1]
    assert kind == "compare" and cfg.methods == ["simclr", "simclr+nearest+attract", "simclr+dcl"]
    assert not any(o.startswith("loss.tau_plus=") for o in cfg.pretrain_overrides)  # the preset as written
    at.number_input(key="cmp-tau-plus").set_value(0.25)
    next(b for b in at.button if "Launch comparison" in b.label).click().run()
    assert seen[-1][1].pretrain_overrides[-1] == "loss.tau_plus=0.25"
    # no range the browser enforces (it would hold the form back silently): a value out of range is said in words
    assert not [n.label for n in at.number_input if n.proto.has_min or n.proto.has_max]
    # every wrong field at once, in the form's words and with what was typed (it said "got [0]" for a 1, one field
    # per Launch)
    for key, value in (("cmp-pseeds", 1), ("cmp-seeds", 0), ("cmp-pre-steps", 0), ("cmp-probe-epochs", 0)):
        at.number_input(key=key).set_value(value)
    next(b for b in at.button if "Launch comparison" in b.label).click().run()
    assert errors(at) == ["Not launched:\n- Pretraining seeds: at least 2 (a paired interval needs them), got 1\n"
                          "- Evaluation seeds: at least 1, got 0\n- Pretraining steps: at least 1, got 0\n"
                          "- Probe epochs: at least 1, got 0"], errors(at)


def test_a_class_the_test_scenes_lack_is_a_blank_named_row_of_the_confusion() -> None:
    """Forest and water absent from a DeepGlobe test scene showed as rows of 0 %, as if never found."""
    from workbench.confusion_view import confusion_figure

    result = {"confusion": [[8, 2, 0], [0, 0, 0], [1, 0, 9]],
              "iou": {"urban_land": 0.7, "forest_land": 0.0, "water": 0.8}}
    heat = confusion_figure(result).data[0]
    assert list(heat.y) == ["urban land", "forest land (none in the test)", "water"]  # DeepGlobe's names as words
    assert list(heat.x) == ["urban land", "forest land", "water"]
    assert np.isnan(heat.z[1]).all() and list(heat.z[0]) == [80.0, 20.0, 0.0] and list(heat.z[2]) == [10.0, 0.0, 90.0]


def test_the_comparison_table_shows_every_decimal_of_its_scores(empty_store: Path) -> None:
    """The review saw "31.5" beside "31.52": the table dropped trailing zeros of the scores it had rounded."""
    from core.store.runs import create_run

    run = create_run("cmp", "name: cmp\n", empty_store, kind="compare", state="completed")
    methods = [{"label": "SimCLR", "runs": 1, "miou_mean": 0.315, "miou_sd": None, "oa_mean": 0.8,  # one seed
                "kappa_mean": 0.7}, {"label": "SimCLR + FALSE", "runs": 2, "miou_mean": 0.3152, "miou_sd": 0.012,
                                     "oa_mean": 0.81, "kappa_mean": 0.71}]
    (run.path / "comparison.json").write_text(json.dumps({"methods": methods, "differences": [],
                                                          "config": {"pretrain_seeds": [0, 1]}}))
    at = open_page("finetune")
    assert not at.exception, at.exception
    (table,) = [d for d in at.dataframe if "mIoU %" in d.value]
    config = json.loads(table.proto.columns)
    assert {name: config[name]["type_config"]["format"] for name in ("mIoU %", "± sd", "OA %", "kappa")} == {
        "mIoU %": "%.2f", "± sd": "%.2f", "OA %": "%.2f", "kappa": "%.3f"}
    assert list(table.value["mIoU %"]) == [31.5, 31.52]
    assert table.value["± sd"].isna().tolist() == [True, False]  # one seed: no spread, and no error


def test_a_run_that_failed_unscored_says_so_and_offers_no_resume(store_base: Path, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """A review: a run failed on its data still said "Scores appear after the first validation." and offered a
    Resume that would fail the same way."""
    from core.store.runs import create_run

    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    ft = next(r for r in list_runs(runs) if r.id.endswith("tiny-ft"))
    failed = create_run("broken", ft.config_text(), runs, kind="finetune", state="failed")
    failed.write_status(error="cannot read images/x1.jpg: not an image")
    at = open_page("finetune")
    at.selectbox(key="ft-run").set_value(failed.id).run()
    assert not at.exception
    page = shown(texts(at))
    assert "No scores: the run failed before it was scored." in page and "Scores appear" not in page
    assert "failed before its first checkpoint" in page and not any(b.label == "▶ Resume" for b in at.button)


@pytest.mark.parametrize("kind", ["finetune", "probe"])
def test_data_the_command_line_refuses_is_refused_by_the_form_before_any_run(empty_store: Path, tmp_path: Path,
                                                                              monkeypatch, kind: str) -> None:
    """A review: a folder of text files named .jpg (and an empty folder) launched as runs that failed seconds later,
    while the command line refused them before making a folder. Now the form reads the data first, and says why
    beside the data folder."""
    seen = _capture_launches(monkeypatch, read_data=True)
    bad = tmp_path / "data" / "nonimg"  # under the data root: the path guard lets it through
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    (bad / "images" / "x1.jpg").write_text("not an image")
    (bad / "masks" / "x1.png").write_text("not a mask")
    table = tmp_path / "data" / "classes.yaml"
    table.write_text("classes:\n  - {name: a, color: [1, 2, 3]}\n  - {name: b, color: [4, 5, 6]}\n")
    at = open_page("finetune")
    if kind == "probe":
        at.radio(key="ft-kind").set_value("probe").run()
    at.selectbox(key="ft-data").set_value("folder").run()
    at.text_input(key="ft-root").set_value(str(bad)).run()
    at.text_input(key="ft-table").set_value(str(table)).run()
    at.button(key="pb-launch" if kind == "probe" else "ft-launch").click().run()
    assert not at.exception
    summary = errors(at)
    assert len(summary) == 1 and "**Data set folder (not synthetic)**: cannot read" in summary[0], summary
    assert "x1.jpg" in summary[0] and seen == [] and list_runs(empty_store) == []
    assert any(m.value.startswith(":red[⚠ cannot read") for m in at.markdown)  # beside the folder's field


def test_the_data_caption_says_what_changed_and_another_data_set_forgets_the_last_launch_errors(
        empty_store: Path, monkeypatch) -> None:
    """A review: the caption kept "image by image" after Split by changed; DeepGlobe's refusal stayed beside the
    folder after switching back; picking the random encoder kept "Pick the encoder again to restore its split"."""
    from workbench import seg_form

    _capture_launches(monkeypatch)
    monkeypatch.setattr(seg_form, "data_problem", lambda cfg, probe=False: "data.root: DeepGlobe: no *_sat.jpg images"
                        if cfg.data.name == "deepglobe" else None)
    at = open_page("finetune")
    at.selectbox(key="ft-preset").set_value("finetune_dubai_cpu").run()
    at.selectbox(key="ft-split-unit").set_value("folder").run()
    assert "Changed since: Split by: image by image → folder by folder (its images together)." in shown(texts(at))
    at.selectbox(key="ft-data").set_value("deepglobe").run()
    at.button(key="ft-launch").click().run()
    assert "no *_sat.jpg images" in shown(texts(at))
    at.selectbox(key="ft-data").set_value("folder").run()
    assert "no *_sat.jpg images" not in shown(texts(at)), texts(at)
