"""A run keeps the split it was made with: ``data.split_unit`` is recorded at load, runs made before it existed read
as split image by image, and a resume or flag report whose data now splits otherwise stops in one line."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from core.config import SegDataConfig
from core.ssl.pretrain import main
from core.store.runs import Run, list_runs

ROOT = Path(__file__).resolve().parent.parent

COLOURS = [(60, 16, 152), (132, 41, 246), (110, 193, 228)]
TABLE = """
classes:
  - {name: building, color: [60, 16, 152]}
  - {name: land, color: [132, 41, 246]}
  - {name: road, color: [110, 193, 228]}
"""
TINY = ["model.encoder=resnet18", "model.proj_hidden=32", "model.proj_dim=16", "data.name=folder", "data.tile_size=16",
        "data.image_size=16", "data.test_fraction=0.25", "data.val_fraction=0", "train.batch_size=4",
        "train.optimizer=adamw", "train.lr=0.001", "train.warmup_steps=1", "train.ckpt_every=1", "seed=1"]
pytestmark = pytest.mark.filterwarnings("ignore:.*share 2 folder")  # split by file on purpose


@pytest.fixture()
def labeled_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """4 folders of 2 images (32 px, 4 tiles of 16 each) with colour masks, and a class table split by file."""
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "cache"))
    root, rng = tmp_path / "aerial", np.random.default_rng(0)
    for k in range(8):
        sub = f"tile_{k // 2}"
        for kind, arr in (("images", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)),
                          ("masks", np.array(COLOURS, np.uint8)[rng.integers(0, 3, (32, 32))])):
            (root / kind / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / kind / sub / f"part_{k}.png")
    table = tmp_path / "table.yaml"
    table.write_text(TABLE + "group_by: file\n")
    return tmp_path / "runs", root, table


def _config(run: Run) -> dict:
    return yaml.safe_load((run.path / "config.yaml").read_text())


def test_a_run_keeps_its_split_when_the_class_table_changes(labeled_folder, capsys) -> None:
    runs, root, table = labeled_folder
    data = [f"data.root={root}", f"data.class_table={table}"]
    assert main(["--no-progress", *TINY, *data, "train.max_steps=2"]) == 0
    (run,) = list_runs(runs)
    assert _config(run)["data"]["split_unit"] == "file"  # written down at the start
    log = (run.path / "log.txt").read_text()  # the scenes the encoder never read, by name
    assert re.search(r"scenes: train 6 scenes \(pretrained on\); val 0; test 2 scenes \(tile_\d/part_\d, tile_",
                     log), log
    test_before = run.path.joinpath("data.json").read_text()
    table.write_text(TABLE + "group_by: folder\n")  # the table now keeps folders whole: the run's unit stands
    assert main(["--no-progress", "--resume", str(run.path), "train.max_steps=3"]) == 0
    assert run.status()["step"] == 3 and run.path.joinpath("data.json").read_text() == test_before

    raw = _config(run)  # a run made before data.split_unit existed, over a table of one's own: the table as it is
    del raw["data"]["split_unit"]
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert "split_unit" not in Run(run.path).stored_config()["data"]
    metrics = (run.path / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["--no-progress", "--resume", str(run.path), "train.max_steps=4"]) != 0  # it now splits by folder
    err = capsys.readouterr().err
    assert "its data, class table or split unit changed since the run" in err, err
    assert f"set data.split_unit: file in {run.path / 'config.yaml'} (it says folder)" in err, err
    assert "Traceback" not in err and (run.path / "metrics.jsonl").read_text() == metrics
    raw["data"]["split_unit"] = "file"  # as the message says: it goes on
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert main(["--no-progress", "--resume", str(run.path), "train.max_steps=4"]) == 0


def test_old_runs_and_cards_over_the_dubai_table_read_as_split_by_file(tmp_path: Path) -> None:
    """The Dubai table said group_by: file until data.split_unit recorded the unit; it says folder now. A run or a
    card made before reads as it was made; one that records its unit keeps it."""
    from core.seg.fingerprint import training_config

    data = {"name": "folder", "root": str(tmp_path), "class_table": "configs/classes/dubai.yaml"}
    assert yaml.safe_load((ROOT / "configs/classes/dubai.yaml").read_text())["group_by"] == "folder"
    folder = tmp_path / "run"
    folder.mkdir()
    for recorded, read in ((None, "file"), ("folder", "folder"), ("file", "file")):
        section = {**data, **({"split_unit": recorded} if recorded else {})}
        (folder / "config.yaml").write_text(yaml.safe_dump({"name": "x", "data": section}))
        assert Run(folder).config()["data"]["split_unit"] == read
        assert Run(folder).stored_config()["data"]["split_unit"] == read
        card = {"config": {"data": dict(section), "train": {"max_steps": 2}}}
        assert training_config(card, folder).data.split_unit == read, recorded
        assert "split_unit" not in card["config"]["data"] or recorded  # the card itself is not rewritten
    assert SegDataConfig(**data).split_unit == "folder"  # a new config: the table as it is


def test_a_changed_tile_count_says_how_to_set_the_unit_back(tmp_path: Path) -> None:
    """Folders of different sizes: another unit changes the number of tiles a pretraining reads, and the message
    names the unit to set back (a review got the count message without it)."""
    from core.data import DataError
    from core.ssl.run_start import check_same_data

    (tmp_path / "data.json").write_text('{"tiles": 24, "split_scenes": null}')

    class Tiles(list):  # what the check reads of a data set: its length and split scenes
        split_scenes = None

    with pytest.raises(DataError, match=r"trained on 24 tiles but its data set now gives 28: .* set "
                                        r"data.split_unit: file in .*config.yaml \(it says folder\)"):
        check_same_data(tmp_path, Tiles(range(28)), "folder")
    check_same_data(tmp_path, Tiles(range(24)), "folder")


def test_the_pretraining_log_names_a_test_folder_as_one_scene(labeled_folder) -> None:
    runs, root, table = labeled_folder
    assert main(["--no-progress", *TINY, f"data.root={root}", f"data.class_table={table}", "train.max_steps=1",
                 "data.test_scenes=[tile_0]"]) == 0
    (run,) = list_runs(runs)
    assert "; test 2 images of 1 scene (tile_0)" in (run.path / "log.txt").read_text()


def test_a_flag_report_of_a_run_whose_split_moved_is_refused(labeled_folder) -> None:
    from core.analysis.fn_report import FlagReportError, flag_report

    runs, root, table = labeled_folder
    assert main(["--no-progress", *TINY, f"data.root={root}", f"data.class_table={table}", "train.max_steps=2",
                 "loss.name=false", "loss.threshold=0.5"]) == 0
    (run,) = list_runs(runs)
    raw = _config(run)
    raw["data"]["split_unit"] = "folder"
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FlagReportError, match=r"the run's (test|train) split held \d+ scene\(s\)"):
        flag_report(Run(run.path))


def test_a_comparison_pretrains_an_image_folder_split_as_its_evaluation(labeled_folder) -> None:
    """Pretraining units take the evaluation's split: its unit too, or a unit split by folder would pretrain on a
    test image's neighbours of the same picture."""
    from core.config import FinetuneConfig, PretrainConfig, load_config
    from core.seg.compare_config import split_overrides

    _, root, table = labeled_folder
    data = [f"data.root={root}", f"data.class_table={table}"]
    pretrain = load_config(None, ["data.name=folder", *data])
    evaluation = load_config(None, ["data.name=folder", *data, "data.split_unit=folder"], FinetuneConfig)
    extra = split_overrides(None, pretrain, evaluation)  # type: ignore[arg-type]
    assert "data.split_unit=folder" in extra and pretrain.data.split_unit == "file"
    assert load_config(None, ["data.name=folder", *data, *extra], PretrainConfig).data.split_unit == "folder"
    unlabeled = load_config(None, ["data.name=folder", f"data.root={root}"])  # no table: no unit to give
    assert not any(o.startswith("data.split_unit") for o in split_overrides(None, unlabeled, evaluation))


@pytest.mark.slow
def test_a_fine_tuning_resume_whose_split_moved_is_refused_before_the_run_is_touched(labeled_folder, capsys) -> None:
    from core.seg.finetune_cli import main as finetune_main

    runs, root, table = labeled_folder
    with pytest.warns(UserWarning, match="the test images share"):  # the split by image warns ...
        assert finetune_main(["--no-progress", "data.name=folder", f"data.root={root}", f"data.class_table={table}",
                              "data.tile_size=32", "data.crop_size=32", "data.val_fraction=0.25",
                              "data.test_fraction=0.25", "train.batch_size=2", "train.max_steps=2",
                              "train.eval_every=1", "train.test_tile=32"]) == 0
    said = capsys.readouterr().err  # ... and fine-tuning does not print it again (the terminal had it twice: a review)
    assert "the test images share" not in said, said
    (run,) = list_runs(runs)
    recorded = yaml.safe_load((run.path / "splits.json").read_text())["split_scenes"]
    assert sum(len(v) for v in recorded.values()) == 8 and _config(run)["data"]["split_unit"] == "file"
    raw = _config(run)
    raw["data"]["split_unit"] = "folder"
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    capsys.readouterr()
    assert finetune_main(["--no-progress", "--resume", str(run.path), "train.max_steps=3"]) != 0
    err = capsys.readouterr().err
    assert "split unit changed since the run" in err and "Traceback" not in err, err
    after = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    kept = set(before) - {"status.json", "log.txt", ".lock"}  # the refusal is logged; the records stay
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept} and "splits.json" in kept
    raw["data"]["split_unit"] = "file"  # set back as the message says: it goes on
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert finetune_main(["--no-progress", "--resume", str(run.path), "train.max_steps=3"]) == 0
    assert run.status()["step"] == 3
