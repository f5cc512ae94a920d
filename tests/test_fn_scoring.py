"""Flagged pairs: loading, filters, counts, dominant classes, base rate and precision against hand-made cases."""
from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.analysis import fn_scoring as fn
from core.analysis.flag_precision import precision_over_training
from core.analysis.pair_grid import class_names, pair_tiles
from core.config import ConfigError, validate_config
from core.data import SyntheticAerial
from core.store.runs import create_run

CONFIG = "method: simclr\nloss:\n  name: false\ndata:\n  name: synthetic\n  num_tiles: 8\n  tile_size: 16\n"


def pair(step: int, a: int, c: int, calibrated: bool = False, **extra) -> dict:
    rec = {"step": step, "anchor_index": a, "anchor_view": 0, "candidate_index": c, "candidate_view": 1,
           "distance": 0.01 * step, "cos": 0.5, "cos_pos": 0.9, "calibrated": calibrated, "mirrored": False}
    return {**rec, **extra}


def make_run(tmp_path: Path, records: list[dict] | None, config: str = CONFIG, torn: bool = False):
    run = create_run("fn", config, tmp_path / "runs", kind="pretrain", state="completed")
    if records is not None:
        text = "".join(json.dumps(r) + "\n" for r in records) + ('{"step": 9, "anch' if torn else "")
        (run.path / "fns.jsonl").write_text(text)
    return run


class FakeLabelled:
    """A labelled data set of hand-made label maps (what dominant_classes reads), with tiles to fetch."""

    has_labels = True
    classes = (("a", (0, 0, 0)), ("b", (0, 0, 0)), ("c", (0, 0, 0)))

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.cache_dir = Path(f"/fake/{uuid.uuid4()}")  # a fresh key for the per-dataset cache
        self.meta = {"created": 0}

    def __len__(self) -> int:
        return len(self.labels)

    def get_images(self, indices) -> torch.Tensor:
        idx = torch.tensor(np.array(indices, np.int64))
        return idx.view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.uint8).clone()  # tile i is filled with i


def labelled(dominant: list[int], size: int = 4) -> FakeLabelled:
    """Tiles whose dominant class is given: 3/4 of the pixels that class, the rest class 2 (or 0)."""
    maps = np.zeros((len(dominant), size, size), np.uint8)
    for i, c in enumerate(dominant):
        maps[i] = c
        maps[i, 0] = 2 if c != 2 else 0
    return FakeLabelled(maps)


# ------------------------------------------------------------------------------------------------ loading
def test_load_pairs_types_moco_none_and_torn_line(tmp_path: Path) -> None:
    run = make_run(tmp_path, [pair(1, 0, 3, True), pair(2, 4, 5, candidate_view=None)], torn=True)
    pairs = fn.load_pairs(run)
    assert len(pairs) == 2 and list(pairs.columns) == list(fn.PAIR_COLUMNS)
    assert pairs["candidate_view"].isna().tolist() == [False, True]
    assert pairs["calibrated"].tolist() == [True, False] and pairs["step"].dtype == np.int64


def test_load_pairs_without_file_is_empty(tmp_path: Path) -> None:
    pairs = fn.load_pairs(make_run(tmp_path, None))
    assert pairs.empty and list(pairs.columns) == list(fn.PAIR_COLUMNS)


def test_filter_steps_calibrated_and_orders(tmp_path: Path) -> None:
    recs = [pair(s, s, s + 1, calibrated=s % 2 == 0, cos=c, distance=d)
            for s, c, d in [(1, 0.1, 0.5), (2, 0.9, 0.3), (3, 0.5, 0.1), (4, 0.7, 0.2)]]
    pairs = fn.load_pairs(make_run(tmp_path, recs))
    assert fn.filter_pairs(pairs, (2, 3))["step"].tolist() == [3, 2]  # distance ascending
    assert fn.filter_pairs(pairs, None, sort_by="cos")["step"].tolist() == [2, 4, 3, 1]
    assert fn.filter_pairs(pairs, (1, 4), calibrated_only=True, sort_by="step")["step"].tolist() == [2, 4]
    with pytest.raises(ValueError, match="sort_by"):
        fn.filter_pairs(pairs, sort_by="nope")


def test_flag_counts_fill_zero_steps_and_bin_long_runs(tmp_path: Path) -> None:
    recs = [pair(2, 0, 1, True), pair(2, 2, 3), pair(5, 0, 1)]
    pairs = fn.load_pairs(make_run(tmp_path, recs))
    counts = fn.flag_counts(pairs, last_step=6)
    assert counts["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert counts["flagged"].tolist() == [0, 2, 0, 0, 1, 0] and counts["calibrated"].tolist() == [0, 1, 0, 0, 0, 0]
    binned = fn.flag_counts(pairs, last_step=6, max_points=2)  # steps 1-3 and 4-6, per-step means
    assert binned["step"].tolist() == [3, 6]
    assert binned["flagged"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert fn.flag_counts(pairs.iloc[:0]).empty


def test_nothing_flagged_reasons(tmp_path: Path) -> None:
    off = make_run(tmp_path, None, CONFIG.replace("name: false", "name: info_nce"))
    assert "FALSE was off" in fn.nothing_flagged_reason(off, fn.run_config(off), fn.load_pairs(off))
    missing = make_run(tmp_path, None)
    assert "no fns.jsonl" in fn.nothing_flagged_reason(missing, fn.run_config(missing), fn.load_pairs(missing))
    empty = make_run(tmp_path, [])
    assert "flagged no pairs" in fn.nothing_flagged_reason(empty, fn.run_config(empty), fn.load_pairs(empty))
    some = make_run(tmp_path, [pair(1, 0, 1)])
    assert fn.nothing_flagged_reason(some, fn.run_config(some), fn.load_pairs(some)) is None


def test_unreadable_config_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    run = make_run(tmp_path, None, "method: [unclosed\n")
    with pytest.raises(ConfigError, match="missing or unreadable"):
        fn.run_config(run)


# ------------------------------------------------------------------------------------------------ labels
def test_dominant_classes_match_the_dataset_per_tile(tmp_path: Path) -> None:
    ds = SyntheticAerial(tmp_path, num_tiles=20, tile_size=16, seed=3, progress=False)
    dominant = fn.dominant_classes(ds)
    assert dominant.tolist() == [ds.dominant_class(i) for i in range(len(ds))]
    assert fn.dominant_classes(ds) is dominant  # cached per data set


def test_dominant_ties_go_low_and_ignore_values_count_for_none(monkeypatch) -> None:
    from core.data import dominant  # where the dominant classes are computed since b4c4363

    maps = np.array([[[1, 1, 0, 0]], [[255, 255, 255, 2]], [[2, 2, 1, 255]]], np.uint8)
    fake = FakeLabelled(maps)
    monkeypatch.setattr(dominant, "_LABEL_CHUNK", 2)  # several chunks, so the per-tile offsets are exercised
    assert fn.dominant_classes(fake).tolist() == [0, 2, 2]


def test_no_labels_no_dominant_and_no_precision() -> None:
    class Unlabelled:
        has_labels = False

    assert fn.dominant_classes(Unlabelled()) is None
    assert precision_over_training(pd.DataFrame(columns=fn.PAIR_COLUMNS), None) is None


def test_base_rate_equals_brute_force_over_all_pairs() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 7, 40):
        dominant = rng.integers(0, 4, n)
        same = [dominant[i] == dominant[j] for i, j in itertools.combinations(range(n), 2)]
        assert fn.base_rate(dominant) == pytest.approx(np.mean(same))
    assert np.isnan(fn.base_rate(np.array([1])))


def test_precision_per_bin_against_a_hand_computed_case() -> None:
    dominant = np.array([0, 0, 1, 1, 1, 2])  # tiles 0-1 class 0, 2-4 class 1, 5 class 2
    recs = [pair(1, 0, 1), pair(2, 0, 2), pair(3, 2, 3),  # bin 1 (steps 1-3): right, wrong, right
            pair(4, 5, 0), pair(5, 3, 4), pair(6, 1, 5),  # bin 2 (steps 4-6): wrong, right, wrong
            pair(6, 4, 4),  # a tile with itself: not scored
            pair(3, 2, 3, anchor_view=1),  # the same pick from the anchor's other view: counted once
            pair(1, 1, 0), pair(6, 5, 1)]  # the reverse picks: the same tile pairs of global selection
    pairs = pd.DataFrame(recs)
    picks = precision_over_training(pairs, dominant, bins=2)
    assert picks.by_bin["pairs"].tolist() == [4, 4] and picks.by_bin["correct"].tolist() == [3, 1]
    report = precision_over_training(pairs, dominant, bins=2, ordered=False)
    assert report.by_bin["step_start"].tolist() == [1, 4] and report.by_bin["step_end"].tolist() == [3, 6]
    assert report.by_bin["pairs"].tolist() == [3, 3] and report.by_bin["correct"].tolist() == [2, 1]
    assert report.by_bin["precision"].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert (report.pairs, report.correct) == (6, 3) and report.precision == pytest.approx(0.5)
    assert report.base_rate == pytest.approx((2 * 1 + 3 * 2) / (6 * 5))  # sum n_c (n_c - 1) / N (N - 1)
    assert report.lift == pytest.approx(0.5 / (8 / 30))
    low, high = report.by_bin["ci_low"], report.by_bin["ci_high"]
    assert ((low <= report.by_bin["precision"]) & (report.by_bin["precision"] <= high)).all()
    assert report.distinct == 6 and report.effective == 6  # six tile pairs, each flagged at one step


def test_a_pair_flagged_at_every_step_narrows_the_precision_interval_once() -> None:
    """The diff review: the page's first interval still counted a pair flagged at 20 steps as 20 facts."""
    dominant = np.array([0, 0, 1, 1])
    pairs = pd.DataFrame([pair(s, 0, 1) for s in range(1, 21)] + [pair(s, 2, 0) for s in range(1, 21)])
    report = precision_over_training(pairs, dominant, bins=1)
    assert (report.pairs, report.correct, report.distinct) == (40, 20, 2) and report.effective == pytest.approx(2)
    low, high = report.ci
    assert low < 0.1 and high > 0.9  # two facts, one right and one wrong: nearly nothing known
    (row,) = report.by_bin.to_dict("records")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_wilson_interval_known_value() -> None:
    low, high = fn.wilson_interval(np.array([5]), np.array([10]))
    assert (low[0], high[0]) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_pairs_naming_missing_tiles_are_refused() -> None:
    fake = labelled([0, 1, 2])
    pairs = pd.DataFrame([pair(1, 0, 7)])
    with pytest.raises(ValueError, match="names tile 7, but the data set has 3 tiles"):
        fn.same_class(pairs, fn.dominant_classes(fake))
    with pytest.raises(ValueError, match="names tile 7"):
        pair_tiles(fake, pairs)


def test_pair_tiles_fetch_anchor_and_candidate_images() -> None:
    fake = labelled([0, 1, 2, 0, 1])
    anchors, candidates = pair_tiles(fake, pd.DataFrame([pair(1, 4, 2), pair(2, 1, 3)]))
    assert anchors.shape == (2, 2, 2, 3) and anchors.dtype == np.uint8
    assert anchors[:, 0, 0, 0].tolist() == [4, 1] and candidates[:, 0, 0, 0].tolist() == [2, 3]


def test_real_run_config_validates(tmp_path: Path) -> None:
    cfg = fn.run_config(make_run(tmp_path, None))
    # a run made before data.pretrain_splits existed trained on every tile, and is read that way
    assert cfg == validate_config({"method": "simclr", "loss": {"name": "false"},
                                   "data": {"name": "synthetic", "num_tiles": 8, "tile_size": 16,
                                            "pretrain_splits": ["train", "val", "test"]}})
    assert validate_config({"data": {"name": "synthetic"}}).data.pretrain_splits == ["train"]  # new runs: train only


def test_class_names_of_every_kind_of_class_table() -> None:
    class Table:
        def __init__(self, classes):
            self.classes = classes

    assert class_names(Table([{"name": "urban_land", "color": [0, 255, 255]}])) == ["urban_land"]
    assert class_names(Table([("building", (0, 0, 255))])) == ["building"]
    assert class_names(Table(None)) == []


# ------------------------------------------------------------------------------------------------ the treatment
def counts(calibrated: dict[int, int], steps: int, flagged: int = 1) -> list[dict]:
    """Pair counts as ``Run.pair_counts`` gives them: every step, ``flagged`` flags each, some calibrated."""
    return [{"step": s, "flagged": flagged, "calibrated": calibrated.get(s, 0)} for s in range(1, steps + 1)]


SIMCLR_FALSE = {"method": "simclr", "loss": {"name": "false", "alpha": 0.9, "threshold": 0.9}}


def test_a_run_calibrated_once_in_40_steps_is_in_effect_its_base_method() -> None:
    effect = fn.treatment_effect(SIMCLR_FALSE, counts({7: 1}, 40), steps=40)
    assert (effect.steps, effect.steps_calibrated, effect.calibrated, effect.flagged) == (40, 1, 1, 40)
    assert effect.per_step == pytest.approx(0.025) and effect.share == pytest.approx(0.025)
    assert effect.negligible
    assert effect.verdict() == ("Calibration fired in 1 of 40 steps (0.03 calibrated pairs per step): this run is, "
                                "in effect, SimCLR.")
    assert "lower threshold" in effect.advice()  # 39 of 40 flags stopped at the gate
    assert effect.cell() == "≈ SimCLR: 1/40 steps, 0.03/step"


def test_a_run_that_calibrates_often_gets_figures_and_no_verdict() -> None:
    effect = fn.treatment_effect(SIMCLR_FALSE, counts({s: 2 for s in range(1, 41, 2)}, 40), steps=40)
    assert effect.steps_calibrated == 20 and effect.calibrated == 40 and effect.per_step == 1.0
    assert not effect.negligible and effect.verdict() is None and effect.advice() is None
    assert effect.figures() == "calibration fired in 20 of 40 steps (1.00 calibrated pair per step)"
    # a few steps with many pairs (per-anchor selection) are a real treatment, though rare
    burst = fn.treatment_effect(SIMCLR_FALSE, counts({3: 60, 9: 40}, 40, flagged=64), steps=40)
    assert burst.share == 0.05 and burst.per_step == 2.5 and not burst.negligible


def test_never_calibrated_says_why_and_names_the_base_method() -> None:
    moco = {"method": "moco", "loss": {"name": "false", "threshold": 0.8}}
    gate = fn.treatment_effect(moco, counts({}, 30), steps=30, top_cos_pos=0.62)
    assert gate.negligible and gate.verdict() == (
        "Calibration never fired in 30 steps (FNSD flagged 30 pairs, but no flagged anchor's positive cosine reached "
        "the threshold 0.80: the highest was 0.62): this run is, in effect, MoCo v2.")
    close = fn.treatment_effect(moco, counts({}, 30), steps=30, top_cos_pos=0.7959)  # "0.80 ... 0.80" read as met
    assert "reached the threshold 0.80: the highest was 0.796)" in close.figures()
    nothing = fn.treatment_effect(moco, counts({}, 30, flagged=0), steps=30)
    assert nothing.figures() == "calibration never fired in 30 steps (FNSD flagged no pair)"
    assert "per-anchor selection" in nothing.advice()  # global is the default selection


def test_alpha_zero_is_the_base_loss_whatever_was_calibrated() -> None:
    cfg = {"method": "simclr", "loss": {"name": "false", "alpha": 0.0}}
    effect = fn.treatment_effect(cfg, counts({s: 1 for s in range(1, 6)}, 5), steps=5)
    assert effect.negligible and "alpha is 0" in effect.verdict() and effect.advice() is None


def test_too_few_steps_give_no_verdict_and_no_detector_gives_no_effect() -> None:
    early = fn.treatment_effect(SIMCLR_FALSE, counts({}, 4), steps=4)
    assert not early.negligible and early.verdict() is None  # 4 steps say too little
    assert fn.treatment_effect(SIMCLR_FALSE, [], steps=0).figures() == "no step trained yet"
    # the steps trained count even where the counts stop earlier (records are logged every few steps)
    assert fn.treatment_effect(SIMCLR_FALSE, counts({2: 1}, 4), steps=50).steps == 50
    for config in ({"method": "simclr", "loss": {"name": "info_nce"}}, {}, {"model": {"arch": "unet"}}):
        assert fn.treatment_effect(config, counts({1: 1}, 20), steps=20) is None
    assert fn.has_detector({"method": "moco", "loss": {"name": False}})  # YAML's bare false names the loss
    assert fn.has_detector({"method": "simclr"})  # the default loss is FALSE


def test_eliminate_and_attract_are_treatments_not_calibrations() -> None:
    """Other treatments treat every flag (no gate, no alpha): their sentences say "treated", never "calibrated", and
    name the run's detector; alpha 0 does not make them their base method."""
    cfg = {"method": "simclr", "loss": {"name": "false", "detector": "nearest", "treatment": "eliminate",
                                        "alpha": 0.0}}
    effect = fn.treatment_effect(cfg, counts({s: 3 for s in range(1, 21)}, 20, flagged=3), steps=20)
    assert (effect.detector, effect.treatment) == ("nearest", "eliminate") and not effect.calibrates
    assert not effect.negligible and effect.verdict() is None  # alpha is FNCC's: 0 changes nothing here
    assert effect.figures() == "the treatment (eliminate) applied in 20 of 20 steps (3.00 treated pairs per step)"
    assert effect.caption() == "The treatment (eliminate) applied in 20 of 20 steps (3.00 treated pairs per step)."
    rare = {"method": "moco", "loss": {"name": "false", "detector": "support", "treatment": "attract",
                                       "similarity": 0.95}}
    never = fn.treatment_effect(rare, counts({}, 30, flagged=0), steps=30)
    assert never.verdict() == ("The treatment (attract) never applied in 30 steps (the support detector flagged no "
                               "pair): this run is, in effect, MoCo v2.")
    assert "lower similarity" in never.advice() and "calibrat" not in never.advice()
    oracle = {"method": "simclr", "loss": {"name": "false", "detector": "oracle"}}  # with FNCC: still calibrated
    gated = fn.treatment_effect(oracle, counts({}, 12), steps=12)
    assert gated.figures().startswith("calibration never fired in 12 steps (the oracle (uses labels) flagged 12")
    assert gated.advice() is not None and "per-anchor" not in gated.advice()  # FNSD's selection is not the oracle's
    assert fn.treatment_effect(SIMCLR_FALSE, counts({1: 1}, 4), steps=4).caption().startswith(
        "FNCC's treatment: calibration fired in 1 of 4 steps")


def test_treatment_of_a_run_folder_reads_its_pairs_and_steps(tmp_path: Path) -> None:
    run = make_run(tmp_path, [pair(3, 0, 1, calibrated=True), pair(3, 2, 3), pair(5, 1, 4)])
    run.write_status(step=12)
    effect = fn.treatment_of_run(run)
    assert (effect.steps, effect.steps_calibrated, effect.calibrated, effect.flagged) == (12, 1, 1, 3)
    assert effect.negligible and effect.verdict().startswith("Calibration fired in 1 of 12 steps (0.08 calibrated")
    assert fn.amount(0.004) == "0.004" and fn.amount(12.4) == "12" and fn.amount(0) == "0"


def test_a_live_runs_treatment_is_counted_over_the_steps_it_has_written(tmp_path: Path) -> None:
    """A live run writes its flags at its logged steps while its status step runs ahead: the share of treated steps
    is over the steps written (the review saw "5 of 8 steps" for a run that treated every step)."""
    from core.store.run_lock import lock_run, unlock_run

    run = create_run("live", "loss:\n  detector: nearest\n  treatment: eliminate\n", tmp_path / "runs",
                     kind="pretrain", state="running", step=8)
    records = [pair(s, 0, 1, calibrated=True) for s in range(1, 6)]  # eliminate: every flag is treated
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lock_run(run)  # its writer holds the lock: live
    try:
        assert run.is_live() and run.recorded_step() == 5
        effect = fn.treatment_of_run(run)
        assert (effect.steps, effect.steps_calibrated) == (5, 5), effect
    finally:
        unlock_run(run)
    run.write_status(state="stopped")
    assert not run.is_live() and run.recorded_step() == 8  # ended: its status step is the steps trained
