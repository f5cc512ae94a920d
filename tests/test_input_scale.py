"""model.input_scale: the model sees coarser pixels and answers at the input's size, so training, scoring and
sliding-window inference need to know nothing of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ConfigError, FinetuneConfig, load_config
from core.seg.infer import predict
from core.seg.segmodel import build_seg_model, load_seg_model, make_card, save_seg_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CLASSES = [{"name": n, "color": [i * 40, 0, 0]} for i, n in enumerate(("a", "b", "c"))]


def _encoder_input_sizes(model: torch.nn.Module) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    model.encoder.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[-2:])))
    return seen


@pytest.mark.parametrize("aux", [False, True])
def test_the_encoder_sees_the_scaled_input_and_the_logits_come_back_at_its_size(aux: bool) -> None:
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES, aux_head=aux, input_scale=0.5)
    model = build_seg_model(card).eval()
    seen = _encoder_input_sizes(model)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 192))
    assert seen == [(64, 96)] and out.shape == (2, 3, 128, 192)
    model.train()
    logits = model(torch.rand(2, 3, 128, 128))
    if aux:
        assert isinstance(logits, tuple) and [t.shape for t in logits] == [(2, 3, 128, 128)] * 2
    else:
        assert logits.shape == (2, 3, 128, 128)
    assert seen[-1] == (64, 64)


@pytest.mark.parametrize("side", [96, 160, 224, 512])
def test_every_input_size_is_seen_at_the_same_pixel_size(side: int) -> None:
    """A 512 px window and a short image's 160 px one are both halved exactly (then padded to the stride), so
    inference sees the pixel size training saw; the padding never reaches the logits."""
    model = build_seg_model(make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES,
                                      input_scale=0.5)).eval()
    x = torch.rand(1, 3, side, side + 64)
    shrunk, inner = model._shrink(x)
    assert inner == (side // 2, side // 2 + 32) and shrunk.shape[-2] % 32 == 0 and shrunk.shape[-1] % 32 == 0
    assert torch.allclose(shrunk[..., :inner[0], :inner[1]], torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)
    with torch.no_grad():
        assert model(x).shape == (1, 3, side, side + 64)


def test_a_scale_that_is_no_whole_ratio_rounds_each_side_to_a_pixel_not_to_the_stride() -> None:
    model = build_seg_model(make_card(arch="unet", encoder="resnet18", classes=CLASSES, input_scale=0.3)).eval()
    seen = _encoder_input_sizes(model)
    shrunk, inner = model._shrink(torch.rand(1, 3, 100, 300))
    assert inner == (30, 90) and shrunk.shape[-2:] == (32, 96)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 100, 300))
    assert seen == [(32, 96)] and out.shape == (1, 3, 100, 300)


def test_the_domain_fingerprint_reads_the_encoder_at_the_models_scale() -> None:
    from core.seg.domain import pooled_features

    model = build_seg_model(make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES,
                                      input_scale=0.5)).eval()
    seen = _encoder_input_sizes(model)
    pooled_features(model, np.zeros((2, 64, 64, 3), np.uint8))
    assert seen == [(32, 32)]


def test_cards_keep_the_scale_and_older_cards_read_as_full_size(tmp_path: Path) -> None:
    plain = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    assert "input_scale" not in plain and build_seg_model(plain).input_scale == 1.0
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES, input_scale=0.5)
    path = tmp_path / "m.safetensors"
    save_seg_checkpoint(path, build_seg_model(card), card)
    model, loaded = load_seg_model(path)
    assert loaded["input_scale"] == 0.5 and model.input_scale == 0.5
    mask = predict(model, np.random.default_rng(0).integers(0, 255, (150, 170, 3), dtype=np.uint8), tile=64)
    assert mask.shape == (150, 170)


def test_a_card_with_a_scale_out_of_range_is_refused_naming_it(tmp_path: Path) -> None:
    from core.store.checkpoint import CheckpointError

    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    path = tmp_path / "m.safetensors"
    save_seg_checkpoint(path, build_seg_model(card), {**card, "input_scale": 3})
    with pytest.raises(CheckpointError, match="input_scale"):
        load_seg_model(path)
    for bad in (True, "0.5", None, float("nan"), 0):
        save_seg_checkpoint(path, build_seg_model(card), {**card, "input_scale": bad})
        with pytest.raises(CheckpointError, match="input_scale .* is not a number in"):
            load_seg_model(path)


@pytest.mark.parametrize("override, needle", [
    (["model.input_scale=0"], "model.input_scale"),
    (["model.input_scale=1.5"], "model.input_scale"),
    (["data.crop_size=64", "model.input_scale=0.25"], "model.input_scale: a 64 px crop at scale 0.25 is 16 px"),
])
def test_bad_scales_fail_at_load_naming_the_field(override: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(ROOT / "configs/finetune_demo_cpu.yaml", override, model=FinetuneConfig)


def test_small_crops_at_full_scale_stay_allowed_at_the_encoders_stride() -> None:
    """At scale 1 the model does not pad: a crop off the encoder's stride failed in smp after the run folder was made
    (40 px at output stride 16); it is refused at load, naming the field. A scaled model pads, so any crop goes."""
    cfg = load_config(ROOT / "configs/finetune_demo_cpu.yaml", ["data.crop_size=48"], model=FinetuneConfig)
    assert cfg.data.crop_size == 48 and cfg.model.input_scale == 1.0
    with pytest.raises(ConfigError, match="data.crop_size: 40 px is no multiple of 16, the stride of the deeplabv3"):
        load_config(ROOT / "configs/finetune_demo_cpu.yaml", ["data.crop_size=40"], model=FinetuneConfig)
    with pytest.raises(ConfigError, match="data.crop_size: 48 px is no multiple of 32, the stride of the fpn"):
        load_config(ROOT / "configs/finetune_demo_cpu.yaml", ["data.crop_size=48", "model.arch=fpn"],
                    model=FinetuneConfig)
    unet = load_config(ROOT / "configs/finetune_demo_cpu.yaml", ["data.crop_size=40", "model.arch=unet"],
                       model=FinetuneConfig)  # smp's U-Net takes any side
    assert unet.data.crop_size == 40
    assert load_config(ROOT / "configs/finetune_demo_cpu.yaml", ["data.crop_size=40", "model.input_scale=0.8"],
                       model=FinetuneConfig).data.crop_size == 40


@pytest.mark.slow  # two runs or a run and its scoring: the full suite (the fast tier is kept under 3 minutes)
def test_fine_tuning_at_half_scale_trains_scores_and_writes_the_scale_on_its_card(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from core.seg.finetune_cli import main as finetune_main
    from core.store.runs import list_runs

    monkeypatch.setenv("FALSE_WB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    assert finetune_main(["--config", str(ROOT / "configs/finetune_demo_cpu.yaml"), "--no-progress",
                          "data.num_tiles=12", "data.tile_size=64", "data.crop_size=64", "data.val_fraction=0.25",
                          "data.test_fraction=0.25", "train.batch_size=4", "train.max_steps=2",
                          "train.eval_every=2", "model.input_scale=0.5", "name=half"]) == 0
    run = list_runs(tmp_path / "runs")[0]
    model, card = load_seg_model(run.path / "checkpoints/best.safetensors")
    assert card["input_scale"] == 0.5 and model.input_scale == 0.5 and "domain" in card
    test = json.loads((run.path / "test_metrics.json").read_text())
    assert test["pixels"] == test["tiles"] * 64 * 64 and 0.0 <= test["miou"] <= 1.0
