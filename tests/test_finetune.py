"""Fine-tuning, evaluation and the comparison, end to end on tiny synthetic data."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.seg.compare import main as compare_main
from core.seg.finetune_cli import main as finetune_main
from core.ssl.pretrain import main as pretrain_main
from core.store.runs import list_runs
from core.seg.segmodel import load_seg_model

ROOT = Path(__file__).resolve().parent.parent
TINY_DATA = ["data.num_tiles=40", "data.tile_size=64", "data.crop_size=64", "data.val_fraction=0.2",
             "data.test_fraction=0.2"]
TINY_FT = ["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress", *TINY_DATA,
           "data.label_fraction=1.0", "train.batch_size=4", "train.max_steps=4", "train.eval_every=2"]
TINY_PRE = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.proj_hidden=32",
            "model.proj_dim=16", "data.num_tiles=40", "data.tile_size=64", "data.image_size=32",
            "train.batch_size=8", "train.max_steps=2", "train.optimizer=adamw"]


@pytest.fixture()
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return tmp_path / "runs"


def _by_kind(runs: Path, prefix: str):
    return [r for r in list_runs(runs) if prefix in r.id]



def test_one_labeled_tile_fine_tunes(roots: Path) -> None:
    """label_fraction leaving a single training tile: two augmentations of it a step, not a BatchNorm traceback."""
    from core.config import FinetuneConfig, load_config
    from core.seg.finetune import FinetuneTrainer

    cfg = load_config(ROOT / "configs/finetune_demo_cpu.yaml", [*TINY_DATA[:-3], "data.num_tiles=8",
                      "data.val_fraction=0.25", "data.test_fraction=0.25", "data.label_fraction=0.1",
                      "train.max_steps=2", "train.eval_every=2"], model=FinetuneConfig)
    trainer = FinetuneTrainer(cfg, None, progress=False)
    assert len(trainer.splits.train) == 1 and trainer.batch_indices(0) == [0, 0]
    assert trainer.fit() == "completed" and trainer.step == 2
    from core.seg.fingerprint import domain_section  # the fingerprint's note says how few of its tiles were labeled

    note = domain_section(cfg.data, trainer.splits, trainer.model, trainer.classes)["fingerprint"]["note"]
    n = len(trainer.splits.train_all)
    assert note == f"{n} of {n} training tiles (1 of the {n} labeled for fine-tuning)"

@pytest.mark.slow
def test_finetune_from_pretraining_run_writes_everything(roots: Path, capsys) -> None:
    # the fine-tuning's split (an encoder pretrained on the default 10 % would have read some of its val scenes)
    assert pretrain_main([*TINY_PRE, "name=pre", "data.val_fraction=0.2", "data.test_fraction=0.2"]) == 0
    pre = _by_kind(roots, "pre")[0]
    capsys.readouterr()
    assert finetune_main([*TINY_FT, f"model.init={pre.path}", "name=ft"]) == 0
    ft = _by_kind(roots, "ft")[0]
    said = capsys.readouterr().out.splitlines()  # as the probe prints it: the scenes by name, every class's IoU
    score = next(line for line in said if line.startswith("test (whole scenes: 8 scenes ("))
    assert "mIoU " in score and "NOT an unseen score" not in score  # this encoder read none of its test scenes
    assert sum(line.startswith("  IoU ") for line in said) == 6
    hint = next(line for line in said if line.startswith("random-encoder baseline: no run of this recipe"))
    assert f"--config {ft.path / 'config.yaml'} model.init=random name=baseline-ft gives it" in hint
    assert ft.status()["state"] == "completed"
    for name in ("confusion.json", "test_metrics.json", "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (ft.path / name).exists(), name
    test = json.loads((ft.path / "test_metrics.json").read_text())
    assert test["evaluation"] == "whole scenes" and "each pixel counted once" in test["evaluation_detail"]
    assert len(test["scenes"]) == test["tiles"] == 8 and test["pixels"] == 8 * 64 * 64  # a synthetic tile is a scene
    assert 0 <= test["miou"] <= 1 and 0 <= test["oa"] <= 1 and set(test["iou"]) == {
        "impervious surfaces", "building", "low vegetation", "tree", "car", "clutter"}
    cm = json.loads((ft.path / "confusion.json").read_text())["confusion"]
    assert len(cm) == 6 and all(len(r) == 6 for r in cm)
    evals = [m for m in ft.metrics() if m.get("split") == "val"]
    assert [m["step"] for m in evals] == [2, 4]
    model, card = load_seg_model(ft.path / "checkpoints/best.safetensors")
    assert card["kind"] == "segmentation" and card["metrics"]["split"] == "val" and len(card["classes"]) == 6
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 6, 64, 64)
    # what its encoder was pretrained on travels with the model: the training split, none of the test scenes
    pretrained_on = json.loads((pre.path / "data.json").read_text())["pretrain_scenes"]
    assert card["pretrain_scenes"] == pretrained_on and len(pretrained_on) == 24
    assert not set(pretrained_on) & set(test["scenes"]) and "has read" not in ft.log_text()


@pytest.mark.slow
def test_a_stop_during_the_final_test_ends_it_and_a_resume_tests(roots: Path, monkeypatch, capsys) -> None:
    """A Stop after the last step (the review: a SIGTERM during testing was ignored for minutes and the run said
    "completed"): the test ends at its next scene, the run is stopped at its last step, and a resume tests."""
    import os
    import signal

    import core.seg.finetune as ft

    def stopped_midway(*args, progress=None, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the app's Stop, while the first scene is scored
        time.sleep(0.05)  # the handler runs between bytecodes
        progress(1, 3)  # the first scene done: the Stop is honoured here
        raise AssertionError("the test went on after the Stop")

    monkeypatch.setattr(ft, "test_scores", stopped_midway)
    assert finetune_main([*TINY_FT, "train.max_steps=2", "name=stop-in-test"]) == 130
    (run,) = _by_kind(roots, "stop-in-test")
    assert run.state() == "stopped" and run.status()["step"] == 2 and not (run.path / "test_metrics.json").exists()
    monkeypatch.undo()
    assert finetune_main(["--resume", str(run.path), "--no-progress"]) == 0
    assert run.state() == "completed" and (run.path / "test_metrics.json").exists() and run.status()["step"] == 2
    # trained on to 3: config.yaml says so, and a plain resume of the finished run is refused (a review's trained on)
    assert finetune_main(["--resume", str(run.path), "--no-progress", "train.max_steps=3"]) == 0
    assert run.status()["step"] == 3 and run.config()["train"]["max_steps"] == 3
    assert finetune_main(["--resume", str(run.path), "--no-progress"]) == 2 and run.status()["step"] == 3
    capsys.readouterr()
    assert finetune_main(["--resume", str(run.path), "--no-progress", "train.lr=0.5"]) == 2
    assert "model.init=<run>/checkpoints/best.safetensors" in capsys.readouterr().err  # its own way on, not encoder's


@pytest.mark.slow
def test_frozen_protocol_leaves_the_encoder_untouched(roots: Path) -> None:
    assert pretrain_main([*TINY_PRE, "name=pre"]) == 0
    pre = _by_kind(roots, "pre")[0]
    assert finetune_main([*TINY_FT, f"model.init={pre.path}", "name=ft", "train.protocol=frozen",
                          "model.aux_head=true", "train.lr=0.01"]) == 0
    ft = _by_kind(roots, "ft")[0]
    enc = load_file(str(pre.checkpoint_dir / "encoder.safetensors"))
    seg = load_file(str(ft.checkpoint_dir / "last.safetensors"))
    for k, v in enc.items():
        assert torch.equal(seg["model.net." + k], v), k  # weights and BatchNorm statistics alike
    assert any(k.startswith("model.aux.") for k in seg)


@pytest.mark.parametrize("args, needle", [
    (["model.init=/no/such/run"], "model.init"),
    (["model.arch=segformer"], "model.arch"),
    (["train.loss=focal"], "train.loss"),
    (["train.average_from=1.5"], "train.average_from"),
    (["train.average_from=0.5", "train.protocol=frozen"], "train.average_from needs protocol full"),
    (["data.val_fraction=0"], "data.val_fraction: 0 leaves no validation scenes"),
    (["data.name=potsdam"], "data"),
    (["data.name=potsdam", "data.root=/no/potsdam"], "/no/potsdam"),
])
def test_bad_input_exits_2(roots: Path, capsys, args: list[str], needle: str) -> None:
    assert finetune_main([*TINY_FT, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert list_runs(roots) == []


TINY_PROBE = ["data.name=synthetic", "data.root=null", "data.num_tiles=40", "data.tile_size=64",
              "data.val_fraction=0.2", "data.test_fraction=0.2", "train.epochs=2", "model.input_scale=1.0"]


def compare_yaml(tmp_path: Path, extra: str = "", methods: str = "[random, simclr, simclr_false]") -> Path:
    cfg = tmp_path / "compare.yaml"
    cfg.write_text(
        "name: tiny-compare\n"
        f"pretrain_config: {ROOT / 'configs/demo_cpu.yaml'}\n"
        "pretrain_overrides: [model.proj_hidden=32, model.proj_dim=16, data.num_tiles=40, data.tile_size=64,\n"
        "  data.image_size=32, train.batch_size=8, train.max_steps=2, model.queue_size=16, loss.threshold=0.1]\n"
        "eval: probe\n"
        f"probe_config: {ROOT / 'configs/probe_dglc_cpu.yaml'}\n"
        f"probe_overrides: [{', '.join(TINY_PROBE)}]\n"
        f"methods: {methods}\npretrain_seeds: [0, 1]\nseeds: [0]\n" + extra)
    return cfg


def test_a_comparisons_bad_unit_setting_names_where_it_came_from(roots: Path, tmp_path: Path, capsys) -> None:
    """"train.bogus: unknown setting" named neither the comparison's pretrain_overrides nor the method."""
    config = compare_yaml(tmp_path)
    assert compare_main(["--config", str(config), "pretrain_overrides+=[train.bogus=1]"]) == 2
    assert "train.bogus: unknown setting (in the comparison's pretrain_config with its pretrain_overrides, method " \
           "simclr)" in capsys.readouterr().err
    assert compare_main(["--config", str(config), "probe_overrides+=[train.bogus=1]"]) == 2
    assert "(in the comparison's probe_config with its probe_overrides, method random)" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_crosses_seeds_reports_paired_intervals_and_resumes(roots: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    out.write_text("# Our reading\n\nKept when the table is drawn again.\n\n## Generated\n\nan older table\n")
    assert compare_main(["--config", str(compare_yaml(tmp_path)), "--out", str(out)]) == 0
    table = out.read_text()
    assert table.startswith("# Our reading\n\nKept when the table is drawn again.\n\n## Generated\n\n### ")
    assert "an older table" not in table
    result = json.loads(out.with_suffix(".json").read_text())
    assert [m["method"] for m in result["methods"]] == ["random", "simclr", "simclr_false"]
    assert all(m["pretrain_seeds"] == 2 and m["runs"] == 2 for m in result["methods"])
    (diff,) = result["differences"]
    assert diff["method"] == "simclr_false" and diff["base"] == "simclr" and diff["pretrain_seeds"] == [0, 1]
    assert diff["calibrated_per_run"] > 0  # FNCC reweighted pairs, so FALSE's encoders differ from SimCLR's
    assert diff["verdict"] in ("better", "worse", "within noise") and diff["verdict"] in table.replace("FALSE ", "")
    assert result["splits"]["test"]["scenes"] == 8 and result["splits"]["train"]["tiles"] == 24
    assert all(u["evaluation"] == "whole scenes" for u in result["units"])
    assert "| SimCLR + FALSE (global) | SimCLR |" in table and "95 % interval" in table
    assert "sd over evaluation seeds |" not in table  # one evaluation seed: no such column
    assert "Command: `python -m core.compare" in table
    # the time with the machine's load (a review: "0.9 min on this machine" and no word of the load)
    assert re.search(r" min on this machine, load average \d+\.\d on \d+ cores?\)\.", table), table[-400:]
    cmp_run = next(r for r in list_runs(roots) if r.kind() == "compare")
    for name in ("results.csv", "summary.csv", "comparison.json", "table.md", "units.jsonl"):
        assert (cmp_run.path / name).is_file(), name
    test_scenes = set(result["splits"]["test"]["scene_names"])
    pretrain_runs = [r for r in list_runs(roots) if r.kind() == "pretrain"]
    assert len(pretrain_runs) == 4  # 2 methods x 2 pretraining seeds; random needs none
    for r in pretrain_runs:  # the pretraining split is the evaluation's: no test scene reached an encoder
        seen = set(json.loads((r.path / "data.json").read_text())["pretrain_scenes"])
        assert seen and not seen & test_scenes
    before = len(list_runs(roots))
    out.unlink()
    assert compare_main(["--resume", str(cmp_run.path)]) == 0  # everything done: nothing is computed again
    assert len(list_runs(roots)) == before
    # killed after the last pretraining completed, before it was recorded: recorded from its folder, not trained again
    units = (cmp_run.path / "units.jsonl").read_text().splitlines(keepends=True)
    last = max(i for i, u in enumerate(units) if json.loads(u)["kind"] == "pretrain")
    (cmp_run.path / "units.jsonl").write_text("".join(units[:last]))
    (cmp_run.path / "comparison.json").unlink()
    assert compare_main(["--resume", str(cmp_run.path)]) == 0
    assert len(list_runs(roots)) == before and "pretraining had completed in" in cmp_run.log_text()
    assert (cmp_run.path / "units.jsonl").read_text().splitlines(keepends=True)[:last + 1] == units[:last + 1]
    # the resume writes the --out file the first command asked for, naming that command
    assert f"Command: `python -m core.compare --config {compare_yaml(tmp_path)} --out {out}`" in out.read_text()
    (cmp_run.path / "comparison.json").unlink()  # as after a stop: the table is drawn anew, naming both commands
    assert compare_main(["--resume", str(cmp_run.path)]) == 0
    assert f"`, resumed with `python -m core.compare --resume {cmp_run.path}` (" in out.read_text()
    # from the shell too: another process, whose pid the run's status does not name, resumes it
    shell = subprocess.run([sys.executable, "-m", "core.compare", "--resume", str(cmp_run.path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert len(list_runs(roots)) == before and cmp_run.state() == "completed"
    assert json.loads((cmp_run.path / "comparison.json").read_text())["methods"] == result["methods"]


def test_compare_refuses_one_seed_and_an_encoder_that_saw_test_scenes(roots: Path, tmp_path: Path, capsys) -> None:
    """A comparison refuses such an encoder; fine-tuning from it warns, its card records what the encoder saw, the
    export keeps that record, and ``core.evaluate`` no longer calls the test scenes unseen (it did)."""
    assert compare_main(["--config", str(compare_yaml(tmp_path)), "pretrain_seeds=[0]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pretrain_seeds" in err and "at least 2" in err and len(err.splitlines()) == 1
    assert list_runs(roots) == []
    assert pretrain_main([*TINY_PRE, "name=leaky", "data.val_fraction=0.2", "data.test_fraction=0.2",
                          "data.pretrain_splits=[train,val,test]"]) == 0
    leaky = list_runs(roots)[0]
    cfg = compare_yaml(tmp_path, f"reuse: {{simclr@0: {leaky.path}}}\n")
    assert compare_main(["--config", str(cfg), "methods=[simclr]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trained on test scene" in err
    cmp_run = next(r for r in list_runs(roots) if r.kind() == "compare")
    assert cmp_run.state() == "failed"
    from core.seg.evaluate import main as evaluate_main
    from core.store.export import export_run

    encoder = tmp_path / "leaky_encoder.safetensors"
    assert export_run(leaky.path, encoder)["pretrain_scenes"] == json.loads(
        (leaky.path / "data.json").read_text())["pretrain_scenes"]
    assert finetune_main([*TINY_FT, f"model.init={encoder}", "name=ft-leaky", "train.max_steps=1"]) == 0
    ft = _by_kind(roots, "ft-leaky")[0]
    assert "warning: model.init has read 8 of its test scenes (synthetic-" in ft.log_text()
    assert "and 8 of its val scenes" in ft.log_text()
    assert "warning: model.init has read 8 of its test" in capsys.readouterr().err  # and said
    assert "has read 8 of its test" in json.loads((ft.path / "test_metrics.json").read_text())["not_unseen"]
    # every table that shows the score says so (a review found it marked on the Fine-tune page only), and the run
    # cannot win an auto choice among its twins by that figure
    from core.store.catalog import segmentation_models
    from core.store.run_summary import NOT_UNSEEN, summary_row
    from core.store.runs_cli import main as runs_main

    assert summary_row(ft)["metric"] == f"test mIoU {NOT_UNSEEN}"
    assert runs_main([]) == 0 and re.search(rf"test mIoU [\d.]+ % {re.escape(NOT_UNSEEN)}", capsys.readouterr().out)
    entry = next(e for e in segmentation_models(roots) if e.path.parent.parent == ft.path)
    assert entry.test and entry.test_miou() is None
    assert evaluate_main([str(ft.path / "checkpoints/best.safetensors"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "8 scenes, which fine-tuning never saw: synthetic-" in out and "never saw:" in out
    assert "note: its encoder had read 8 of these 8 scenes before" in out
    assert "which it never saw" not in out


@pytest.mark.slow
def test_compare_crosses_band_sets_and_pairs_each_with_the_first(roots: Path, tmp_path: Path) -> None:
    out = tmp_path / "bands.md"
    cfg = compare_yaml(tmp_path, "bands: [[R, G, B], [R, G, B, NIR]]\n")
    assert compare_main(["--config", str(cfg), "methods=[random,simclr]", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [m["method"] for m in result["methods"]] == ["random@R+G+B", "simclr@R+G+B", "random@R+G+B+NIR",
                                                         "simclr@R+G+B+NIR"]
    diffs = {(d["method"], d["base"]): d for d in result["differences"]}
    assert set(diffs) == {("random@R+G+B+NIR", "random@R+G+B"), ("simclr@R+G+B+NIR", "simclr@R+G+B")}
    assert all(d["compares"] == "bands" and d["pretrain_seeds"] == [0, 1] for d in diffs.values())
    table = out.read_text()
    assert "| SimCLR [R, G, B, NIR] | SimCLR [R, G, B] |" in table
    pre = [r for r in list_runs(roots) if r.kind() == "pretrain"]
    assert sorted(r.config()["data"]["bands"] or [] for r in pre) == [["R", "G", "B"]] * 2 + [["R", "G", "B", "NIR"]] * 2
    assert all(u["split"] == "test" for u in result["units"]) and len(result["units"]) == 8


def test_the_out_file_of_a_resume_is_skipped_or_one_line_when_it_cannot_be_written(tmp_path: Path) -> None:
    """A resume writes the first command's --out; where that folder is gone, or the write fails, the comparison is
    still complete and says so in one line (the table stays in the run folder)."""
    from core.seg.compare_report import write_out

    said: list[str] = []
    write_out(tmp_path / "gone/table.md", "## Generated\n", {}, said.append, given=False)
    assert said == [f"not writing {tmp_path / 'gone/table.md'}, the --out of the first command: its folder is gone"]
    (tmp_path / "table.md").mkdir()  # a folder where the file should go: the write fails
    write_out(tmp_path / "table.md", "## Generated\n", {}, said.append, given=True)
    assert said[-1].startswith(f"could not write {tmp_path / 'table.md'}: ") and "table.md" in said[-1]
    write_out(tmp_path / "ok.md", "## Generated\n", {"a": 1}, said.append, given=False)
    assert (tmp_path / "ok.md").read_text() == "## Generated\n" and said[-1].startswith("wrote ")


def test_a_crop_larger_than_its_tiles_is_said(roots: Path) -> None:
    """Pretraining said a view larger than its tile; fine-tuning padded such crops without a word (a review)."""
    from core.config import FinetuneConfig, load_config
    from core.seg.data_check import checked_splits

    cfg = load_config(ROOT / "configs/finetune_demo_cpu.yaml", [*TINY_DATA, "data.crop_size=96"], FinetuneConfig)
    with pytest.warns(UserWarning, match="data.crop_size 96 is larger than data.tile_size 64: every crop is padded"):
        checked_splits(cfg)


def test_a_wrong_model_init_is_refused_before_the_data_is_built(tmp_path: Path, monkeypatch, capsys) -> None:
    """A walkthrough's typo in model.init waited for 2,000 tiles to be generated (over a minute) before its error."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    assert finetune_main(["--config", "configs/finetune_demo_cpu.yaml", "--no-progress", "model.init=nosuchrun"]) == 2
    assert "model.init: no such run folder or checkpoint: nosuchrun" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.npy"))  # nothing generated
