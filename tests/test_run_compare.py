"""Run comparison (core.store.run_compare): settings, diffs, smoothing, groups, tags and notes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.store.run_compare import (
    all_tags,
    coinciding,
    config_diff,
    differing_keys,
    differing_within_kinds,
    flat_settings,
    group_curve,
    groups_of,
    read_notes,
    smooth,
    write_notes,
)
from core.store.runs import Run


def test_flat_settings_and_what_differs() -> None:
    a = {"name": "a", "loss": {"name": "false", "temperature": 0.5}, "data": {"test_scenes": ["t3"]}}
    b = {"name": "b", "loss": {"name": "info_nce", "temperature": 0.5}, "data": {"test_scenes": ["t3"]}, "seed": 1}
    fa = flat_settings(a)
    assert fa == {"name": "a", "loss.name": "false", "loss.temperature": 0.5, "data.test_scenes": '["t3"]'}
    assert differing_keys([fa, flat_settings(b)]) == ["loss.name", "seed"]  # the name always differs: left out
    assert differing_keys([fa]) == []
    assert config_diff(a, b) == [("loss.name", "false", "info_nce"), ("name", "a", "b"), ("seed", None, 1)]
    assert config_diff({"x": None}, {}) == [("x", None, None)]  # a key one side lacks is a difference


def test_smoothing_is_a_debiased_moving_average() -> None:
    assert smooth([1.0, 3.0, 5.0], 0.0) == [1.0, 3.0, 5.0]
    out = smooth([1.0, 3.0], 0.5)
    assert out[0] == pytest.approx(1.0)  # not pulled towards 0
    assert out[1] == pytest.approx((0.25 + 1.5) / 0.75)
    gap = smooth([2.0, math.nan, 2.0], 0.9)
    assert gap[0] == pytest.approx(2.0) and math.isnan(gap[1]) and gap[2] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="smoothing"):
        smooth([1.0], 1.0)


def test_groups_take_mean_and_spread_over_the_steps_every_run_logged() -> None:
    rows = group_curve([[(1, 1.0), (2, 2.0), (3, 9.0)], [(1, 3.0), (2, 4.0)]])
    assert [r["step"] for r in rows] == [1, 2]  # step 3: only one run logged it
    assert rows[0]["mean"] == 2.0 and rows[0]["std"] == pytest.approx(math.sqrt(2)) and rows[0]["n"] == 2
    assert rows[1]["min"] == 2.0 and rows[1]["max"] == 4.0
    assert group_curve([[(1, 5.0)]])[0]["std"] == 0.0 and group_curve([]) == []
    assert groups_of({"r1": {"loss.name": "false"}, "r2": {"loss.name": "false"}, "r3": {}}, "loss.name") == \
        {"false": ["r1", "r2"], "(not set or not read)": ["r3"]}


def test_a_loss_setting_its_loss_does_not_read_is_no_setting_of_the_run() -> None:
    """An InfoNCE run's config keeps FNSD's defaults; grouped by loss.detector it was averaged into the FNSD runs
    (the review). Its settings, groups and diff leave them out; DCL keeps its prior, FALSE its detector."""
    from core.store.run_compare import run_settings

    info = {"loss": {"name": "info_nce", "detector": "fnsd", "treatment": "fncc", "tau_plus": 0.1, "temperature": 0.5}}
    false = {"loss": {"name": "false", "detector": "fnsd", "treatment": "fncc", "tau_plus": 0.1, "temperature": 0.5}}
    dcl = {"loss": {"name": "dcl", "detector": "fnsd", "tau_plus": 0.1, "temperature": 0.5}}
    assert run_settings(info) == {"loss.name": "info_nce", "loss.temperature": 0.5}
    assert run_settings(false) == {"loss.name": "false", "loss.detector": "fnsd", "loss.treatment": "fncc",
                                   "loss.temperature": 0.5}
    assert run_settings(dcl) == {"loss.name": "dcl", "loss.tau_plus": 0.1, "loss.temperature": 0.5}
    groups = groups_of({"i": run_settings(info), "f": run_settings(false)}, "loss.detector")
    assert groups == {"fnsd": ["f"], "(not set or not read)": ["i"]}
    assert config_diff(info, false) == [("loss.detector", None, "fnsd"), ("loss.name", "info_nce", "false"),
                                        ("loss.treatment", None, "fncc")]
    from core.store.run_compare import differing_keys  # default columns: the name tells the losses apart

    assert differing_keys([run_settings(info), run_settings(false)]) == ["loss.name"]
    # a detector's own settings: a similarity bound is read by nearest and support only, extra views by support only
    fnsd = {"loss": {"name": "false", "detector": "fnsd", "similarity": None, "support_views": 2, "temperature": 0.5}}
    assert run_settings(fnsd) == {"loss.name": "false", "loss.detector": "fnsd", "loss.temperature": 0.5}
    assert config_diff(info, fnsd) == [("loss.detector", None, "fnsd"), ("loss.name", "info_nce", "false")]
    near = {"loss": {"name": "false", "detector": "nearest", "similarity": 0.5, "support_views": 2}}
    assert run_settings(near) == {"loss.name": "false", "loss.detector": "nearest", "loss.similarity": 0.5}
    support = {"loss": {"name": "false", "detector": "support", "similarity": None, "support_views": 3}}
    assert run_settings(support)["loss.support_views"] == 3 and run_settings(support)["loss.similarity"] is None
    # selection is FNSD's alone, top-k not the oracle's, alpha FNCC's (a walkthrough read "selection:
    # global" in an oracle run's config beside "per anchor" in its report)
    oracle = {"loss": {"name": "false", "detector": "oracle", "treatment": "attract", "selection": "global", "topk": 3,
                       "alpha": 0.3, "threshold": 0.9, "symmetric": False}}
    assert run_settings(oracle) == {"loss.name": "false", "loss.detector": "oracle", "loss.treatment": "attract",
                                    "loss.symmetric": False, "loss.threshold": 0.9}  # its gate's share is logged
    kept = run_settings({"loss": {**near["loss"], "treatment": "fncc", "topk": 2, "alpha": 0.5, "selection": "global"}})
    assert kept["loss.topk"] == 2 and kept["loss.alpha"] == 0.5 and "loss.selection" not in kept


def test_tags_and_notes_round_trip(tmp_path: Path) -> None:
    run = Run(tmp_path / "r1")
    run.path.mkdir()
    assert read_notes(run) == {"tags": [], "note": ""}
    saved = write_notes(run, ["  baseline ", "Baseline", "", "lr   sweep", "x" * 60], "  first try \n")
    assert saved == {"tags": ["baseline", "lr sweep", "x" * 40], "note": "first try"}
    assert read_notes(run) == saved
    other = Run(tmp_path / "r2")
    other.path.mkdir()
    write_notes(other, ["Alpha", "BASELINE"], "")
    assert all_tags(read_notes(r)["tags"] for r in (run, other)) == ["Alpha", "baseline", "lr sweep", "x" * 40]
    with pytest.raises(ValueError, match="at most 5,000"):
        write_notes(run, [], "y" * 5001)
    assert read_notes(run) == saved  # a refused note changes nothing
    (run.path / "notes.json").write_text('{"tags": "not a list", "note": 3')
    assert read_notes(run) == {"tags": [], "note": ""}  # a torn file reads as no notes


def test_settings_that_differ_are_those_within_a_kind() -> None:
    pre = {"loss.name": "false", "train.max_steps": 10, "model.encoder": "resnet18"}
    settings = {"p1": pre, "p2": {**pre, "loss.name": "info_nce"}, "f1": {"model.arch": "unet", "train.max_steps": 4},
                "broken": {}}
    kinds = {"p1": "pretrain", "p2": "pretrain", "f1": "finetune", "broken": "pretrain"}
    assert differing_within_kinds(settings, kinds) == ["loss.name"]  # not model.arch, nor every key of the other kind
    assert differing_keys(list(settings.values())) == ["loss.name", "model.arch", "model.encoder", "train.max_steps"]
    assert differing_within_kinds({"f1": settings["f1"]}, kinds) == []  # one run of a kind: nothing to compare


def test_curves_on_top_of_each_other_are_found() -> None:
    simclr = [(s, 5.0 - 0.1 * s) for s in range(1, 41)]
    false_run = [(s, v + 4e-5) for s, v in simclr]  # equal to 4 decimals: drawn on top of each other
    other = [(s, v + 0.3) for s, v in simclr]
    assert coinciding({"simclr": simclr, "false": false_run, "other": other}) == [["simclr", "false"]]
    assert coinciding({"simclr": simclr, "other": other}) == []
    # a shorter curve equal to the start of a longer one is hidden under it; one common step of two is not enough
    assert coinciding({"long": simclr, "short": simclr[:6]}) == [["long", "short"]]
    assert coinciding({"a": [(1, 1.0), (2, 2.0)], "b": [(2, 2.0), (3, 9.0)]}) == []
    # flat curves are compared at their own scale (a learning rate of 1e-4 against 1.01e-4 is not the same)
    assert coinciding({"a": [(1, 1e-4), (2, 1e-4)], "b": [(1, 1.01e-4), (2, 1.01e-4)]}) == []
    assert coinciding({"a": [(1, 1e-4), (2, 1e-4)], "b": [(1, 1e-4), (2, 1e-4)], "c": []}) == [["a", "b"]]
    assert coinciding({"a": [(1, math.nan)], "b": []}) == []
