"""``false-wb runs`` lists the runs, and a run can be named by the ``name=`` it was made with."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main as false_wb
from core.store.runs import NotARunError, create_run, open_run_arg, runs_named
from core.store.runs_cli import main as runs_main

PRETRAIN = "method: simclr\ndata:\n  name: synthetic\nmodel:\n  encoder: resnet18\n"
FINETUNE = ("model:\n  arch: deeplabv3plus\n  encoder: resnet18\n"
            "  init: /r/20261208-demo/checkpoints/encoder.safetensors\n"
            "data:\n  name: dubai\ntrain:\n  protocol: finetune\n")


def _store(root: Path) -> dict[str, Path]:
    made = {
        "old": create_run("dubai-seg", FINETUNE, root, state="completed", kind="finetune", step=300, total_steps=300),
        "pre": create_run("demo", PRETRAIN, root, state="stopped", kind="pretrain", step=7, total_steps=40),
    }
    (made["old"].path / "test_metrics.json").write_text(json.dumps({"miou": 0.531, "split": "test"}))
    (made["pre"].path / "metrics.jsonl").write_text(json.dumps({"step": 5, "loss": 4.8125}) + "\n")
    made["new"] = create_run("dubai-seg", FINETUNE, root, state="failed", kind="finetune", step=3, total_steps=300)
    return {k: r.path for k, r in made.items()}


def test_a_run_is_found_by_its_name_when_only_one_has_it(tmp_path: Path) -> None:
    made = _store(tmp_path)
    assert open_run_arg("demo", tmp_path).path == made["pre"]
    assert open_run_arg(made["pre"].name, tmp_path).path == made["pre"]  # the folder's name still works
    assert [r.path for r in runs_named("dubai-seg", tmp_path)] == [made["old"], made["new"]]
    with pytest.raises(NotARunError) as two:
        open_run_arg("dubai-seg", tmp_path)
    assert f"2 runs are named 'dubai-seg' in {tmp_path}: {made['new'].name}, {made['old'].name}" in str(two.value)
    with pytest.raises(NotARunError, match="`false-wb runs` lists them"):
        open_run_arg("dubai", tmp_path)  # a name's prefix is not its name
    assert runs_named("demo-2", tmp_path) == []
    # runs/<run>, as the README writes it, when the runs live elsewhere ($FALSE_WB_RUNS): a review's --resume,
    # export and fn-report failed on it while model.init found it
    assert open_run_arg(f"runs/{made['pre'].name}", tmp_path).path == made["pre"]
    assert open_run_arg("runs/demo", tmp_path).path == made["pre"]
    with pytest.raises(NotARunError, match=f"nor a run of that name in {tmp_path}"):
        open_run_arg("runs/nothing", tmp_path)


def test_a_name_ending_in_a_number_is_not_a_second_run_of_the_shorter_name(tmp_path: Path) -> None:
    """``seg-2`` read as the second ``seg`` (the folder's ``-N`` when two runs begin in one second): the name the
    run was made with decides; a run made before status.json held it is read from its folder."""
    seg, seg2 = (create_run(n, PRETRAIN, tmp_path, state="completed") for n in ("seg", "seg-2"))
    assert seg.status()["name"] == "seg" and [r.path for r in runs_named("seg", tmp_path)] == [seg.path]
    assert open_run_arg("seg-2", tmp_path).path == seg2.path
    old = create_run("old", PRETRAIN, tmp_path / "before", state="completed")
    status = json.loads((old.path / "status.json").read_text())
    del status["name"]
    (old.path / "status.json").write_text(json.dumps(status))
    assert [r.path for r in runs_named("old", tmp_path / "before")] == [old.path]


def test_the_list_is_newest_first_with_each_runs_figure(tmp_path: Path, capsys) -> None:
    made = _store(tmp_path)
    assert runs_main(["--runs-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "kind", "state", "method", "data", "progress", "figure"]
    assert [line.split()[0] for line in lines[1:]] == [made["new"].name, made["pre"].name, made["old"].name]
    assert "test mIoU 53.1 %" in lines[3] and "300/300 steps" in lines[3]
    assert "deeplabv3plus (finetune) of 20261208-demo" in lines[3]
    assert "last loss 4.812" in lines[2] and "stopped" in lines[2] and "7/40 steps" in lines[2]
    from core.store.run_summary import _init_words  # a random-init fine-tune told apart (a walkthrough)

    assert _init_words({"init": "random"}) == ", random encoder" and _init_words({}) == ""
    assert _init_words({"init": "checkpoints/synthetic_false_encoder.safetensors"}) == \
        " of synthetic_false_encoder.safetensors"
    assert false_wb(["runs", "--runs-root", str(tmp_path), "--kind", "pretrain", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run"] == made["pre"].name and row["value"] == 4.8125
    assert runs_main(["--runs-root", str(tmp_path), "--last", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == [made["new"].name] and "(2 older not shown: --all" in out[-1]
    assert runs_main(["--runs-root", str(tmp_path), "--state", "running"]) == 0
    assert capsys.readouterr().out.strip() == f"no runs with --state running in {tmp_path}"
    assert runs_main(["--runs-root", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.strip().endswith("(no such folder: check --runs-root or $FALSE_WB_RUNS)")


COMPARE = "name: cmp\npretrain_config: configs/demo_cpu.yaml\nmethods: [simclr, simclr_false_pa, simclr_false]\n"


def test_a_comparison_row_names_its_methods_data_and_first_difference(tmp_path: Path, capsys) -> None:
    """A review read "comparison" with no data and "units done (of 4): 4" on every comparison's row, beside a
    progress column saying the same; and "simclr + FALSE" for FNSD's global and per-anchor runs alike."""
    running = create_run("cmp", COMPARE, tmp_path, state="running", kind="compare", step=3, total_steps=12)
    done = create_run("cmp", COMPARE, tmp_path, state="completed", kind="compare", step=12, total_steps=12)
    (done.path / "comparison.json").write_text(json.dumps({
        "splits": {"data": "synthetic"},
        "methods": [{"method": "simclr", "label": "SimCLR", "miou_mean": 0.18},
                    {"method": "simclr_false_pa", "label": "SimCLR + FALSE (per anchor)", "miou_mean": 0.16}],
        "differences": [{"method": "simclr_false_pa", "base": "simclr", "verdict": "within noise",
                         "miou_points": {"mean": -2.31}}, {"method": "simclr_false", "base": "simclr"}]}))
    pa = create_run("pa", PRETRAIN.replace("method: simclr\n", "method: simclr\nloss:\n  selection: per_anchor\n"),
                    tmp_path, state="completed", kind="pretrain")
    rows = {r["run"]: r for r in (run.summary() for run in (running, done, pa))}
    assert rows[done.id]["method"] == "comparison of simclr, simclr_false_pa, simclr_false"
    assert rows[done.id]["data"] == "synthetic"
    assert rows[pa.id]["method"] == "simclr + FALSE (per anchor)"
    assert runs_main(["--runs-root", str(tmp_path)]) == 0
    out = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert out[done.id].endswith("mIoU SimCLR + FALSE (per anchor) − SimCLR: -2.3 points (within noise); 1 more in "
                                 "table.md")
    assert out[running.id].split()[-7:] == ["3/12", "units", "units", "done", "(of", "12):", "3"]  # no result yet: how far it is
    (done.path / "comparison.json").write_text(json.dumps({"methods": [{"method": "simclr", "label": "SimCLR",
                                                                        "miou_mean": 0.182}], "differences": []}))
    assert done.summary()["value"] == "SimCLR 18.2 %"  # one method: no pair to read, no winner named
    # resumed to add seeds: until the new result is written, the row says its result is the one of before
    import os
    import time

    (running.path / "comparison.json").write_text((done.path / "comparison.json").read_text())
    running.write_status(resumed=time.time() + 60)
    assert running.summary()["metric"] == "mean mIoU (no paired difference) (before this resume)"
    os.utime(running.path / "comparison.json", (time.time() + 120, time.time() + 120))  # written since
    assert running.summary()["metric"] == "mean mIoU (no paired difference)"
