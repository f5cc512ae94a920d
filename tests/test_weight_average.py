"""Weight averaging of a fine-tuning run's last steps (``train.average_from``): the arithmetic, the held learning
rate, the re-measured BatchNorm, and the averaged model becoming the run's model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from core.seg.finetune_cli import main as finetune_main
from core.seg.segmodel import load_seg_model
from core.seg.weight_average import WeightAverage
from core.store.runs import list_runs

pytestmark = pytest.mark.slow  # seconds per test (processes, kills, browsers): the full suite, not the fast tier

ROOT = Path(__file__).resolve().parent.parent
TINY_FT = ["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress", "data.num_tiles=40",
           "data.tile_size=64", "data.crop_size=64", "data.val_fraction=0.2", "data.test_fraction=0.2",
           "data.label_fraction=1.0", "train.batch_size=4", "train.max_steps=8", "train.eval_every=4",
           "train.log_every=1"]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_the_average_is_the_mean_of_the_steps_after_the_start() -> None:
    net = _net()
    avg = WeightAverage(net, fraction=0.5, total_steps=6)  # averages the weights after steps 4, 5 and 6
    for done in range(1, 7):
        with torch.no_grad():
            net[0].weight.fill_(float(done))
        avg.after_step(net, done)
    assert avg.count == 3
    assert torch.allclose(avg.average.module[0].weight, torch.full((4, 3), 5.0))  # mean of 4, 5, 6
    assert [avg.lr_step(s) for s in range(6)] == [0, 1, 2, 3, 3, 3]  # the schedule stops decaying at the start
    assert "steps 4-6 (3 models)" in avg.describe(2)


def test_finish_measures_batchnorm_on_the_given_batches() -> None:
    net = _net()
    avg = WeightAverage(net, fraction=0.5, total_steps=2)
    avg.after_step(net, 2)
    with torch.no_grad():
        avg.average.module[1].running_mean.fill_(99.0)  # stale statistics must not survive
    batches = [torch.randn(16, 3) + 2.0 for _ in range(3)]
    model = avg.finish(iter(batches))
    with torch.no_grad():
        expected = torch.stack([model[0](b).mean(0) for b in batches]).mean(0)
    assert not model.training
    assert torch.allclose(model[1].running_mean, expected, atol=1e-5)


def test_a_fine_tuning_run_with_averaging_ships_the_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    runs = tmp_path / "runs"
    assert finetune_main([*TINY_FT, "train.average_from=0.5", "name=avg", "--runs-root", str(runs)]) == 0
    [run] = list_runs(runs)
    ckpts = run.path / "checkpoints"
    # the learning rate decays until step 4, then holds
    lrs = {m["step"]: m["lr"] for m in run.metrics() if "lr" in m}
    assert lrs[3] > lrs[4] > lrs[5] and lrs[5] == lrs[6] == lrs[7] == lrs[8]
    # the run's model is the average, with its own validation record and a card that says how it was made
    model, card = load_seg_model(ckpts / "best.safetensors")
    assert card["selection"].startswith("mean of the weights after steps 5-8 (4 models)"), card["selection"]
    rows = [m for m in run.metrics() if m.get("model") == "weight average"]
    assert len(rows) == 1 and card["metrics"]["miou"] == pytest.approx(rows[0]["miou"])
    assert json.loads((run.path / "confusion.json").read_text())["model"] == "weight average"
    # its weights are the saved running mean's (BatchNorm buffers aside: those were measured again)
    mean = load_file(str(ckpts / "average-8.safetensors"))
    best = load_file(str(ckpts / "best.safetensors"))
    def in_mean(k: str) -> str:
        return "model.module." + k[len("model."):]
    weights = [k for k in best if k.endswith(".weight") and in_mean(k) in mean]
    assert len(weights) > 10
    for k in weights:
        assert torch.equal(best[k], mean[in_mean(k)]), k
    last = load_file(str(ckpts / "last.safetensors"))
    assert any(not torch.equal(best[k], last[k]) for k in weights)  # not simply the last step
    assert [p.name for p in ckpts.glob("average-*.safetensors")] == ["average-8.safetensors"]  # older ones pruned
    assert json.loads((run.path / "test_metrics.json").read_text())["miou"] >= 0
    assert "testing the weight average on whole scenes" in run.log_text()
    assert model(torch.zeros(1, 3, 64, 64)).shape[1] == 6


def test_without_averaging_the_card_says_the_best_validation_chose(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    runs = tmp_path / "runs"
    assert finetune_main([*TINY_FT, "train.max_steps=4", "name=plain", "--runs-root", str(runs)]) == 0
    [run] = list_runs(runs)
    _, card = load_seg_model(run.path / "checkpoints/best.safetensors")
    assert card["selection"].startswith("the evaluation with the best validation mIoU")
    assert not list((run.path / "checkpoints").glob("average-*"))


def test_no_validation_trains_on_every_scene_and_ships_the_average(tmp_path: Path, monkeypatch) -> None:
    """data.val_fraction 0: the validation scenes train too, no evaluation chooses, the average is the model."""
    from core.config import FinetuneConfig, load_config
    from core.data.labeled import build_seg_splits

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    runs = tmp_path / "runs"
    args = [*TINY_FT, "data.val_fraction=0", "train.average_from=0.5", "name=noval", "--runs-root", str(runs)]
    assert finetune_main(args) == 0
    [run] = list_runs(runs)
    assert not [m for m in run.metrics() if m.get("split") == "val"]
    assert not (run.path / "confusion.json").exists() and not run.validates()
    _, card = load_seg_model(run.path / "checkpoints/best.safetensors")
    assert card["selection"].startswith("mean of the weights") and "metrics" not in card
    assert json.loads((run.path / "test_metrics.json").read_text())["miou"] >= 0
    # the tiles the validation share held out now train; the test split is the same
    data = [a for a in TINY_FT if a.startswith("data.")]
    demo = ROOT / "configs/finetune_demo_cpu.yaml"
    with_val = build_seg_splits(load_config(demo, data, model=FinetuneConfig).data, progress=False)
    without = build_seg_splits(load_config(demo, [*data, "data.val_fraction=0", "train.average_from=0.5"],
                                           model=FinetuneConfig).data, progress=False)
    assert len(without.val) == 0 and len(without.train) == len(with_val.train) + len(with_val.val)
    assert without.test.indices.tolist() == with_val.test.indices.tolist()
    # nothing to score the model at all is refused before training
    assert finetune_main([*args, "data.test_fraction=0"]) == 2
