"""Flag quality beside mIoU for a comparison's methods (issue 27.4): ``python -m core.fn_report COMPARISON_RUN``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.analysis.fn_report import flag_report
from core.analysis.fn_report_cli import main as report_main
from core.store.runs import create_run, list_runs
from tests.store import copy_store


def _comparison(runs: Path) -> tuple[Path, Path]:
    """A comparison whose units are the store's pretraining runs: FALSE (two seeds, one run) against InfoNCE."""
    false_run = next(r for r in list_runs(runs) if r.id.endswith("tiny-false"))
    infonce = next(r for r in list_runs(runs) if r.id.endswith("tiny-infonce"))
    cmp_run = create_run("flags-compare", "name: flags-compare\n", runs, kind="compare", state="completed")
    units = [{"kind": "pretrain", "method": m, "pretrain_seed": s, "seed": None, "run": str(r.path)}
             for m, r in (("simclr", infonce), ("simclr_false", false_run)) for s in (0, 1)]
    cmp_run.append_jsonl("units.jsonl", units)
    diff = {"mean": 1.5, "low": -0.5, "high": 3.5, "half_width": 2.0, "verdict": "within noise"}
    (cmp_run.path / "comparison.json").write_text(json.dumps({
        "name": "flags-compare",
        "methods": [{"method": "simclr", "label": "SimCLR", "miou_mean": 0.2, "miou_sd": 0.01},
                    {"method": "simclr_false", "label": "SimCLR + FALSE (global)", "miou_mean": 0.215,
                     "miou_sd": 0.02}],
        "differences": [{"method": "simclr_false", "base": "simclr", "miou_points": diff}]}))
    return cmp_run.path, false_run.path


def test_a_comparison_gets_every_detectors_flags_beside_its_mIoU(store_base: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    runs = copy_store(store_base, tmp_path)
    cmp_path, false_path = _comparison(runs)
    assert report_main([str(cmp_path), "--json", "--no-encoder"]) == 0
    table = json.loads(capsys.readouterr().out)
    (row,) = table["methods"]  # InfoNCE flags nothing: no row
    single = flag_report(next(r for r in list_runs(runs) if r.path == false_path), use_encoder=False)
    assert row["method"] == "simclr_false" and row["runs"] == 2
    assert row["all"]["flags"]["mean"] == pytest.approx(single["precision"])
    assert row["all"]["random"]["mean"] == pytest.approx(single["selectors"]["random"]["precision"])
    assert row["all"]["flags"]["sd"] == 0  # the same run twice
    assert row["delta_miou_points"]["mean"] == 1.5
    assert report_main([str(cmp_path), "--no-encoder"]) == 0
    text = capsys.readouterr().out
    assert f"| SimCLR + FALSE (global) | 2 | {single['pairs']} | " in text  # a small sd is read beside the pairs
    assert f"| SimCLR + FALSE (global) | 2 | {single['cross_scene']['flags']['pairs']} | " in text.split("Across")[1]
    assert "+1.50 [-0.50, +3.50] within noise" in text
    assert "Across scenes only" in text and "| SimCLR |" not in text
    (cmp_path / "comparison.json").unlink()  # a comparison stopped before its table: the flags of its runs so far
    assert report_main([str(cmp_path), "--no-encoder"]) == 0
    text = capsys.readouterr().out
    assert "has not finished" in text and "| SimCLR + FALSE (global) | 2 |" in text and "n/a (unfinished)" in text


def test_a_run_that_is_not_a_comparison_or_pretraining_is_one_line(store_base: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    runs = copy_store(store_base, tmp_path)
    ft = next(r for r in list_runs(runs) if r.id.endswith("tiny-ft"))
    assert report_main([str(ft.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
