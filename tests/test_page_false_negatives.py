"""The False negatives page: empty store, a FALSE run (counts, precision vs base rate, gallery), other runs, and two
runs' detectors side by side (same batches: one table and chart; other batches: said, each against its own)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.analysis import fn_scoring as fn
from core.analysis.pair_grid import class_names
from core.analysis.stats import share_relation
from core.data import build_dataset
from core.store.runs import list_runs
from tests.pages import errors, open_page, texts
from tests.store import TINY_PRE, copy_store


def run_named(runs_root: Path, suffix: str) -> str:
    return next(r.id for r in list_runs(runs_root) if r.id.endswith(suffix))


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_empty_store_leads_to_the_pretrain_page(empty_store: Path) -> None:
    at = open_page("false_negatives")
    assert not at.exception
    assert any("Pretrain page" in i.value for i in at.info)
    assert at.button(key="fn-go-pretrain")


def test_a_run_named_in_the_address_is_picked_and_an_unknown_one_is_said(populated_store: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.pages import APP

    infonce = run_named(populated_store, "tiny-infonce")
    for wanted, picked in ((infonce, infonce), ("no-such-run", None)):
        at = AppTest.from_file(APP, default_timeout=90)
        at.query_params["run"] = wanted
        at.run().switch_page("../pages/false_negatives.py").run()
        assert not at.exception
        said = [w.value for w in at.warning if "The address names run" in w.value]
        assert (at.selectbox(key="fn-run").value == picked) if picked else said, said
        assert bool(said) == (picked is None)


def test_false_run_shows_counts_precision_and_gallery(populated_store: Path) -> None:
    at = open_page("false_negatives")
    run_id = run_named(populated_store, "tiny-false")
    at.selectbox(key="fn-run").set_value(run_id).run()
    assert not at.exception and not errors(at)
    run = next(r for r in list_runs(populated_store) if r.id == run_id)
    records = run.flagged_pairs()
    shown = metrics(at)
    assert shown["Flagged pairs"] == str(len(records))
    assert shown["Calibrated"] == str(sum(r["calibrated"] for r in records))
    dataset = build_dataset(fn.run_config(run).data, progress=False)
    dominant = [dataset.dominant_class(i) for i in range(len(dataset))]
    correct = sum(dominant[r["anchor_index"]] == dominant[r["candidate_index"]] for r in records)
    assert shown["Precision"] == f"{correct / len(records):.3f}"
    assert shown["Base rate (two random tiles of the set)"] == f"{fn.base_rate(fn.dominant_classes(dataset)):.3f}"
    assert any(words in texts(at) for words in ("The flags' precision is above the base rate (95 %",
                                                "The flags' precision is below the base rate (95 %",
                                                "The flags' precision is level with the base rate within noise"))
    assert len(at.get("plotly_chart")) == 2  # counts over training, precision per step bin
    assert len(at.get("image")) == 2 * min(len(records), 12)  # anchor tile | candidate per pair
    assert "anchor #" in str(at.get("image")[0].proto) and "another augmented view" in texts(at)
    assert "{'name'" not in texts(at) and any(f"({c} / " in texts(at) for c in class_names(dataset))
    calibrated = sum(r["calibrated"] for r in records)
    at.checkbox(key="fn-calibrated").check().run()
    assert not at.exception and len(at.get("image")) == 2 * calibrated


@pytest.mark.parametrize("suffix, says", [("tiny-infonce", "FALSE was off"), ("died", "no fns.jsonl")])
def test_runs_without_pairs_say_why(populated_store: Path, suffix: str, says: str) -> None:
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run_named(populated_store, suffix)).run()
    assert not at.exception and not errors(at)
    assert any(says in i.value for i in at.info)


def test_broken_run_is_one_error_line(populated_store: Path) -> None:
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run_named(populated_store, "broken")).run()
    assert not at.exception
    assert len(errors(at)) == 1 and "unreadable" in errors(at)[0] and "Traceback" not in texts(at)


def test_many_pairs_paginate_and_foreign_indices_are_one_error(store_base: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-false"))
    n = len(build_dataset(fn.run_config(run).data, progress=False))  # its training scenes: 48 tiles less val, test
    assert n == 38
    recs = [{"step": 1 + s % 6, "anchor_index": s % n, "anchor_view": 0, "candidate_index": (s * 7 + 1) % n,
             "candidate_view": 1, "distance": s / 100, "cos": 0.5, "cos_pos": 0.95, "calibrated": True,
             "mirrored": False} for s in range(30)]
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run.id).run()
    assert not at.exception and len(at.get("image")) == 24
    at.number_input[0].set_value(3).run()  # 30 pairs: pages of 12, 12 and 6
    assert not at.exception and len(at.get("image")) == 12
    recs[0]["candidate_index"] = 480  # the data set has 38 tiles
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run.id).run()
    assert not at.exception
    assert any("names tile 480" in e for e in errors(at)) and all("\n" not in e for e in errors(at))


def test_flags_are_scored_against_reference_selectors(store_base: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runs = copy_store(store_base, tmp_path)  # the report is written into the run folder
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    run_id = run_named(runs, "tiny-false")
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run_id).run()
    assert "Better than a trivial selector?" in [s.value for s in at.subheader]
    assert "FNSD flags" not in metrics(at)  # computed on request only
    at.button(key=f"fn-quality-{run_id}").click().run()
    assert not at.exception and not errors(at), errors(at)
    shown = metrics(at)
    for label in ("FNSD flags", "Random negative", "Colour nearest", "Encoder nearest", "Oracle ceiling", "Recall",
                  "Cross-scene precision", "Calibrated flags"):
        assert label in shown, (label, shown)
    stored = json.loads((runs / run_id / "flag_quality.json").read_text())["report"]
    assert shown["FNSD flags"] == f"{stored['precision']:.3f}"
    assert shown["Colour nearest"] == f"{stored['selectors']['colour']['precision']:.3f}"
    # a tenth of a percent, not "0.0012": three significant digits of a percentage
    assert shown["Recall"] == (f"{stored['recall'] * 100:.3g} %" if stored["recall"] is not None else "n/a")
    deltas = {m.label: m.delta for m in at.metric}  # a precision of 1.000 from 3 picks: the count beside it
    cal = stored["calibrated"]["pairs"]
    assert deltas["Calibrated flags"] == (f"n = {cal} {stored.get('unit', 'pick')}{'' if cal == 1 else 's'}"
                                          if cal else None), deltas
    assert "The pairs FNSD flagged share their class" in texts(at)
    colour = stored["selectors"]["colour"]  # above, below or level by the difference's interval, not by overlap
    assert share_relation(stored["precision"], stored["precision_ci"], colour["precision"], colour["ci"],
                          "the nearest tile by colour") in texts(at)
    encoder = stored["selectors"]["encoder"]  # the README's question: against the encoder's own nearest neighbour too
    assert share_relation(stored["precision"], stored["precision_ci"], encoder["precision"], encoder["ci"],
                          "the encoder's own nearest neighbour") in texts(at)
    assert len(at.get("plotly_chart")) == 3  # counts, precision per bin, selectors
    again = open_page("false_negatives")  # a new session: the stored report is shown at once
    again.selectbox(key="fn-run").set_value(run_id).run()
    assert metrics(again)["FNSD flags"] == shown["FNSD flags"]
    assert again.button(key=f"fn-quality-{run_id}").label.startswith("🔄")


def test_tiles_of_an_rgbn_run_are_shown_in_true_or_false_colour(empty_store: Path) -> None:
    from core.ssl.pretrain import main as pretrain_main

    root = Path(__file__).resolve().parent.parent
    assert pretrain_main(["--config", str(root / "configs/demo_cpu_rgbn.yaml"), "--no-progress", "name=rgbn-false",
                          "model.proj_hidden=32", "model.proj_dim=16", "data.num_tiles=24", "data.tile_size=64",
                          "data.image_size=32", "train.batch_size=8", "train.max_steps=2", "train.optimizer=adamw",
                          "train.knn_every=0", "loss.threshold=0.1"]) == 0
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run_named(empty_store, "rgbn-false")).run()
    assert not at.exception and not errors(at), errors(at)
    picture = next(r for r in at.radio if r.key.startswith("fn-picture-"))
    assert picture.value == "true" and len(at.image) >= 2
    before = [i.value for i in at.image]
    picture.set_value("false").run()
    assert not at.exception and not errors(at) and [i.value for i in at.image] != before


def test_cards_show_the_anchor_positive_cosine_the_flag_was_matched_to(populated_store: Path) -> None:
    run = next(r for r in list_runs(populated_store) if r.id.endswith("tiny-false"))
    records = run.flagged_pairs()
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run.id).run()
    cards = [c.value for c in at.caption if c.value.startswith("step ")]
    assert len(cards) == min(len(records), 12)
    first = min(records, key=lambda r: (r["distance"], r["step"]))  # the default order: smallest D first
    digits = next((d for d in (3, 4, 5) if f"{first['cos']:.{d}f}" != f"{first['cos_pos']:.{d}f}"), 6)
    assert cards[0].startswith(f"step {first['step']} · candidate cos {first['cos']:.{digits}f} · "
                               f"anchor-positive cos_pos {first['cos_pos']:.{digits}f} · ")
    # FNSD matches the two: printed to the digits that tell them apart (a walkthrough read "0.661 · 0.661" everywhere)
    shown = [(c.split(" · ")[1].split()[-1], c.split(" · ")[2].split()[-1]) for c in cards]
    assert all(cos != pos or len(cos) == 8 for cos, pos in shown)  # equal only at the sixth decimal
    gate = "≥" if first["calibrated"] else "<"
    assert f"(cos_pos {gate} 0.50)" in cards[0]  # the store's runs use loss.threshold=0.5
    assert "FNCC treats it as a false negative only when cos_pos ≥ the threshold 0.50" in texts(at)


def test_a_run_calibrated_once_in_40_steps_says_it_is_in_effect_simclr(store_base: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    run = next(r for r in list_runs(runs) if r.id.endswith("tiny-false"))
    recs = [{"step": s, "anchor_index": s % 30, "anchor_view": 0, "candidate_index": (s + 3) % 30,
             "candidate_view": 1, "distance": 0.01, "cos": -0.045, "cos_pos": 0.9 if s == 7 else -0.04,
             "calibrated": s == 7, "mirrored": False} for s in range(1, 41)]
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run.write_status(step=40)
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run.id).run()
    assert not at.exception and not errors(at), errors(at)
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("Calibration fired in 1 of 40 steps (0.03 calibrated pairs per step): this run is, "
                              "in effect, SimCLR.") and "lower threshold" in warning
    recs = [dict(r, calibrated=True, cos_pos=0.9) for r in recs]  # calibrated in every step: figures, no warning
    (run.path / "fns.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(run.id).run()
    assert not at.warning and "FNCC's treatment: calibration fired in 40 of 40 steps" in texts(at)


@pytest.mark.slow  # two runs or a run and its scoring: the full suite (the fast tier is kept under 3 minutes)
def test_two_runs_detectors_side_by_side(store_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tiny-false (FNSD, 16 steps) beside a nearest run of the same data and seed (4 steps): the same batches, both
    scored on steps 1-4 in one table and chart; beside an oracle run of another seed: the batches differ, it is
    said, and only each run against its own selectors is shown; the oracle's page says it reads labels."""
    from core.ssl.pretrain import main as pretrain_main

    runs = copy_store(store_base, tmp_path)
    monkeypatch.setenv("FALSE_WB_RUNS", str(runs))
    monkeypatch.setenv("FALSE_WB_DATA", str(store_base / "data"))
    assert pretrain_main([*TINY_PRE, "name=tiny-nearest", "loss.name=false", "loss.detector=nearest",
                          "loss.treatment=eliminate", "train.max_steps=4", "train.knn_every=0"]) == 0
    assert pretrain_main([*TINY_PRE, "name=tiny-oracle", "loss.name=false", "loss.detector=oracle", "seed=5",
                          "train.max_steps=2", "train.knn_every=0"]) == 0
    first, nearest, oracle = (run_named(runs, n) for n in ("tiny-false", "tiny-nearest", "tiny-oracle"))
    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(first).run()
    picker = at.selectbox(key=f"fn-second-{first}")
    assert picker.value == "—" and set(picker.options) >= {nearest, oracle}
    picker.set_value(nearest).run()
    assert not at.exception and not errors(at), errors(at)
    assert "Same batches" in texts(at) and not at.dataframe
    at.button(key=f"fn-compare-go-{first}").click().run()
    assert not at.exception and not errors(at), errors(at)
    (table,) = at.dataframe
    frame = table.value
    assert list(frame.columns) == ["A: FALSE", "B: nearest + eliminate"]
    assert frame.loc["steps scored"].tolist() == ["4", "4"]  # tiny-false scored on the 4 steps both trained
    assert {"recall (same-class pairs offered)", "colour nearest (for its anchors)",
            "encoder nearest (for its anchors)", "oracle ceiling (for its anchors)"} <= set(frame.index)
    said = texts(at)
    assert "On the same batches (steps 1–4)" in said and "the pairs `nearest` flagged in B" in said
    assert len(at.get("plotly_chart")) == 3  # counts, precision per bin, the two runs side by side

    at.selectbox(key=f"fn-second-{first}").set_value(oracle).run()
    assert not at.exception and not errors(at), errors(at)
    assert any("Not the same batches (seed 0 vs 5)" in w.value for w in at.warning)
    at.button(key=f"fn-compare-go-{first}").click().run()
    assert not at.exception and not errors(at), errors(at)
    frame = at.dataframe[0].value
    assert "margin over its random" in frame.index and "encoder nearest (for its anchors)" not in frame.index
    said = texts(at)
    assert "did not train on the same batches" in said and "B's detector is the oracle: it reads the labels" in said

    at = open_page("false_negatives")
    at.selectbox(key="fn-run").set_value(oracle).run()
    assert not at.exception and not errors(at), errors(at)
    assert any("its flags read the labels" in w.value for w in at.warning)
    assert "oracle (uses labels) + fncc" in texts(at) and "a candidate the oracle flagged" in texts(at)
    # the nearest run's flags are sorted by their cosine, its detector's own measure, not by FNSD's distance D
    at.selectbox(key="fn-run").set_value(nearest).run()
    assert at.selectbox(key="fn-sort-nearest").value == "cos"
    assert "does not use it" in at.selectbox(key="fn-sort-nearest").format_func("distance")
    at.selectbox(key="fn-run").set_value(first).run()
    assert at.selectbox(key="fn-sort-fnsd").value == "distance"


def test_the_run_and_the_filters_survive_a_visit_to_another_page(populated_store: Path) -> None:
    """A review picked a run, ticked Calibrated only and sorted by step; after a visit to Runs the page was back at
    the newest run with its defaults."""
    at = open_page("false_negatives")
    run_id = run_named(populated_store, "tiny-false")
    at.selectbox(key="fn-run").set_value(run_id).run()
    at.checkbox(key="fn-calibrated").check().run()
    sort = next(s for s in at.selectbox if s.label == "Sort by")
    sort.set_value("step").run()
    at.switch_page("../pages/runs.py").run()
    at.switch_page("../pages/false_negatives.py").run()
    assert not at.exception and not errors(at)
    assert at.selectbox(key="fn-run").value == run_id and at.checkbox(key="fn-calibrated").value
    assert next(s for s in at.selectbox if s.label == "Sort by").value == "step"
    assert not any("Session State" in w.value for w in at.warning)  # no "two defaults" warning from Streamlit
