"""Baselines beside a score (core.seg.baseline), the data a segmentation form starts from (core.seg.data_defaults),
and the linear probe as a background run in a run folder (core.seg.probe --run-dir / --resume)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.config import FinetuneConfig, ProbeConfig, config_to_yaml, load_config
from core.seg.baseline import baseline_config, random_baseline, recipe, shipped_scores
from core.seg.data_defaults import encoder_seg_data, source_data
from core.seg.probe import main as probe_main
from core.store.catalog import ModelEntry
from core.store.runs import REPO_ROOT, atomic_write_json, create_run
from core.store.sources import SourceInfo, describe

FT = REPO_ROOT / "configs/finetune_demo_cpu.yaml"
DG = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255)], np.uint8)


def deepglobe_folder(root: Path, scenes: int = 4, size: int = 64) -> Path:
    """A tiny folder in DeepGlobe's layout (``*_sat.jpg`` + ``*_mask.png``), lossless pixels."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(scenes):
        lab = np.zeros((size, size), np.int64)
        lab[:, size // 2:] = 1 + k % 3
        img = (DG[lab] * 0.6 + rng.integers(0, 100, (size, size, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{k}_sat.png")
        Image.fromarray(DG[lab]).save(root / f"{k}_mask.png")
    for p in root.glob("*_sat.png"):
        p.rename(p.with_name(p.name.replace(".png", ".jpg")))
    return root


def _ft(overrides: list[str]) -> FinetuneConfig:
    return load_config(FT, overrides, FinetuneConfig)


def _run(root: Path, cfg, state: str = "completed", scenes: list[str] | None = None, miou: float | None = None,
         kind: str = "finetune"):
    run = create_run(cfg.name or kind, config_to_yaml(cfg), root, state=state, kind=kind)
    run.write_status(state=state, pid=os.getpid() if state == "running" else 2**22 + 7)
    if miou is not None:
        atomic_write_json(run.path / "test_metrics.json", {"split": "test", "scenes": scenes or [], "miou": miou,
                                                            "classes": ["a", "b"]})
    return run


def test_a_recipe_is_the_config_without_the_encoder_name_or_device() -> None:
    a = _ft(["model.init=runs/x", "name=a", "train.device=cpu", "train.log_every=3"]).model_dump(mode="json")
    b = _ft(["name=b"]).model_dump(mode="json")
    assert recipe("finetune", a) == recipe("finetune", b)
    for change in ("train.max_steps=201", "data.seed=1", "data.test_fraction=0.2", "seed=3", "train.protocol=frozen"):
        assert recipe("finetune", _ft([change]).model_dump(mode="json")) != recipe("finetune", b), change
    rel = _ft(["data.name=deepglobe", "data.root=../shared/data/deepglobe_landcover"]).model_dump(mode="json")
    absolute = _ft(["data.name=deepglobe", f"data.root={(REPO_ROOT / '../shared/data/deepglobe_landcover').resolve()}"])
    assert recipe("finetune", rel) == recipe("finetune", absolute.model_dump(mode="json"))  # the same folder
    assert recipe("finetune", {"model": {"arch": "nope"}}) is None and recipe("pretrain", b) is None
    twin = baseline_config("finetune", a)
    assert twin.model.init == "random" and twin.name == "baseline-a" and recipe("finetune", twin.model_dump()) == \
        recipe("finetune", a)


def test_the_random_baseline_is_a_run_of_the_same_recipe_on_the_same_scenes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    mine = _run(runs, _ft(["model.init=/some/encoder.safetensors", "name=mine"]), scenes=["s1", "s2"], miou=0.5)
    assert random_baseline(mine, [mine]).state == "none"
    _run(runs, _ft(["name=other-steps", "train.max_steps=50"]), scenes=["s1", "s2"], miou=0.1)  # another recipe
    assert random_baseline(mine, _all(runs)).state == "none"
    live = _run(runs, _ft(["name=live"]), state="running")
    found = random_baseline(mine, _all(runs))
    assert found.state == "running" and found.run.path == live.path
    twin = _run(runs, _ft(["name=twin", "train.device=cpu"]), scenes=["s2", "s1"], miou=0.3)
    found = random_baseline(mine, _all(runs))
    assert found.state == "done" and found.run.path == twin.path and found.record["miou"] == 0.3
    assert "the same test scenes (2 scenes)" in found.note and twin.id in found.note
    assert random_baseline(twin, _all(runs)).state == "self"  # a random encoder is its own baseline
    atomic_write_json(twin.path / "test_metrics.json", {"split": "test", "scenes": ["s9"], "miou": 0.3})
    assert random_baseline(mine, _all(runs)).state == "running"  # never shown beside another split's score
    assert random_baseline(mine, [mine, twin]).state == "other-scenes"


def test_only_a_twin_that_can_still_give_a_comparable_score_blocks_a_new_baseline(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """A twin finished on other scenes or without scores used to answer "its baseline exists" for ever (and the
    page showed no button): a new baseline is launched then; a stopped one is resumed, a running or comparable
    one is kept."""
    from types import SimpleNamespace

    from core.seg.baseline import launch_baseline
    from core.store import launch

    started, resumed = [], []
    monkeypatch.setattr(launch, "launch", lambda kind, cfg, root=None, name=None, processes=1:
                        started.append(cfg) or SimpleNamespace(id=f"new-{len(started)}"))
    monkeypatch.setattr(launch, "resume", lambda run: resumed.append(run.id) or run)
    runs = tmp_path / "runs"
    mine = _run(runs, _ft(["model.init=/some/encoder.safetensors", "name=mine"]), scenes=["s1", "s2"], miou=0.5)
    other = _run(runs, _ft(["name=other"]), scenes=["s9"], miou=0.3)
    _, said = launch_baseline(mine, _all(runs))
    assert len(started) == 1 and started[0].model.init == "random" and "new-1" in said
    assert f"{other.id} was tested on other scenes" in said
    _run(runs, _ft(["name=no-scores"]))  # finished without test scores
    assert random_baseline(mine, _all(runs)).state == "not-yet"  # beside nothing, but better said than other scenes
    _, said = launch_baseline(mine, _all(runs))
    assert len(started) == 2 and "finished without test scores" in said
    stopped = _run(runs, _ft(["name=stopped"]), state="stopped")
    twin, said = launch_baseline(mine, _all(runs))
    assert resumed == [stopped.id] and twin.path == stopped.path and len(started) == 2 and "resumed" in said
    live = _run(runs, _ft(["name=live"]), state="running")
    twin, said = launch_baseline(mine, _all(runs))
    assert twin.path == live.path and said.startswith("its baseline exists") and len(started) == 2
    done = _run(runs, _ft(["name=done"]), scenes=["s2", "s1"], miou=0.2)
    twin, said = launch_baseline(mine, _all(runs))
    assert twin.path == done.path and said.startswith("its baseline exists")
    assert (len(started), resumed) == (2, [stopped.id])


def _all(root: Path) -> list:
    from core.store.runs import list_runs

    return list_runs(root)


def _entry(name: str, test_scenes: list[str], training: list[str], miou: float, data: dict) -> ModelEntry:
    card = {"kind": "segmentation", "classes": [{"name": "a"}, {"name": "b"}], "config": {"data": data},
            "domain": {"test_scenes": test_scenes}, "evaluation": {"training_scenes": training, "miou": miou,
                                                                   "scenes": test_scenes}}
    return ModelEntry(f"shipped: {name}", Path(f"/x/{name}.safetensors"), card)


def test_a_shipped_model_scores_only_on_exactly_the_runs_scenes() -> None:
    data = {"name": "deepglobe", "root": "/dg"}
    record = {"split": "test", "scenes": ["t1", "t2"], "classes": ["a", "b"], "miou": 0.4}
    models = [_entry("same", ["t2", "t1"], ["r1"], 0.61, data), _entry("saw", ["t9"], ["t1", "r1"], 0.9, data),
              _entry("other", ["t3"], ["r1"], 0.7, data), _entry("elsewhere", ["t1", "t2"], [], 0.2,
                                                                   {"name": "potsdam", "root": "/p"})]
    got = {s.label: s for s in shipped_scores(record, data, models)}
    assert set(got) == {"same", "saw", "other"}  # potsdam is another data set
    assert got["same"].miou == pytest.approx(0.61) and "the same 2 scenes; " in got["same"].note
    assert got["saw"].miou is None and "trained on 1 of these test images" in got["saw"].note
    assert got["other"].miou is None and "other images" in got["other"].note
    # the images of a named scene are counted as the run's own score line counts them (it said "200 scenes" above
    # "the same 200 test images")
    data = {"name": "dubai", "root": "/d", "test_scenes": ["tile_3"]}
    record = {**record, "scenes": ["tile_3/a", "tile_3/b"]}
    tile = shipped_scores(record, data, [_entry("tile", ["tile_3/b", "tile_3/a"], [], 0.5, data)])[0]
    assert "the same 2 images of 1 scene (tile_3); " in tile.note


def test_a_shipped_score_of_another_recipe_says_where_the_recipe_differs() -> None:
    """A review read a 40-step fine-tuning on 10 % of the labels as 11 points behind the shipped model, which trained
    300 steps on all of them; and a linear probe's score beside that fine-tuned model, with nothing said."""
    from core.seg.baseline import recipe_differences

    data = {"name": "synthetic", "label_fraction": 1.0, "crop_size": 192}
    record = {"split": "test", "scenes": ["t1"], "classes": ["a", "b"], "miou": 0.4}
    shipped = _entry("synthetic_seg", ["t1"], ["r1"], 0.488, data)
    shipped.card["config"].update({"train": {"max_steps": 300, "protocol": "full"}, "model": {"arch": "deeplabv3plus"}})
    ours = {"data": {**data, "label_fraction": 0.1}, "train": {"max_steps": 40, "protocol": "full"},
            "model": {"arch": "deeplabv3plus"}}
    [score] = shipped_scores(record, ours["data"], [shipped], config=ours)
    assert score.miou == pytest.approx(0.488)
    assert score.note.endswith("; another recipe: label fraction 1 (this run 0.1), 300 steps (this run 40)")
    same = shipped_scores(record, data, [shipped], config=shipped.card["config"])[0]
    assert "another recipe" not in same.note  # the same settings: nothing to say
    probe = recipe_differences(shipped.card["config"], {"data": data, "train": {"epochs": 20}}, kind="probe")
    assert probe == "another recipe: a fine-tuned model, this run a linear probe of a frozen encoder"


def test_an_encoders_labeled_pretraining_set_is_its_data_default() -> None:
    card = {"config": {"data": {"name": "deepglobe", "root": "/dg", "val_fraction": 0.12, "test_fraction": 0.34,
                                "pretrain_splits": ["train", "val"], "tile_size": 128, "image_size": 64}}}
    data = encoder_seg_data(card)
    assert (data.name, data.root, data.val_fraction, data.test_fraction, data.tile_size) == \
        ("deepglobe", "/dg", 0.12, 0.34, 128)
    assert encoder_seg_data({"config": {"data": {"name": "folder", "root": "/imgs"}}}) is None  # unlabeled
    assert encoder_seg_data({"kind": "encoder"}) is None and encoder_seg_data({"config": {"data": {"name": 3}}}) is None


def test_a_source_takes_its_class_table_and_split_from_a_preset_of_the_same_folder(tmp_path: Path) -> None:
    dubai = str((REPO_ROOT / "../shared/data/dubai_aerial").resolve())  # only compared as a path, never read
    data, note = source_data(SourceInfo(dubai, "images/ + masks/", 9, True))
    assert data.class_table == "configs/classes/dubai.yaml" and data.test_scenes == ["tile_3"] and data.labeled
    assert "finetune_dubai_cpu" in note
    mine = deepglobe_folder(tmp_path / "dg")
    data, note = source_data(describe(mine))
    assert data.name == "deepglobe" and data.root == str(mine) and data.labeled and "default" in note
    assert data.pretrain_splits == ["train", "val", "test"]


def test_a_probe_runs_in_a_run_folder_and_again_on_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    cfg = load_config(REPO_ROOT / "configs/probe_demo_cpu.yaml",
                      ["data.num_tiles=24", "data.tile_size=64", "data.val_fraction=0.25", "data.test_fraction=0.25",
                       "train.epochs=2", "train.batch_size=8", "train.test_tile=64"], ProbeConfig)
    run = create_run("probe", config_to_yaml(cfg), tmp_path / "runs", state="starting", kind="probe")
    capsys.readouterr()
    import core.seg.probe as probe_module

    built = []
    real_build = probe_module.build_probe_encoder
    monkeypatch.setattr(probe_module, "build_probe_encoder", lambda *a, **k: built.append(1) or real_build(*a, **k))
    assert probe_main(["--run-dir", str(run.path), "--no-progress"]) == 0
    assert len(built) == 1  # its weights read once: checked when the trainer is made, then probed (it read them twice)
    result = run.read_json("test_metrics.json")  # in percent, as core.evaluate, core.finetune and the cards say it
    said = capsys.readouterr().out.splitlines()
    scores = f"mIoU {100 * result['miou']:.1f} %  OA {100 * result['oa']:.1f} %  kappa {result['kappa']:.3f}"
    assert said[0] == f"completed: {run.path}; epoch 2, last logged loss {run.metrics()[-1]['loss']:.3f}"
    names = ", ".join(result["scenes"])  # by name on the line people copy; with the machine's load beside the time
    assert said[1].startswith(f"test (whole scenes: 6 scenes ({names})): {scores}  (") and said[2].startswith("  IoU ")
    assert re.search(r"; load average \d+\.\d on \d+ cores?\)$", said[1]), said[1]
    status = run.status()
    assert status["state"] == "completed" and status["step"] == status["total_steps"] == 2 and run.kind() == "probe"
    assert [m["step"] for m in run.metrics()] == [1, 2] and all(m["loss"] > 0 for m in run.metrics())
    result = run.read_json("test_metrics.json")
    assert result["protocol"] == "probe" and 0 <= result["miou"] <= 1 and len(result["scenes"]) == 6
    assert status["test_miou"] == pytest.approx(result["miou"]) and "linear probe" in run.summary()["method"]
    assert probe_main(["--run-dir", str(run.path), "--no-progress"]) == 2  # a folder is probed once; resume it
    capsys.readouterr()
    # a review: a completed probe resumed reran, and with train.lr=0.5 overwrote its score under a config of 0.01
    assert probe_main(["--resume", str(run.path), "--no-progress"]) == 2
    assert "is complete" in capsys.readouterr().err and [m["step"] for m in run.metrics()] == [1, 2]  # records kept
    import core.seg.probe_cli as probe_cli
    from core.data import DataError

    def unreadable(*args, **kwargs):  # e.g. a data folder gone: refused after the lock, before the config is written
        raise DataError("data: the set gave no training tiles")

    with monkeypatch.context() as patched:
        patched.setattr(probe_cli, "ProbeTrainer", unreadable)
        assert probe_main(["--resume", str(run.path), "--no-progress", "train.epochs=3"]) == 2
    assert run.config()["train"]["epochs"] == 2  # config.yaml as it was: it says what test_metrics.json is of
    capsys.readouterr()
    assert probe_main(["--resume", str(run.path), "--no-progress", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err  # and where such settings go: a new probe, not a pretraining run's encoder file
    assert "a resumed run keeps the settings" in err and run.config()["train"]["lr"] == cfg.train.lr
    assert "python -m core.probe --config ... with the same model.init" in err and "model.weights" not in err
    assert probe_main(["--resume", str(run.path), "--no-progress", "train.epochs=3"]) == 0  # longer: probed again
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]  # the records of the first pass are gone, not doubled
    assert run.config()["train"]["epochs"] == 3 and "resumed with train.epochs: 2 -> 3" in run.log_text()
    bad = create_run("probe", config_to_yaml(cfg).replace("epochs: 2", "epochs: 0"), tmp_path / "runs",
                     state="starting", kind="probe")
    assert probe_main(["--run-dir", str(bad.path), "--no-progress"]) == 2
    assert bad.status()["state"] == "failed" and "epochs" in bad.status()["error"]


PROBE_DATA = ["data.num_tiles=24", "data.tile_size=64", "data.val_fraction=0.25", "data.test_fraction=0.25"]


def _probe_of_an_encoder(tmp_path: Path, splits: str, name: str, capsys) -> tuple[Any, Any, str]:
    """A one-step pretraining that read ``splits``, then a probe of its encoder named ``name``: (the probe's run, what
    the probe said, its score line)."""
    from core.ssl.pretrain import main as pretrain_main
    from core.store.runs import list_runs

    root = tmp_path / f"pre-{name}"
    assert pretrain_main(["--config", str(REPO_ROOT / "configs/demo_cpu.yaml"), "--runs-root", str(root),
                          "--no-progress", *PROBE_DATA, "data.image_size=32", "model.encoder=resnet18",
                          "model.proj_hidden=16", "model.proj_dim=8", "train.batch_size=8", "train.max_steps=1",
                          "train.knn_every=0", f"data.pretrain_splits={splits}"]) == 0
    (encoder,) = list_runs(root)
    capsys.readouterr()
    assert probe_main(["--config", str(REPO_ROOT / "configs/probe_demo_cpu.yaml"), "--runs-root",
                       str(tmp_path / "runs"), "--no-progress", *PROBE_DATA, "train.epochs=1", "train.batch_size=8",
                       "train.test_tile=64", f"model.init={encoder.path}", f"name={name}"]) == 0
    run = next(r for r in list_runs(tmp_path / "runs") if r.id.endswith(name))
    said = capsys.readouterr()
    return run, said, next(line for line in said.out.splitlines() if line.startswith("test (whole scenes"))


@pytest.mark.slow  # a pretraining run, then a probe of its encoder (twice)
def test_a_new_probe_gets_a_run_folder_and_says_when_its_encoder_read_the_test_scenes(tmp_path: Path, monkeypatch,
                                                                                      capsys) -> None:
    """A probe from ``--config`` printed its score and kept nothing (no folder, not in the Runs page); a frozen
    encoder pretrained on the probe's test scenes was scored there without a word (fine-tuning warned)."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    run, said, score_line = _probe_of_an_encoder(tmp_path, "[train,val,test]", "probe-seen", capsys)
    assert run.kind() == "probe" and run.state() == "completed"
    result = run.read_json("test_metrics.json")
    assert "model.init has read 6 of its test scenes" in result["not_unseen"]
    assert "warning: model.init has read 6 of its test scenes" in said.err and "warning: model.init" in run.log_text()
    assert "; NOT an unseen score (the warning above)" in score_line  # on the line people copy, too
    # an encoder that read the validation scenes only (the DGLC presets pretrain on [train, val]): the test score
    # stands, and the warning says so (a review read "NOT an unseen score" of test scenes no stage saw)
    _, said, score_line = _probe_of_an_encoder(tmp_path, "[train,val]", "probe-val-seen", capsys)
    assert "of its val scenes" in said.err and "its test scenes are unseen, so the test score is one" in said.err
    assert "NOT an unseen" not in score_line, score_line


def test_a_probe_of_a_wrong_model_init_is_one_line_and_leaves_no_folder(tmp_path: Path, capsys) -> None:
    """Since every probe has a folder, a mistyped init made a failed run (exit 1) instead of the error it was."""
    assert probe_main(["--config", str(REPO_ROOT / "configs/probe_demo_cpu.yaml"), "--runs-root", str(tmp_path),
                       "--no-progress", "model.init=no-such-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.init: no such run folder or checkpoint: no-such-run") and "\n" not in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    (tmp_path / "text.safetensors").write_text("not weights")  # a file that is none: the same, naming model.init
    assert probe_main(["--config", str(REPO_ROOT / "configs/probe_demo_cpu.yaml"), "--runs-root", str(tmp_path / "r"),
                       "--no-progress", "data.num_tiles=24", "data.tile_size=64",
                       f"model.init={tmp_path / 'text.safetensors'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.init: ") and "not a readable safetensors file" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_an_out_file_that_cannot_be_written_is_refused_before_the_probe(tmp_path: Path, capsys) -> None:
    """A review: ``--out`` naming a folder ended a finished probe in a traceback."""
    (tmp_path / "afile").write_text("x")
    for out, said in ((tmp_path, "is a folder"), (tmp_path / "afile" / "x.json", "cannot make its folder")):
        assert probe_main(["--config", str(REPO_ROOT / "configs/probe_demo_cpu.yaml"), "--runs-root",
                           str(tmp_path / "runs"), "--no-progress", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {out}") and said in err and "\n" not in err, err
    assert not (tmp_path / "runs").exists()  # nothing probed, no folder made


def test_the_preset_made_for_a_data_set_is_found_by_its_folder_and_bands() -> None:
    from core.config import SegDataConfig
    from core.seg.data_defaults import preset_for

    dglc = SegDataConfig(name="deepglobe", root=str((REPO_ROOT / "../shared/data/deepglobe_landcover").resolve()))
    assert preset_for("finetune", dglc) == "finetune_dglc_cpu" and preset_for("probe", dglc) == "probe_dglc_cpu"
    assert preset_for("finetune", SegDataConfig(name="deepglobe", root="/elsewhere")) is None
    assert preset_for("finetune", SegDataConfig()) == "finetune_demo_cpu"
    assert preset_for("finetune", SegDataConfig(bands=["R", "G", "B", "NIR"])) == "finetune_demo_cpu_rgbn"


def test_the_command_line_reads_a_score_against_its_random_encoder_baseline(tmp_path: Path) -> None:
    """A walkthrough's FALSE fine-tune closed with 14.8 % and no word of the random encoder's 15.4 % (run later)."""
    from core.seg.score_lines import baseline_line

    pre = create_run("pre", "method: simclr\n", tmp_path, state="completed", kind="pretrain")
    cfg = load_config(FT, [f"model.init={pre.path}", "name=ft"], FinetuneConfig)
    mine = create_run("ft", config_to_yaml(cfg), tmp_path, state="completed", kind="finetune")
    atomic_write_json(mine.path / "test_metrics.json", {"split": "test", "scenes": ["a", "b"], "miou": 0.148})
    assert "python -m core.finetune --config" in baseline_line(mine, "finetune")  # none yet: how to make it
    twin = baseline_config("finetune", cfg.model_dump(mode="json"))
    base = create_run(twin.name, config_to_yaml(twin), tmp_path, state="stopped", kind="finetune")
    assert baseline_line(mine, "finetune").endswith(f"python -m core.finetune --resume {base.path} finishes it")
    for state in ("starting", "running", "completed"):
        base.write_status(state=state)
    atomic_write_json(base.path / "test_metrics.json", {"split": "test", "scenes": ["b", "a"], "miou": 0.154})
    line = baseline_line(mine, "finetune")
    assert line.startswith("random-encoder baseline: mIoU 15.4 % (run ") and "this run -0.6 points" in line
    assert baseline_line(base, "finetune") is None  # a random encoder's own run is the baseline
