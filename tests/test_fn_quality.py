"""Flag quality: rebuilt batches equal the trainer's, each reference selector on fixtures with known answers,
the report end to end, and its refusals (no labels, data moved, no class present)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.analysis import fn_quality as fq
from core.ssl import methods as methods_mod
from core.ssl.batch_order import BatchOrder
from core.analysis.fn_report import CACHE_NAME, FlagReportError, compute_report, flag_report
from core.analysis.fn_report import main as report_main
from core.analysis.fn_scoring import NO_CLASS
from core.ssl.pretrain import main as pretrain_main
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.proj_hidden=32", "model.proj_dim=16",
        "data.num_tiles=30", "data.tile_size=48", "data.image_size=32", "train.batch_size=8", "train.max_steps=7",
        "train.ckpt_every=100", "train.optimizer=adamw", "loss.threshold=0.3", "seed=4"]


@pytest.fixture()
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return tmp_path / "runs"


def pair(step: int, a: int, c: int, view: int = 0, calibrated: bool = True, mirrored: bool = False) -> dict:
    return dict(step=step, anchor_index=a, anchor_view=view, candidate_index=c, candidate_view=1 - view,
                distance=0.1, cos=0.5, cos_pos=0.9, calibrated=calibrated, mirrored=mirrored)


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# ------------------------------------------------------------------------------------------------ batches
def test_batch_order_is_the_distributed_sampler_split_over_ranks() -> None:
    one = BatchOrder(n_tiles=20, batch_size=8, seed=3)
    two = BatchOrder(n_tiles=20, batch_size=8, seed=3, world=2)
    assert one.steps_per_epoch == 2 and two.steps_per_epoch == 2
    for step in range(6):  # three epochs: every epoch a fresh permutation, no tile twice within a step
        b = one.batch(step)
        assert len(b) == 8 and len(set(b.tolist())) == 8 and b.max() < 20
        assert two.batch(step).tolist() == two.rank_batch(step, 0) + two.rank_batch(step, 1)
    assert one.batch(0).tolist() != one.batch(2).tolist()
    with pytest.raises(ValueError, match="larger than"):
        BatchOrder(n_tiles=3, batch_size=8, seed=0).batch(0)


@pytest.mark.parametrize("method, extra", [("simclr", ["loss.selection=per_anchor"]),
                                           ("moco", ["model.queue_size=12", "loss.selection=per_anchor"])])
def test_rebuilt_batches_equal_the_trainers(roots: Path, monkeypatch: pytest.MonkeyPatch, method: str,
                                            extra: list[str]) -> None:
    seen: list[tuple[list[int], list[int] | None]] = []
    real_simclr, real_moco = methods_mod.contrastive_loss, methods_mod.moco_loss

    def simclr_spy(cfg, z, ids, distributed):
        seen.append((ids.tolist(), None))
        return real_simclr(cfg, z, ids, distributed)

    def moco_spy(cfg, moco, q, k, ids, distributed):
        seen.append((ids.tolist(), moco.queue_ids.tolist()))
        return real_moco(cfg, moco, q, k, ids, distributed)

    monkeypatch.setattr(methods_mod, "contrastive_loss", simclr_spy)
    monkeypatch.setattr(methods_mod, "moco_loss", moco_spy)
    assert pretrain_main([*TINY, f"method={method}", "loss.name=false", *extra]) == 0
    run = list_runs(roots)[0]
    n_tiles = json.loads((run.path / "data.json").read_text())["tiles"]
    assert n_tiles == 24  # 30 synthetic tiles minus 3 validation and 3 test tiles
    order = BatchOrder(n_tiles, 8, seed=4)
    steps = list(fq.moco_candidates(order, 7, 12) if method == "moco" else fq.simclr_candidates(order, 7))
    assert len(steps) == len(seen) == 7  # 3 steps per epoch: the rebuild crosses two epoch boundaries
    for sc, (ids, queue) in zip(steps, seen):
        if method == "moco":
            assert ids == sc.anchors.tolist()
            assert sorted(set(q for q in queue if q >= 0)) == sc.candidates.tolist()
        else:
            assert ids == sc.anchors.tolist() * 2  # two views of every tile, in the batch's order
    report = flag_report(run)
    for key in ("precision", "precision_ci", "base_rate", "selectors", "recall", "cross_scene_precision", "pairs"):
        assert key in report, key
    assert report["steps_rebuilt"] == 7 and set(report["selectors"]) == {"fnsd", "random", "colour", "encoder",
                                                                         "oracle"}
    assert report["pairs"] == sum(not r["mirrored"] for r in run.flagged_pairs())
    assert (run.path / CACHE_NAME).is_file() and flag_report(run) == report  # cached


# ------------------------------------------------------------------------------------------------ selectors
# Six tiles: classes 0 0 1 1 2 -, scenes 0 1 0 1 2 2. Colour puts tile 2 nearest to tile 0; the encoder tile 1.
CLASSES = np.array([0, 0, 1, 1, 2, NO_CLASS])
SCENES = np.array([0, 1, 0, 1, 2, 2])
COLOUR = np.array([[0.0, 0], [5, 5], [0.1, 0], [3, 3], [4, 4], [0, 0.2]])
ENCODER = np.array([[1.0, 0], [0.99, 0.14], [0, 1], [0, -1], [-1, 0], [-0.7, 0.7]])
ENCODER = ENCODER / np.linalg.norm(ENCODER, axis=1, keepdims=True)
FEATURES = {"colour": (COLOUR, "euclidean"), "encoder": (ENCODER, "cosine")}
BATCH = np.arange(6)


def score(pairs: pd.DataFrame, selection: str = "per_anchor", steps: list | None = None) -> fq.FlagQuality:
    steps = steps or [fq.StepCandidates(1, BATCH, BATCH)]
    return fq.score_flags(pairs, steps, CLASSES, SCENES, FEATURES, selection, base_rate=0.2)


def test_per_anchor_selectors_pick_for_the_same_anchor() -> None:
    q = score(frame(pair(1, 0, 3)))  # FNSD flagged tile 3 for anchor 0: another class
    s = q.selectors
    assert (s["fnsd"].hits, s["fnsd"].total) == (0, 1)
    assert (s["colour"].hits, s["colour"].total) == (0, 1)  # colour picks tile 2: class 1, wrong
    assert (s["encoder"].hits, s["encoder"].total) == (1, 1)  # the encoder picks tile 1: class 0, right
    assert s["random"].hits == pytest.approx(0.25) and s["random"].total == 1  # 1 of tiles 1-4 (5 has no class)
    assert (s["oracle"].hits, s["oracle"].total) == (1, 1)  # tile 1 was there to be found
    x = q.cross_scene  # picks among the other scenes' negatives: tiles 1, 3, 4 and 5 (no class)
    assert (x["fnsd"].hits, x["fnsd"].total) == (0, 1)  # scenes 0 and 1
    assert x["colour"].total == 0  # restricted to other scenes, colour picks tile 5: no class, not scored
    assert (x["encoder"].hits, x["encoder"].total) == (1, 1)
    assert x["random"].hits == pytest.approx(1 / 3) and x["random"].total == 1  # tile 1 of tiles 1, 3, 4
    assert (x["oracle"].hits, x["oracle"].total) == (1, 1)
    assert (q.recall.hits, q.recall.total) == (0, 2)  # the batch offered {0, 1} and {2, 3}
    assert q.excluded_unlabeled == 0 and q.tiles_without_class == 1


def test_recall_calibrated_same_scene_and_unlabeled_pairs() -> None:
    q = score(frame(pair(1, 0, 3, calibrated=False), pair(1, 2, 3), pair(1, 4, 5), pair(1, 3, 2, mirrored=True)))
    assert (q.precision.hits, q.precision.total) == (1, 2)  # (4, 5) has a tile without class: left out
    assert q.excluded_unlabeled == 1 and q.excluded_mirrored == 1
    assert (q.calibrated.hits, q.calibrated.total) == (1, 1)  # only (2, 3) was calibrated and scored
    assert (q.same_scene.hits, q.same_scene.total) == (0, 0)  # 2 and 3 are in scenes 0 and 1
    assert (q.recall.hits, q.recall.total) == (1, 2)
    assert q.to_json()["recall"] == 0.5


def test_global_selection_picks_the_closest_pairs_of_the_batch() -> None:
    q = score(frame(pair(1, 4, 3)), selection="global")  # FNSD: one pair, different classes
    s = q.selectors
    assert (s["fnsd"].hits, s["fnsd"].total) == (0, 1)
    assert (s["colour"].hits, s["colour"].total) == (0, 1)  # closest colour pair (0, 2): classes 0 and 1
    assert (s["encoder"].hits, s["encoder"].total) == (1, 1)  # closest encoder pair (0, 1): both class 0
    assert s["random"].hits == pytest.approx(2 / 10)  # 2 same-class of the 10 pairs of labeled tiles
    assert s["oracle"].hits == 1
    x = q.cross_scene
    assert x["colour"].total == 0  # closest cross-scene colour pair (0, 5): tile 5 has no class
    assert (x["encoder"].hits, x["encoder"].total) == (1, 1)  # (0, 1) is cross-scene too
    assert x["random"].hits == pytest.approx(2 / 8)  # 8 cross-scene labeled pairs, (0, 1) and (2, 3) same class


def test_moco_queue_holds_the_latest_keys_and_a_flag_outside_the_batch_is_refused() -> None:
    class Fixed:
        def batch(self, step: int) -> np.ndarray:
            return np.array([[0, 1], [2, 3], [4, 5], [0, 2]][step])

    steps = list(fq.moco_candidates(Fixed(), 4, queue_size=3))
    assert [s.candidates.tolist() for s in steps] == [[], [0, 1], [1, 2, 3], [3, 4, 5]]
    assert all(s.ordered for s in steps)
    with pytest.raises(ValueError, match="flagged tile 0 is not in the rebuilt batch"):
        fq.score_flags(frame(pair(4, 2, 0)), steps, CLASSES, SCENES, {}, "per_anchor", 0.2)


def test_colour_features_are_channel_means_and_stds() -> None:
    img = np.zeros((1, 3, 2, 2), np.uint8)
    img[0, 0] = [[0, 255], [0, 255]]
    f = fq.colour_features(img)
    assert f.shape == (1, 6) and f[0, 0] == pytest.approx(0.5) and f[0, 3] == pytest.approx(0.5)
    assert f[0, 1] == 0 and f[0, 4] == 0


# ------------------------------------------------------------------------------------------------ refusals
def _folder(root: Path, n: int = 3, mask_colour: tuple[int, int, int] | None = None) -> None:
    rng = np.random.default_rng(0)
    for k in range(n):
        img = rng.integers(0, 256, (64, 64, 3), np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / f"s{k}.png")
        if mask_colour is not None:
            (root / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((64, 64, 3), mask_colour, np.uint8)).save(root / "masks" / f"s{k}.png")


@pytest.mark.slow
def test_report_refuses_unlabeled_data_moved_data_and_absent_classes(roots: Path, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain"
    _folder(plain)
    args = [*TINY, "loss.name=false", "data.name=folder", f"data.root={plain}", "data.tile_size=32",
            "train.max_steps=2", "train.batch_size=4"]
    assert pretrain_main([*args, "name=unlabeled"]) == 0
    run = next(r for r in list_runs(roots) if r.id.endswith("unlabeled"))
    capsys.readouterr()  # what pretraining printed
    assert report_main([str(run.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no labels" in err and len(err.splitlines()) == 1

    labeled = tmp_path / "labeled"
    _folder(labeled, n=6, mask_colour=(9, 9, 9))  # a colour the class table does not know: all ignored
    table = tmp_path / "classes.yaml"
    table.write_text("classes:\n  - {name: a, color: [255, 0, 0]}\n  - {name: b, color: [0, 255, 0]}\n")
    with pytest.warns(UserWarning, match="not in the class table"):
        assert pretrain_main([*args, "name=noclass", f"data.root={labeled}", f"data.class_table={table}",
                              "data.val_fraction=0.2", "data.test_fraction=0.2"]) == 0
    run = next(r for r in list_runs(roots) if r.id.endswith("noclass"))
    with pytest.raises(FlagReportError, match="no tile .* has a labeled pixel"), pytest.warns(UserWarning):
        compute_report(run)

    moved = tmp_path / "moved"
    shutil.move(str(labeled), moved)
    capsys.readouterr()
    assert report_main([str(run.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be read" in err and "moved" in err and len(err.splitlines()) == 1
    assert report_main([str(tmp_path)]) == 2  # not a run folder
    assert "error:" in capsys.readouterr().err


def test_report_of_an_infonce_run_says_false_was_off(roots: Path, capsys) -> None:
    assert pretrain_main([*TINY, "loss.name=info_nce", "train.max_steps=1"]) == 0
    capsys.readouterr()
    assert report_main([str(list_runs(roots)[0].path), "--json"]) == 2
    assert "FALSE was off" in capsys.readouterr().err


def test_tile_without_labeled_pixels_has_no_class() -> None:
    from core.analysis.fn_scoring import base_rate, dominant_classes

    class Counts:
        has_labels = True
        counts = np.array([[3, 1], [0, 0], [1, 5], [2, 0]])

    dom = dominant_classes(Counts())
    assert dom.tolist() == [0, NO_CLASS, 1, 0]
    assert base_rate(dom) == pytest.approx(2 / 6)  # tiles 0, 2, 3 only: one same-class pair of three
