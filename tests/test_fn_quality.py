"""Flag quality: rebuilt batches equal the trainer's (FNSD, support and oracle runs), each reference selector on
fixtures with known answers, the report end to end for every detector (``detector`` key; the oracle's flags read
labels), two runs compared, and the report's refusals (no labels, data moved, no class present, no detector)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.analysis import fn_quality as fq
from core.analysis import fn_units
from core.analysis.fn_units import tile_pair_units
from core.analysis.tile_colours import colour_features
from core.ssl import methods as methods_mod
from core.ssl import pretrain as pretrain_mod
from core.ssl.batch_order import BatchOrder
from core.analysis.fn_compare import compare_flags
from core.analysis.proportions import margin, margin_text
from core.analysis.fn_report import (CACHE_NAME, FlagReportError, cached_report, compute_report, flag_report,
                                     report_lines, selector_label)
from core.analysis.fn_report_cli import main as report_main
from core.analysis.fn_scoring import NO_CLASS, load_pairs
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
def test_flagged_rows_amount_to_fewer_units() -> None:
    """A tile flagged from two views of its anchor is 2 rows of the loss but 1 pick of its step; with its reverse
    (flagged from the other side) it is 1 tile pair of global selection; a mirrored record is the same pair again; a
    unit is treated when any of its rows was."""
    rows = pd.DataFrame({"step": [1, 1, 1, 1, 2, 2], "anchor_index": [3, 3, 5, 5, 3, 4],
                         "candidate_index": [5, 5, 3, 3, 5, 6], "calibrated": [False, True] + [False] * 4,
                         "mirrored": [False] * 5 + [True]})
    picks = tile_pair_units(rows, ordered=True)
    assert picks[["step", "anchor_index", "candidate_index", "rows"]].values.tolist() == [[1, 3, 5, 2], [1, 5, 3, 2],
                                                                                          [2, 3, 5, 1]]
    assert picks["calibrated"].tolist() == [True, False, False]
    pairs = tile_pair_units(rows, ordered=False)
    assert pairs[["step", "anchor_index", "candidate_index", "rows"]].values.tolist() == [[1, 3, 5, 4], [2, 3, 5, 1]]
    assert tile_pair_units(rows.iloc[:0], ordered=True).columns.tolist() == ["step", "anchor_index", "candidate_index",
                                                                           "calibrated", "rows"]


def test_one_batch_rule_for_the_trainer_and_the_form() -> None:
    """The Pretrain form refused batch 43 on 40 tiles that four ranks run, and let two ranks take a batch of 3."""
    from core.ssl.batch_order import batch_problem

    assert batch_problem(40, 43, world=4) is None  # 10 a rank, one step an epoch
    assert "larger than the data set (40 tiles)" in batch_problem(40, 43)
    assert "fewer than 2 per rank" in batch_problem(40, 3, world=2)
    assert batch_problem(41, 41) is None and "give at most 40" in batch_problem(41, 44, world=4)


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


@pytest.mark.parametrize("method, extra", [
    ("simclr", ["loss.selection=per_anchor"]),
    ("moco", ["model.queue_size=12", "loss.selection=per_anchor"]),
    pytest.param("simclr", ["loss.detector=support", "loss.treatment=eliminate"], marks=pytest.mark.slow),
    pytest.param("simclr", ["loss.detector=oracle", "loss.treatment=attract"], marks=pytest.mark.slow),
], ids=["simclr-fnsd", "moco-fnsd", "simclr-support", "simclr-oracle"])
def test_rebuilt_batches_equal_the_trainers(roots: Path, monkeypatch: pytest.MonkeyPatch, method: str,
                                            extra: list[str]) -> None:
    seen: list[tuple[list[int], list[int] | None]] = []
    views: list[list] = [[]]  # the training views of every step, per run (a support run draws more from its own)
    real_simclr, real_moco = methods_mod.contrastive_loss, methods_mod.moco_loss
    real_views = pretrain_mod.Trainer.views

    def simclr_spy(cfg, z, ids, distributed, hints=None):
        seen.append((ids.tolist(), None))
        return real_simclr(cfg, z, ids, distributed, hints)

    def moco_spy(cfg, moco, q, k, ids, distributed, hints=None):
        seen.append((ids.tolist(), moco.queue_ids.tolist()))
        return real_moco(cfg, moco, q, k, ids, distributed, hints)

    def views_spy(self, step):
        out = real_views(self, step)
        views[-1].append(out[0].clone())
        return out

    monkeypatch.setattr(methods_mod, "contrastive_loss", simclr_spy)
    monkeypatch.setattr(methods_mod, "moco_loss", moco_spy)
    monkeypatch.setattr(pretrain_mod.Trainer, "views", views_spy)
    assert pretrain_main([*TINY, f"method={method}", "loss.name=false", *extra]) == 0
    run = list_runs(roots)[0]
    detector = run.config()["loss"].get("detector", "fnsd")
    if detector == "support":  # the support views come from a generator of their own: the training views of every
        views.append([])       # step are those of an FNSD run with the seed
        assert pretrain_main([*TINY, f"method={method}", "loss.name=false", "name=plain", "train.max_steps=3"]) == 0
        assert len(views[0]) == 7 and len(views[1]) == 3  # views depend on (seed, step) only: 3 steps say it
        assert all(torch.equal(a, b) for a, b in zip(*views))
        seen = seen[:7]
    n_tiles = json.loads((run.path / "data.json").read_text())["tiles"]
    assert n_tiles == 24  # 30 synthetic tiles minus 3 validation and 3 test tiles
    order = BatchOrder(n_tiles, 8, seed=4)
    steps = list(fn_units.moco_candidates(order, 7, 12) if method == "moco" else fn_units.simclr_candidates(order, 7))
    assert len(steps) == len(seen) == 7  # 3 steps per epoch: the rebuild crosses two epoch boundaries
    for sc, (ids, queue) in zip(steps, seen):
        if method == "moco":
            assert ids == sc.anchors.tolist()
            assert sorted(set(q for q in queue if q >= 0)) == sc.candidates.tolist()
        else:
            assert ids == sc.anchors.tolist() * 2  # two views of every tile, in the batch's order
    report = flag_report(run)
    for key in ("precision", "precision_ci", "base_rate", "selectors", "recall", "cross_scene_precision", "pairs",
                "detector"):
        assert key in report, key
    assert report["steps_rebuilt"] == 7 and set(report["selectors"]) == {"flags", "random", "colour", "encoder",
                                                                         "oracle"}
    ordered = report["selection"] != "global" or method == "moco"
    assert report["units_flagged"] == len(tile_pair_units(pd.DataFrame(run.flagged_pairs()), ordered))
    assert report["pairs"] == report["units_flagged"] - report["excluded_unlabeled"] > 0
    assert report["detector"]["name"] == detector and report["detector"]["uses_labels"] == (detector == "oracle")
    assert report["selection"] == ("per_anchor" if detector != "fnsd" else run.config()["loss"]["selection"])
    if detector == "oracle":  # same dominant class by construction: the ceiling, and the report says so
        assert report["precision"] == 1.0 and report["recall"] == 1.0
        assert any("reads the labels" in n for n in report["notes"])
    assert (run.path / CACHE_NAME).is_file() and flag_report(run) == report  # cached
    light = flag_report(run, use_encoder=False)  # fn-report --no-encoder: kept beside the full report, not over it
    assert "encoder" not in light["selectors"]
    assert cached_report(run) == report and cached_report(run, use_encoder=False) == light
    if method == "simclr" and detector == "fnsd":  # read while training: up to its last logged step, said so
        for name in ("metrics.jsonl", "fns.jsonl"):  # the records of steps 6 and 7 still on the device
            records = [json.loads(line) for line in (run.path / name).read_text().splitlines()]
            (run.path / name).write_text("".join(json.dumps(r) + "\n" for r in records if r.get("step", 0) <= 5))
        run.write_status(state="running", pid=os.getpid(), step=7)  # alive: this process
        live = flag_report(run)  # not the cached report of the ended run
        assert live["steps_rebuilt"] == 5 and live["live"], live["steps_rebuilt"]
        assert any(n.startswith("the run is still training (step 7): scored up to step 5") for n in live["notes"])
        assert selector_label("encoder", live) == "encoder nearest (step 7 encoder)"  # its checkpoint, not a final


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
    steps = steps or [fn_units.StepCandidates(1, BATCH, BATCH)]
    return fq.score_flags(pairs, steps, CLASSES, SCENES, FEATURES, selection, base_rate=0.2)


def test_per_anchor_selectors_pick_for_the_same_anchor() -> None:
    q = score(frame(pair(1, 0, 3)))  # FNSD flagged tile 3 for anchor 0: another class
    s = q.selectors
    assert (s["flags"].hits, s["flags"].total) == (0, 1)
    assert (s["colour"].hits, s["colour"].total) == (0, 1)  # colour picks tile 2: class 1, wrong
    assert (s["encoder"].hits, s["encoder"].total) == (1, 1)  # the encoder picks tile 1: class 0, right
    assert s["random"].hits == pytest.approx(0.25) and s["random"].total == 1  # 1 of tiles 1-4 (5 has no class)
    assert (s["oracle"].hits, s["oracle"].total) == (1, 1)  # tile 1 was there to be found
    x = q.cross_scene  # picks among the other scenes' negatives: tiles 1, 3, 4 and 5 (no class)
    assert (x["flags"].hits, x["flags"].total) == (0, 1)  # scenes 0 and 1
    assert x["colour"].total == 0  # restricted to other scenes, colour picks tile 5: no class, not scored
    assert (x["encoder"].hits, x["encoder"].total) == (1, 1)
    assert x["random"].hits == pytest.approx(1 / 3) and x["random"].total == 1  # tile 1 of tiles 1, 3, 4
    assert (x["oracle"].hits, x["oracle"].total) == (1, 1)
    assert (q.recall.hits, q.recall.total) == (0, 2)  # the batch offered {0, 1} and {2, 3}
    assert q.excluded_unlabeled == 0 and q.tiles_without_class == 1


def test_a_pick_counts_once_per_step_whatever_the_views_and_the_oracle_stays_the_ceiling() -> None:
    """Anchor 0 flagged tile 4 from both views and tile 4 flagged 0 back (both wrong), anchor 2 flagged 3 (right): 4
    rows of the loss, 3 picks. Every selector picks once for anchors 0, 4 and 2, and the flags never beat the oracle,
    which could have been right for all three."""
    q = score(frame(pair(1, 0, 4), pair(1, 0, 4, view=1), pair(1, 4, 0), pair(1, 2, 3)))
    s = q.selectors
    assert (s["flags"].hits, s["flags"].total) == (1, 3) and q.units_flagged == 3 and q.pairs_flagged == 4
    assert q.unit == "pick" and q.to_json()["units_flagged"] == 3
    assert (s["colour"].hits, s["colour"].total) == (0, 3)  # 0 -> 2, 4 -> 3, 2 -> 0: all wrong
    assert (s["encoder"].hits, s["encoder"].total) == (1, 1)  # 0 -> 1 right; 4 and 2 pick tile 5: no class
    assert (s["oracle"].hits, s["oracle"].total) == (2, 3)  # tile 4 (class 2) has no same-class negative
    assert s["random"].total == 3 and s["random"].hits == pytest.approx(0.25 + 0 + 0.25)
    assert s["flags"].value <= s["oracle"].value


def test_oracle_finds_no_more_same_class_negatives_than_the_batch_holds() -> None:
    """Anchor 0 flagged three tiles; the batch holds one other tile of its class: the oracle can be right once."""
    q = score(frame(pair(1, 0, 1), pair(1, 0, 2), pair(1, 0, 3)))
    assert (q.selectors["flags"].hits, q.selectors["flags"].total) == (1, 3)
    assert q.selectors["oracle"].hits == pytest.approx(1) and q.selectors["oracle"].total == 3


def test_a_flag_of_a_tile_without_class_sets_no_selector_pick() -> None:
    """Anchor 4's only flag is tile 5, which has no class: no selector picks for anchor 4, in either selection."""
    for selection in ("per_anchor", "global"):
        q = score(frame(pair(1, 0, 1), pair(1, 4, 5)), selection=selection)
        assert {k: v.total for k, v in q.selectors.items()} == dict.fromkeys(fq.SELECTORS, 1), selection
        assert q.excluded_unlabeled == 1


def test_moco_query_queue_picks_are_ordered_and_cross_scene_totals_follow_the_anchors() -> None:
    """MoCo: 0 -> 1 and 1 -> 0 are two picks (query against queue key); an anchor whose negatives are all of its
    own scene adds nothing to the cross-scene totals."""
    steps = [fn_units.StepCandidates(1, np.array([0, 1, 2]), np.array([0, 1, 2, 4]), ordered=True)]
    q = score(frame(pair(1, 0, 1), pair(1, 1, 0)), steps=steps)
    assert (q.selectors["flags"].hits, q.selectors["flags"].total) == (2, 2)
    g = score(frame(pair(1, 0, 1), pair(1, 1, 0)), selection="global", steps=steps)
    assert g.unit == "pick" and g.selectors["flags"].total == 2 and g.selectors["random"].total == 2
    one_scene = [fn_units.StepCandidates(1, np.array([0, 2]), np.array([0, 2]))]  # tiles 0 and 2: scene 0
    x = score(frame(pair(1, 0, 2)), steps=one_scene).cross_scene
    assert x["random"].total == 0 and x["oracle"].total == 0


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
    assert (s["flags"].hits, s["flags"].total) == (0, 1)
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

    steps = list(fn_units.moco_candidates(Fixed(), 4, queue_size=3))
    assert [s.candidates.tolist() for s in steps] == [[], [0, 1], [1, 2, 3], [3, 4, 5]]
    assert all(s.ordered for s in steps)
    with pytest.raises(ValueError, match="flagged tile 0 is not in the rebuilt batch"):
        fq.score_flags(frame(pair(4, 2, 0)), steps, CLASSES, SCENES, {}, "per_anchor", 0.2)


def test_colour_features_are_channel_means_and_stds() -> None:
    img = np.zeros((1, 3, 2, 2), np.uint8)
    img[0, 0] = [[0, 255], [0, 255]]
    f = colour_features(img)
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
def test_report_summarises_unlabeled_runs_and_refuses_moved_data_and_absent_classes(roots: Path, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain"
    _folder(plain)
    args = [*TINY, "loss.name=false", "data.name=folder", f"data.root={plain}", "data.tile_size=32",
            "train.max_steps=2", "train.batch_size=4"]
    assert pretrain_main([*args, "name=unlabeled"]) == 0
    run = next(r for r in list_runs(roots) if r.id.endswith("unlabeled"))
    with pytest.raises(FlagReportError, match="has no labels, so its flags cannot be scored"):
        compute_report(run)
    capsys.readouterr()  # what pretraining printed
    # the command summarises what the detector did instead of refusing: no quality figure, and it says why
    assert report_main([str(run.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    pairs = load_pairs(run)
    assert out[0] == (f"run {run.id}: simclr on folder, FALSE (detector fnsd, treatment fncc): {len(pairs)} flagged "
                      f"pairs over {pairs['step'].nunique()} of 2 steps")
    assert out[1].startswith("NOTE: its data set has no labels") and "precision" not in "\n".join(out[2:])
    assert f"median {pairs['cos'].median():.3f}" in "\n".join(out)
    assert report_main([str(run.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labeled"] is False and summary["treatment"]["treated"] == int(pairs["calibrated"].sum())

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


@pytest.mark.parametrize("loss, says", [("info_nce", "FALSE was off"), ("dcl", "DCL, which detects no false negatives")])
def test_report_of_a_run_without_a_detector_says_so(roots: Path, capsys, loss: str, says: str) -> None:
    assert pretrain_main([*TINY, f"loss.name={loss}", "train.max_steps=1"]) == 0
    capsys.readouterr()
    assert report_main([str(list_runs(roots)[0].path), "--json"]) == 2
    assert says in capsys.readouterr().err


def test_report_of_a_fine_tuning_or_probe_run_names_its_kind(tmp_path: Path, capsys) -> None:
    """It said "model.arch: unknown setting", as if a setting were wrong, not the kind of run."""
    from core.store.runs import create_run

    for kind, words in (("finetune", "fine-tuning"), ("probe", "linear probe")):
        run = create_run(f"a-{kind}", "model:\n  arch: unet\n", tmp_path / "runs", kind=kind, state="completed")
        assert report_main([str(run.path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {run.id} is a {words} run; fn-report reads pretraining runs (their flags) and "
                       "comparisons (every method's)")


# ------------------------------------------------------------------------------------------------ every detector
@pytest.mark.slow
def test_every_detector_is_scored_from_the_shell_and_two_runs_compare_on_shared_batches(roots: Path, capsys) -> None:
    """A nearest and an oracle run of the same data and seed: ``--json`` gives every key and ``detector``; the text
    names the detector (never FNSD) and says the oracle reads labels; side by side they share their batches and are
    scored on the steps both trained."""
    assert pretrain_main([*TINY, "loss.name=false", "loss.detector=nearest", "loss.treatment=eliminate",
                          "train.max_steps=3", "name=near"]) == 0
    assert pretrain_main([*TINY, "loss.name=false", "loss.detector=oracle", "loss.treatment=fncc",
                          "train.max_steps=2", "name=oracle", "data.image_size=48"]) == 0  # other views, same tiles
    near, oracle = (next(r for r in list_runs(roots) if r.id.endswith(n)) for n in ("near", "oracle"))
    capsys.readouterr()
    reports = {}
    for run, detector in ((near, "nearest"), (oracle, "oracle")):
        assert report_main([str(run.path), "--json"]) == 0
        report = reports[detector] = json.loads(capsys.readouterr().out)
        for key in ("precision", "selectors", "recall", "cross_scene_precision", "detector", "base_rate", "pairs"):
            assert key in report, key
        assert report["detector"]["name"] == detector and report["detector"]["uses_labels"] == (detector == "oracle")
        assert set(report["selectors"]) == {"flags", "random", "colour", "encoder", "oracle"}
        assert report["selection"] == "per_anchor"  # nearest and the oracle pick per anchor, whatever loss.selection
        assert report_main([str(run.path)]) == 0
        text = capsys.readouterr().out
        assert f"{detector} flags" in text and "FNSD" not in text
        # read against each reference selector by the interval of the difference, in the text and the JSON alike
        assert set(report["margins"]) == {"random", "colour", "encoder"}
        for name, span in report["margins"].items():
            assert span == {**dict(zip(("difference", "low", "high"), margin(report, name))),
                            "within_noise": span["low"] <= 0 <= span["high"]}
            assert f"flags vs {name}" in text and margin_text(margin(report, name)) in text
        assert set(report["counted_in"]) >= {"pairs_flagged", "units_flagged", "pairs"}  # each count's unit named
        del report["margins"], report["counted_in"]  # the CLI's JSON adds them to the kept report, compared below
    assert reports["nearest"]["detector"]["label"] == "nearest + eliminate"
    assert reports["oracle"]["detector"]["label"] == "oracle (uses labels) + fncc"
    assert reports["oracle"]["precision"] == 1.0 and "reads the labels" in " ".join(reports["oracle"]["notes"])
    assert "NOTE: the oracle detector reads the labels" in report_lines(reports["oracle"])[1]
    assert "precision: the share of a selector's picks whose two tiles have the same dominant class" in \
        report_lines(reports["oracle"])[2]
    assert reports["oracle"]["pairs_treated"] >= reports["oracle"]["calibrated"]["pairs"]
    gate_shut = {**reports["oracle"], "calibrated": {"pairs": 0}, "pairs_flagged": 10, "pairs_treated": 0}
    assert "2 treated pairs holds a tile without" in "\n".join(report_lines({**gate_shut, "pairs_treated": 2}))
    assert "none: FNCC's gate opened for none of the 10 flags (the run trained as its base method)" in \
        "\n".join(report_lines(gate_shut))

    side = compare_flags(near, oracle)
    assert side.same_batches and side.differences == [] and side.shared_steps == 2 and side.up_to == (2, None)
    assert side.reports[0] is None and side.reports[1] == reports["oracle"]  # nearest's first 2 steps: not yet
    side = compare_flags(near, oracle, compute=True)
    assert side.complete and side.reports[0]["steps_rebuilt"] == 2 and side.reports[0]["up_to_step"] == 2
    assert cached_report(near) == reports["nearest"]  # the whole run's report is kept beside the partial one
    table = side.table()
    assert list(table.columns) == ["A: nearest + eliminate", "B: oracle (uses labels) + fncc"]
    assert {"recall (same-class pairs offered)", "encoder nearest (for its anchors)", "oracle ceiling (for its anchors)",
            "cross-scene precision of the flags"} <= set(table.index)
    assert table.loc["steps scored"].tolist() == ["2", "2"]
    from core.analysis.proportions import recall_text  # in percent as the single run's report, never "0.0022"
    assert table.loc["recall (same-class pairs offered)"].iloc[0].startswith(recall_text(side.reports[0]) + " (")
    words = side.summary()
    assert "On the same batches (steps 1–2)" in words and "`nearest` flagged" in words and "B's detector is the oracle" \
        in words
    assert set(side.bars()["run"]) == set(side.names())


def _report(precision: float, random: float, colour: float) -> dict:
    def entry(p: float) -> dict:
        return {"precision": p, "ci": [p - 0.05, p + 0.05], "pairs": 40, "hits": p * 40}

    return {"selectors": {"flags": entry(precision), "random": entry(random), "colour": entry(colour)},
            "cross_scene": {}, "recall": 0.01, "recall_detail": {"hits": 4, "pairs": 400}, "calibrated": entry(0.5),
            "base_rate": 0.3, "steps_rebuilt": 10, "detector": {"name": "fnsd", "treatment": "fncc", "label": "FALSE",
                                                                "uses_labels": False, "flags": "FNSD flags"}}


def test_runs_of_one_strategy_are_told_apart_by_the_loss_settings_that_differ() -> None:
    from core.analysis.fn_compare import told_apart

    a, b = {"name": "false", "threshold": 0.5, "alpha": 1.0}, {"name": "false", "threshold": 0.9, "alpha": 1.0}
    assert told_apart(("FALSE", "FALSE"), (a, b), ("r1", "r2")) == ("FALSE (threshold 0.5)", "FALSE (threshold 0.9)")
    assert told_apart(("FALSE", "FALSE"), (a, dict(a)), ("r1", "r2")) == ("FALSE (r1)", "FALSE (r2)")
    assert told_apart(("FALSE", "DCL"), (a, b), ("r1", "r2")) == ("FALSE", "DCL")


def test_runs_on_other_batches_are_compared_only_against_their_own_selectors() -> None:
    from core.analysis.fn_compare import FlagComparison, batch_differences

    base = {"data": {"name": "synthetic", "num_tiles": 48}, "tiles": 38, "seed": 0, "batch size": 16, "ranks": 1,
            "method": "simclr", "queue": None}
    assert batch_differences(base, dict(base)) == []
    other = dict(base, seed=1, data={"name": "synthetic", "num_tiles": 30})
    assert batch_differences(base, other) == ["data.num_tiles 48 vs 30", "seed 0 vs 1"]
    side = FlagComparison(runs=("a", "b"), labels=("FALSE", "FALSE"), same_batches=False,
                          differences=batch_differences(base, other), last_steps=(10, 10), up_to=(None, None),
                          reports=(_report(0.6, 0.3, 0.5), _report(0.7, 0.5, 0.8)), recall_comparable=True)
    table = side.table()
    # random's precision is an exact expectation: the interval is the flags' own, shifted
    assert table.loc["margin over its random", "A: FALSE"] == "+30 points (difference +25 to +35: flags better)"
    assert table.loc["margin over its colour nearest", "B: FALSE"] == "-10 points (difference -17 to -3: flags worse)"
    assert table.loc["random (for its anchors)", "A: FALSE"] == "0.300 (expected) n=40"
    assert "encoder nearest (for its anchors)" not in table.index  # only each run against its own selectors
    assert "cross-scene precision of the flags" not in table.index
    words = side.summary()
    assert "did not train on the same batches (the settings above differ)" in words  # listed once, in the warning
    # in the page verdict's words (the review read "-57 points over" beside its "57 points below")
    assert ("A 60%, 30 points above its random negatives (30%; difference +25 to +35) and 10 points above its "
            "colour-nearest picks (50%; difference +3 to +17)") in words
    assert "B 70%, 20 points above its random negatives (50%; difference +15 to +25) and 10 points below its " \
           "colour-nearest picks (80%; difference -17 to -3)" in words
    side.recall_comparable = False  # e.g. other batch sizes: recall is a share of other numbers of pairs
    assert "recall (same-class pairs offered)" not in side.table().index
    # what the treatment acted on: FNCC's passed flags, or none said as none (it read "n/a (FNCC: its gate opened)")
    assert table.loc["flags the treatment applied to", "A: FALSE"] == \
        "0.500 [0.450, 0.550] n=40 (FNCC: the flags that passed its gate)"
    closed = dict(_report(0.6, 0.3, 0.5), calibrated={"pairs": 0})
    side.reports = (closed, _report(0.7, 0.5, 0.8) | {"detector": {**closed["detector"], "treatment": "eliminate"}})
    row = side.table().loc["flags the treatment applied to"]
    assert row["A: FALSE"] == "none: FNCC's gate never opened" and row["B: FALSE"].endswith("(eliminate: every flag)")


def test_tile_without_labeled_pixels_has_no_class() -> None:
    from core.analysis.fn_scoring import base_rate, dominant_classes

    class Counts:
        has_labels = True
        counts = np.array([[3, 1], [0, 0], [1, 5], [2, 0]])

    dom = dominant_classes(Counts())
    assert dom.tolist() == [0, NO_CLASS, 1, 0]
    assert base_rate(dom) == pytest.approx(2 / 6)  # tiles 0, 2, 3 only: one same-class pair of three


@pytest.mark.slow
def test_report_on_a_labeled_scene_set_gives_every_key_with_cross_scene_figures(roots: Path, tmp_path: Path,
                                                                              capsys) -> None:
    """A folder in DeepGlobe's layout (the real sets' loader: scenes, colour masks, a class table of its own), not the
    synthetic set: ``--json`` gives every key of issue 27, and pairs across scenes are told from pairs within one."""
    from tests.test_baseline import deepglobe_folder

    root = deepglobe_folder(tmp_path / "dg", scenes=4, size=96)
    assert pretrain_main([*TINY, "data.name=deepglobe", f"data.root={root}", "data.tile_size=32",
                          "data.val_fraction=0.25", "data.test_fraction=0.25", "loss.name=false",
                          "loss.detector=nearest", "loss.treatment=eliminate", "train.max_steps=3"]) == 0
    (run,) = list_runs(roots)
    capsys.readouterr()
    assert report_main([str(run.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("precision", "selectors", "recall", "cross_scene_precision", "detector"):
        assert key in report, key
    assert report["detector"]["name"] == "nearest" and report["detector"]["uses_labels"] is False
    assert 0.0 <= report["precision"] <= 1.0 and report["pairs"] > 0
    assert set(report["selectors"]) == {"flags", "random", "colour", "encoder", "oracle"}
    assert isinstance(report["cross_scene_precision"], float) and 0.0 <= report["cross_scene_precision"] <= 1.0


def test_the_encoder_selector_of_a_killed_run_names_its_checkpoints_step() -> None:
    """A run killed at step 9 with its last checkpoint at step 5: the table said "final encoder"."""
    from core.analysis.fn_report import selector_label

    assert selector_label("encoder", {"encoder_step": 5, "step": 9}) == "encoder nearest (step 5 encoder)"
    assert selector_label("encoder", {"encoder_step": 9, "step": 9}) == "encoder nearest (final encoder)"
    assert selector_label("encoder", {"step": 9}) == "encoder nearest (final encoder)"  # a report made before


def test_two_runs_flags_on_shared_batches_differ_by_the_interval_of_their_difference() -> None:
    """The numbers audit: 14 of 40 flags right against 26 of 40 was called level because the two Wilson intervals
    touched; the difference's own interval (+8 to +48 points) excludes 0."""
    from core.analysis.fn_compare import _rel
    from core.analysis.fn_quality import Proportion

    a, b = Proportion(14, 40).to_json(), Proportion(26, 40).to_json()
    assert a["ci"][1] > b["ci"][0]  # the intervals overlap
    assert _rel(a, b) == "higher by 30 points (difference +8 to +48 points)"
    assert _rel(b, a) == "lower by 30 points (difference -48 to -8 points)"
    assert _rel(a, Proportion(16, 40).to_json()).startswith("level (difference")


def test_random_and_the_oracle_are_exact_expectations_not_samples() -> None:
    """70 % of 20 flags against random's exact 45 % was said level: a Wilson interval drawn around an expectation
    widened the difference. The flags' own interval, shifted, is the difference's."""
    from core.analysis.fn_quality import Proportion, entry_ci, entry_text
    from core.analysis.stats import share_relation

    random = Proportion(9.0, 20, expected=True)
    assert random.ci == (0.45, 0.45) and random.text() == "0.450 (expected) of 20"
    flags = Proportion(14, 20)
    said = share_relation(flags.value, flags.ci, random.value, entry_ci("random", random.to_json()), "random")
    assert said.startswith("25 points above random") and "within noise" not in said
    stored = {"precision": 0.45, "ci": [0.26, 0.66], "pairs": 20}  # a report scored before: Wilson bounds kept
    assert entry_ci("random", stored) == (0.45, 0.45) and entry_ci("colour", stored) == (0.26, 0.66)
    assert entry_text("oracle", stored) == "0.450 (expected) n=20"
    assert entry_text("colour", stored) == "0.450 [0.260, 0.660] n=20"


def test_a_tile_pair_flagged_again_is_one_fact_in_the_interval() -> None:
    """The numbers audit: 10 tile pairs flagged in 20 steps each, half of them same-class, read 0.50 [0.43, 0.57]
    as if 200 independent flags; whether two tiles share a class is one fact per pair."""
    from core.analysis.fn_quality import Tally, entry_text

    tally = Tally()
    for step in range(20):
        for pair in range(10):
            tally.add_pick(2 * pair + 1, 2 * pair, float(pair % 2), "overall")  # picked from either side alike
    p = tally.overall()
    assert (p.total, p.distinct, p.value) == (200, 10, 0.5)
    lo, hi = p.ci
    assert lo == pytest.approx(0.237, abs=1e-3) and hi == pytest.approx(0.763, abs=1e-3)  # Wilson over 10 pairs
    assert p.text() == "0.500 [0.237, 0.763] of 200 (10 distinct tile pairs, effective n 10.0)"
    assert entry_text("flags", p.to_json()) == "0.500 [0.237, 0.763] n=200 (10 distinct tile pairs, effective n 10.0)"
    uneven = Tally()  # the diff review: one right pair flagged at 30 steps beside 10 wrong ones flagged once
    for step in range(30):
        uneven.add_pick(0, 1, 1.0, "overall")
    for pair in range(10):
        uneven.add_pick(10 + pair, 30 + pair, 0.0, "overall")
    q = uneven.overall()
    assert q.value == 0.75 and q.effective == pytest.approx(1600 / 910)  # Kish: worth 1.8 pairs, not 11
    assert q.ci[0] < 0.25 and q.ci[1] > 0.95
    once = Tally()
    for pair in range(10):
        once.add_pick(2 * pair, 2 * pair + 1, float(pair % 2), "overall")
    assert once.overall().ci == p.ci and "distinct" not in once.overall().text()


def test_a_setting_that_is_unset_reads_none_not_pythons_none() -> None:
    from core.analysis.fn_compare import batch_differences

    base = {"data": {"name": "deepglobe", "root": "../shared/data/deepglobe_landcover"}, "tiles": None, "seed": 0,
            "batch size": 16, "ranks": 1, "method": "simclr", "queue": None}
    other = dict(base, data={"name": "synthetic", "root": None})
    assert batch_differences(base, other) == ["data.name deepglobe vs synthetic",
                                              "data.root ../shared/data/deepglobe_landcover vs none"]


def test_recall_is_a_percentage_with_three_significant_digits() -> None:
    """Recall is often a tenth of a percent: "0.0012" hid it behind zeros; "n/a" where no same-class pair came."""
    from core.analysis.fn_quality import recall_text

    assert recall_text({"recall": 0.0012345}) == "0.123 %"
    assert recall_text({"recall": 0.5}) == "50 %"
    assert recall_text({"recall": 1.0}) == "100 %"
    assert recall_text({"recall": None}) == "n/a"
    assert recall_text({"recall": 3e-7}) == "0.00003 %"  # a few hits among millions of pairs: no "3e-05 %"
    assert recall_text({"recall": 0.0}) == "0 %" and recall_text({"recall": 0.12345}) == "12.3 %"
