"""A fine-tuning step too large for the host is refused before it starts, naming the fields (a review's batch of
4096 took 19 of 23 GB within 40 s, in its first step)."""
from __future__ import annotations

import resource

import pytest
import torch

from core.config import ConfigError
from core.seg.segmodel import build_seg_model, make_card
from core.step_memory import activation_bytes_per_pixel, available_host_bytes, check_step_memory, weight_bytes

CLASSES = [{"name": str(i), "color": [i, i, i]} for i in range(3)]


def small_model():
    return build_seg_model(make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES, ignore_index=255))


def test_the_estimate_follows_a_measured_step() -> None:
    """The leaf outputs of one forward pass are what a training step keeps: within a factor of 1.5 of the peak
    memory a real step adds (measured at 6 x 128 px: tens of MB, above the allocator's noise)."""
    model = small_model()
    per_pixel = activation_bytes_per_pixel(model, 3)
    assert 300 < per_pixel < 5000 and model.training  # about 1.2 kB per pixel; the mode is given back
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    x, y = torch.randn(6, 3, 128, 128), torch.randint(0, 3, (6, 128, 128))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    estimate = per_pixel * 6 * 128 * 128 + weight_bytes(model)  # the first backward makes the gradients too
    assert grew < 1.5 * estimate, (grew, estimate)


def test_a_step_that_does_not_fit_names_the_batch_or_the_crop() -> None:
    model, cpu = small_model(), torch.device("cpu")
    per_tile = activation_bytes_per_pixel(model, 3) * 256 * 256
    check_step_memory(model, 3, 8, 256, cpu, available=int(100 * per_tile))  # 8 tiles in room for 80: fine
    with pytest.raises(ConfigError) as err:
        check_step_memory(model, 3, 657, 256, cpu, available=int(100 * per_tile), asked=4096)
    said = str(err.value)
    assert said.startswith("train.batch_size 4096 (657 per step: the training tiles) x data.crop_size 256 px")
    fits = int((0.8 * int(100 * per_tile) - 3 * weight_bytes(model)) // per_tile)  # room for 80, less the weights'
    assert 70 < fits < 80 and f"at most {fits} tiles of 256 px fit" in said
    assert err.value.problems[0][0] == "train.batch_size"
    with pytest.raises(ConfigError) as err:
        check_step_memory(model, 3, 2, 4000, cpu, available=int(100 * per_tile))
    assert "lower data.crop_size" in str(err.value) and err.value.problems[0][0] == "data.crop_size"
    check_step_memory(model, 3, 657, 256, torch.device("meta"), available=1)  # a GPU's own error says it
    check_step_memory(model, 3, 657, 256, cpu, available=0)  # unknown (no /proc/meminfo): not judged


def test_available_memory_is_read_from_meminfo(tmp_path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       24000000 kB\nMemAvailable:   12000000 kB\n")
    assert available_host_bytes(tmp_path / "meminfo") == 12000000 * 1024
    assert available_host_bytes(tmp_path / "missing") is None


@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_both_trainers_refuse_a_step_too_large_before_any_run_folder(tmp_path, monkeypatch, capsys, kind) -> None:
    import core.step_memory as step_memory
    from core.seg.finetune_cli import main as finetune_main
    from core.ssl.pretrain import main as pretrain_main

    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(step_memory, "available_host_bytes", lambda: 50_000_000)  # 50 MB free
    common = ["train.max_steps=1", "train.device=cpu", "data.tile_size=64", "data.num_tiles=24"]
    if kind == "pretrain":
        rc = pretrain_main(["--config", "configs/demo_cpu.yaml", "--runs-root", str(tmp_path / "runs"),
                            "--no-progress", *common, "train.batch_size=16", "data.image_size=64"])
        said = "train.batch_size 16 (2 views each) x data.image_size 64 px"
    else:
        rc = finetune_main(["--config", "configs/finetune_demo_cpu.yaml", "--runs-root", str(tmp_path / "runs"),
                            "--no-progress", *common, "train.batch_size=16", "data.crop_size=64",
                            "data.label_fraction=1.0"])
        said = "train.batch_size 16 x data.crop_size 64 px"
    err = capsys.readouterr().err
    assert rc == 2 and said in err and "GB free" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
