"""The Fine-tune page: launch form, scores of a finished run (IoU bars, confusion heatmap), comparisons."""
from __future__ import annotations

import json

import time
from pathlib import Path

from core.store.runs import list_runs
from tests.pages import errors, open_page, shown, texts


def test_renders_with_an_empty_store(empty_store: Path) -> None:
    at = open_page("finetune")
    assert not at.exception and not errors(at)
    assert "No fine-tuning runs yet" in texts(at) and "No comparison yet" in texts(at)
    assert at.selectbox(key="ft-init").value == "random"  # nothing pretrained yet


def test_shows_the_scores_of_a_finished_run(populated_store: Path) -> None:
    at = open_page("finetune")
    assert not at.exception and not errors(at), errors(at)
    assert at.selectbox(key="ft-init").value.endswith("tiny-infonce")  # the newest pretraining run, not random
    assert at.selectbox(key="ft-run").value.endswith("tiny-ft")
    labels = [m.label for m in at.metric]
    assert any(label.startswith("mIoU (test)") for label in labels), labels
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # curves, IoU bars, confusion heatmap
    val = [json.loads(c.proto.spec) for c in charts if "Validation mIoU" in c.proto.spec]
    # in percent, as the scores beside it (with the decimals the values' spread needs)
    assert len(val) == 1 and val[0]["layout"]["yaxis"]["tickformat"].endswith("%")
    assert any(c.value.startswith("The run's model: the evaluation with the best validation mIoU")
               for c in at.caption), [c.value for c in at.caption]  # how the scored model was chosen


def test_a_bad_value_is_refused(empty_store: Path) -> None:
    at = open_page("finetune")
    at.selectbox(key="ft-data").set_value("potsdam")
    at.number_input(key="ft-lr").set_value(0.0)
    at.button[0].click().run()
    assert len(errors(at)) == 1 and "2 settings to change" in errors(at)[0], errors(at)
    summary = errors(at)[0]  # both at once, in the form's words
    assert "**lr**" in summary and "“Data set folder (not synthetic)”" in summary and "data.root" not in summary
    assert len([m for m in at.markdown if m.value.startswith(":red[⚠")]) == 1  # beside lr (the other is the form's)
    assert list_runs(empty_store) == []


def test_launch_creates_a_finetuning_run(populated_store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))  # data stays the shared cache
    at = open_page("finetune")
    for key, value in {"ft-steps": 2, "ft-batch": 4, "ft-crop": 64, "ft-eval": 2, "ft-tiles": 48,
                       "ft-tile-size": 64, "ft-fraction": 1.0}.items():
        at.number_input(key=key).set_value(value)
    at.text_input(key="ft-name").set_value("page-ft")
    at.button[0].click().run()
    assert not at.exception and not errors(at), errors(at)
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == 1 and runs[0].kind() == "finetune"
    run = runs[0]
    deadline = time.time() + 240
    while run.is_live() and time.time() < deadline:
        time.sleep(0.5)
    assert run.state() == "completed", (run.path / "console.txt").read_text()[-2000:]
    assert run.read_json("test_metrics.json") is not None


def test_with_two_gpus_the_launch_uses_two_processes_and_the_colour_jitter(empty_store: Path, monkeypatch) -> None:
    """On a machine with 2 GPUs the form offers "GPUs" (both by default) and the launch is a torchrun of 2
    processes (tests/test_launch.py runs such a launch on 2 CPU ranks); the colour jitter and the weight averaging
    reach the config."""
    import core.device
    from core.store import launch

    seen: dict = {}

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen.update(kind=kind, cfg=cfg, processes=processes)
        raise OSError("not started in this test")

    monkeypatch.setattr(core.device, "gpu_count", lambda: 2)
    monkeypatch.setattr(launch, "launch", fake_launch)
    at = open_page("finetune")
    assert at.number_input(key="ft-gpus").value == 2 and not at.number_input(key="ft-gpus").disabled
    at.number_input(key="ft-jitter").set_value(3.0)
    at.button[0].click().run()
    assert seen["kind"] == "finetune" and seen["processes"] == 2 and seen["cfg"].data.colour_jitter == 3.0
    assert seen["cfg"].train.average_from is None  # 0 in the form: the best validation chooses
    at.selectbox(key="ft-device").set_value("cpu")
    at.number_input(key="ft-average").set_value(0.5)
    at.button[0].click().run()
    assert seen["processes"] == 1  # the CPU is one process
    assert seen["cfg"].train.average_from == 0.5


def test_with_one_gpu_or_none_the_gpu_count_is_fixed_at_one(empty_store: Path) -> None:
    at = open_page("finetune")
    assert at.number_input(key="ft-gpus").value == 1 and at.number_input(key="ft-gpus").disabled


def test_an_rgbn_encoder_fine_tunes_on_its_bands_unless_others_are_typed(empty_store: Path, monkeypatch) -> None:
    from core.ssl.pretrain import main as pretrain_main
    from core.store import launch

    root = Path(__file__).resolve().parent.parent
    assert pretrain_main(["--config", str(root / "configs/demo_cpu_rgbn.yaml"), "--no-progress", "name=rgbn",
                          "model.proj_hidden=32", "model.proj_dim=16", "data.num_tiles=24", "data.tile_size=64",
                          "data.image_size=32", "train.batch_size=8", "train.max_steps=1", "train.optimizer=adamw",
                          "train.knn_every=0"]) == 0
    seen: list = []
    monkeypatch.setattr(launch, "launch", lambda kind, cfg, *a, **k: seen.append(cfg) or
                        (_ for _ in ()).throw(OSError("not started in this test")))
    at = open_page("finetune")
    assert at.selectbox(key="ft-init").value.endswith("rgbn")  # the newest pretraining run
    at.button[0].click().run()
    assert seen[-1].data.bands == ["R", "G", "B", "NIR"]  # the encoder's bands
    at.text_input(key="ft-bands").set_value("NIR, R, G")
    at.button[0].click().run()
    assert seen[-1].data.bands == ["NIR", "R", "G"]
