"""The online kNN monitor of pretraining: its split, its vote, its records, and that it changes no training step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.ssl.knn_monitor import MonitorUnavailable, knn_predict, knn_split
from core.ssl.pretrain import main
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.proj_hidden=32", "model.proj_dim=16",
        "data.num_tiles=40", "data.tile_size=48", "data.image_size=32", "train.batch_size=8", "train.optimizer=adamw",
        "train.lr=0.001", "train.warmup_steps=2", "train.max_steps=4", "train.ckpt_every=4", "seed=5"]


def test_queries_come_from_other_scenes_than_the_bank() -> None:
    labels = np.array([0, 1, 2, -1] * 50)  # -1: a tile without a labeled pixel is never used
    scenes = np.repeat(np.arange(10), 20)
    split = knn_split(labels, scenes, seed=0, bank_tiles=60, query_tiles=20)
    assert split.by_scene and len(split.bank) == 60 and len(split.queries) == 20
    assert not set(scenes[split.bank]) & set(scenes[split.queries])
    assert (labels[split.bank] >= 0).all() and (labels[split.queries] >= 0).all()
    again = knn_split(labels, scenes, seed=0, bank_tiles=60, query_tiles=20)
    assert (again.bank == split.bank).all() and (again.queries == split.queries).all()  # fixed for the run
    one_scene = knn_split(labels, np.zeros(200, int), seed=0)
    assert not one_scene.by_scene and not set(one_scene.bank) & set(one_scene.queries)
    with pytest.raises(MonitorUnavailable, match="3 labeled"):
        knn_split(np.array([0, 1, 0, -1, -1]), None, seed=0)


def test_query_scenes_are_chosen_so_that_the_bank_holds_their_classes() -> None:
    """On DeepGlobe the first choice held out the urban scenes: the bank had no urban tile, half the queries could
    never be right, and the monitor read 3 % as if the features were bad. Each class here lies in two scenes, and
    a fifth of the tiles is two scenes: many seeds' first choice held out both scenes of one class."""
    labels = np.repeat(np.arange(10) % 5, 20)
    scenes = np.repeat(np.arange(10), 20)
    for seed in range(20):
        split = knn_split(labels, scenes, seed=seed)
        assert split.covered == 1.0 and set(labels[split.queries]) <= set(labels[split.bank]), seed
    alone = np.repeat([0, 0, 0, 0, 1], 20)  # class 1 only in one scene: when held out, the ceiling is said
    split = knn_split(alone, np.repeat(np.arange(5), 20), seed=0, query_tiles=40)
    assert split.covered == pytest.approx(np.isin(alone[split.queries], alone[split.bank]).mean())


def test_the_vote_weighs_the_nearest_bank_tiles() -> None:
    bank = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    assert knn_predict(bank, labels, queries, k=5, n_classes=2).tolist() == [0, 1]  # 2 near votes beat 3 far ones
    assert knn_predict(bank, labels, queries, k=50, n_classes=2).tolist() == [0, 1]  # k capped at the bank


@pytest.mark.slow  # two runs or a run and its scoring: the full suite (the fast tier is kept under 3 minutes)
def test_a_run_records_knn_accuracy_and_trains_exactly_as_without(tmp_path: Path, monkeypatch, capsys) -> None:
    from core.analysis.knn_reading import knn_reading

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    curves = {}
    for every in (0, 2):
        runs = tmp_path / f"runs{every}"
        monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
        capsys.readouterr()
        assert main([*TINY, "train.log_every=3", f"train.knn_every={every}", f"name=knn{every}"]) == 0
        (run,) = list_runs(runs)
        curves[every] = {m["step"]: m for m in run.metrics()}
        out = capsys.readouterr().out
        # the closing lines read the kNN accuracy as the page does: interval, majority class, the untrained encoder
        # (a walkthrough read "66.7 % (majority-class baseline 61.9 %)" as a gain; step 0 had scored 71.4 %)
        assert (f"  {knn_reading(run.metrics())}" in out.splitlines()) == bool(every)
        assert not every or "the untrained encoder's" in out
    with_knn = curves[2]
    # the monitor's steps are logged too, and step 0: the untrained encoder, the curve's own reference
    assert sorted(with_knn) == [0, 2, 3, 4] and sorted(curves[0]) == [3, 4] and "loss" not in with_knn[0]
    assert "knn_acc" not in with_knn[3] and all("knn_acc" in with_knn[s] for s in (0, 2, 4))
    assert all(0.0 <= with_knn[s]["knn_acc"] <= 1.0 and 0.0 < with_knn[s]["knn_baseline"] <= 1.0 for s in (0, 2, 4))
    assert with_knn[2]["knn_baseline"] == with_knn[4]["knn_baseline"]  # the same tiles all run long
    assert 0 < with_knn[2]["knn_queries"] <= 256  # a difference between runs needs it for its interval (Runs page)
    for s in (3, 4):  # turning the monitor on changes no training step
        assert with_knn[s]["loss"] == curves[0][s]["loss"]
    assert "kNN monitor every 2 steps" in run.log_text()  # run: the last one made, with the monitor


def test_a_folder_without_labels_trains_without_the_monitor_and_says_so(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    assert main([*TINY, "data.name=folder", f"data.root={folder}", "train.knn_every=2", "train.max_steps=2"]) == 0
    (run,) = list_runs(tmp_path / "runs")
    assert run.status()["state"] == "completed" and not any("knn_acc" in m for m in run.metrics())
    assert "kNN monitor off: the data set has no labels" in run.log_text()


def test_a_resume_whose_monitor_tiles_changed_says_so() -> None:
    """A run resumed across the change of the query-scene rule measured other tiles from then on: said, not hidden."""
    from types import SimpleNamespace

    from core.ssl.knn_monitor import KnnMonitor

    monitor = SimpleNamespace(baseline=0.0, bank_baseline=0.0)
    said = KnnMonitor.tiles_changed(monitor, [{"step": 4, "knn_acc": 0.03, "knn_baseline": 0.03}], 8)
    assert said is not None and "baseline 0.030 before, 0.000 now" in said and said.endswith("jump at step 8")
    assert KnnMonitor.tiles_changed(monitor, [{"knn_baseline": 0.0}], 8) is None
    assert KnnMonitor.tiles_changed(monitor, [{"step": 1, "loss": 3.0}], 8) is None


def test_the_baseline_is_the_best_constant_answer_on_the_queries(monkeypatch) -> None:
    """The review: on DeepGlobe the bank's most common class (water) was in no query, so the bar read 0 % where always
    answering the queries' most common class (agriculture) scores 50 %."""
    from types import SimpleNamespace

    import core.ssl.knn_monitor as knn

    labels = np.array([2] * 6 + [0, 1] + [0, 0, 1, 3])  # bank: tiles 0-7, mostly water (2); queries: tiles 8-11
    monkeypatch.setattr(knn, "dominant_classes", lambda dataset: labels)
    monkeypatch.setattr(knn, "knn_split", lambda *a: knn.KnnSplit(np.arange(8), np.arange(8, 12), True))
    monitor = knn.KnnMonitor(SimpleNamespace(scene_ids=None), every=1, input_size=32, seed=0, device="cpu")
    assert monitor.baseline == 0.5  # class 0: 2 of the 4 queries (the bank's water: none of them)
    assert "majority-class baseline 0.500 (always answering the query tiles' most common class)" in monitor.describe()
    # a run resumed across the change: the same tiles, only the bar moved (it read as if the tiles had changed)
    said = monitor.tiles_changed([{"step": 4, "knn_acc": 0.25, "knn_baseline": 0.0}], 8)
    assert said.startswith("kNN monitor: its baseline is now the query tiles' most common class (0.500; it was the "
                           "bank's, 0.000): the dashed line steps at step 8")


def test_queries_are_whole_places_not_parts_of_one(monkeypatch) -> None:
    """A review: a Dubai tile's 9 parts are 9 scenes, so the "other scenes" of a query were its own tile's other
    parts. The monitor asks ``place_ids``: the class table's folders where it says they are one picture."""
    from types import SimpleNamespace

    import core.ssl.knn_monitor as knn

    labels = np.arange(40) % 3
    parts = SimpleNamespace(scene_ids=np.arange(40), scene_names=[f"tile_{i // 8}/part_{i}" for i in range(40)],
                            table=SimpleNamespace(places="folder", group_by="file"))  # 5 tiles of 8 parts
    monkeypatch.setattr(knn, "dominant_classes", lambda dataset: labels)
    monitor = knn.KnnMonitor(parts, every=1, input_size=32, seed=0, device="cpu")
    tiles = np.arange(40) // 8
    assert monitor.split.by_scene and not set(tiles[monitor.split.bank]) & set(tiles[monitor.split.queries])
