"""Whole-scene test scores equal what core.seg.segment's masks give; the linear probe end to end on tiny scenes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import ProbeConfig, SegDataConfig, validate_config
from core.data.labeled import DEEPGLOBE_CLASSES, build_seg_splits
from core.seg.metrics import confusion_matrix, scores_from_confusion
from core.seg.probe import _CACHE, run_probe
from core.seg.scene_eval import evaluate_scenes, whole_scenes_possible
from core.seg.segment_cli import main as segment_main
from core.seg.segmodel import build_seg_model, make_card, save_seg_checkpoint

H, W = 90, 100
DG = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255)], np.uint8)


@pytest.fixture()
def deepglobe(tmp_path, monkeypatch):
    """Six 100 x 90 scenes in DeepGlobe's layout, with blocks of classes and unknown (ignored) pixels."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    root = tmp_path / "dg" / "train"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(6):
        lab = np.zeros((H, W), np.int64)
        lab[:, 30:] = 1 + k % 3
        lab[50:, 60:] = 4
        img = (DG[lab] * 0.6 + rng.integers(0, 100, (H, W, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{k}_sat.png")  # lossless, so both readers see the same pixels
        mask = DG[lab].copy()
        mask[:5] = 0  # unknown: ignored
        Image.fromarray(mask).save(root / f"{k}_mask.png")
    for p in root.glob("*_sat.png"):  # DeepGlobe names its images .jpg; keep the pixels exact all the same
        p.rename(p.with_name(p.name.replace(".png", ".jpg")))
    return tmp_path / "dg"


def test_whole_scene_scores_equal_the_segment_commands_masks(deepglobe, tmp_path) -> None:
    splits = build_seg_splits(SegDataConfig(name="deepglobe", root=str(deepglobe), tile_size=32, val_fraction=0.2,
                                            test_fraction=0.34), progress=False)
    assert whole_scenes_possible(splits.test, [splits.train_all, splits.val])
    card = make_card(arch="unet", encoder="resnet18", classes=DEEPGLOBE_CLASSES)
    torch.manual_seed(0)
    model = build_seg_model(card).eval()
    ckpt = tmp_path / "model.safetensors"
    save_seg_checkpoint(ckpt, model, card)
    result = evaluate_scenes(model, splits.test, 6, 255, device="cpu", tile=64, overlap=0.25, card=card)
    names = [n.split("/")[-1] for n in result.scenes]
    assert len(names) == 2 and result.method == "whole scenes"
    images = [str(deepglobe / "train" / f"{n}_sat.jpg") for n in names]
    out = tmp_path / "out"
    assert segment_main([*images, "--checkpoint", str(ckpt), "--out", str(out), "--tile", "64", "--overlap", "0.25",
                         "--no-progress"]) == 0
    cm = torch.zeros(6, 6, dtype=torch.int64)
    labeled = 0
    for n in names:
        pred = np.asarray(Image.open(out / f"{n}_sat_mask.png"))
        rgb = np.asarray(Image.open(deepglobe / "train" / f"{n}_mask.png").convert("RGB"))
        target = np.full((H, W), 255, np.int64)
        for c, colour in enumerate(DG):
            target[(rgb == colour).all(axis=2)] = c
        labeled += int((target != 255).sum())
        cm += confusion_matrix(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target), 6)
    assert len(np.unique(np.asarray(Image.open(out / f"{names[0]}_sat_mask.png")))) >= 1
    assert result.scores.confusion == cm.tolist()  # each pixel once, as core.seg.segment sees it
    assert result.pixels == labeled == 2 * (H - 5) * W
    assert result.scores.miou == scores_from_confusion(cm).miou
    assert result.record()["evaluation"] == "whole scenes"


def test_probe_trains_a_linear_head_and_tests_whole_scenes(deepglobe) -> None:
    _CACHE.clear()
    cfg = validate_config({"seed": 1, "model": {"encoder": "resnet18", "init": "random", "input_scale": 0.5},
                           "data": {"name": "deepglobe", "root": str(deepglobe), "tile_size": 64,
                                    "val_fraction": 0.2, "test_fraction": 0.34},
                           "train": {"epochs": 3, "batch_size": 4, "lr": 0.05, "label_stride": 2, "test_tile": 64}},
                          ProbeConfig)
    first = run_probe(cfg, progress=False)
    assert first.split == "test" and len(first.test.scenes) == 2 and first.test.method == "whole scenes"
    assert len(first.losses) == 3 and first.losses[-1] < first.losses[0]  # the head learns
    record = first.record(cfg)
    assert record["protocol"] == "probe" and 0 <= record["miou"] <= 1 and set(record["iou"]) == {
        c["name"] for c in DEEPGLOBE_CLASSES}
    assert record["scenes_per_split"] == {"train": 3, "val": 1, "test": 2}
    assert len(_CACHE) == 2  # train and val features of this encoder
    again = run_probe(cfg, progress=False)  # same encoder and split: features from the cache, same result
    assert again.test.scores.confusion == first.test.scores.confusion
    other = run_probe(cfg.model_copy(update={"seed": 2}), progress=False)  # another random encoder
    assert other.test.scores.confusion != first.test.scores.confusion


def test_a_tile_smaller_than_the_padding_is_padded_by_its_edge() -> None:
    """A review: data.tile_size=16 ended fine-tuning in torch's "Padding size should be less than the corresponding
    input dimension" (a mirror of 16 px cannot fill 16 more)."""
    import torch

    from core.seg.scene_eval import _pad_to

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    padded, h, w = _pad_to(x, 8)
    assert padded.shape[-2:] == (8, 8) and (h, w) == (4, 4) and torch.equal(padded[..., :4, :4], x)
    assert torch.equal(padded[0, 0, 7, :4], x[0, 0, 3])  # the last row repeated
    mirrored, _, _ = _pad_to(torch.arange(36.0).reshape(1, 1, 6, 6), 8)  # enough pixels: mirrored, as before
    assert torch.equal(mirrored[0, 0, 6, :6], torch.arange(36.0).reshape(6, 6)[4])
