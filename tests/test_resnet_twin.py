"""Pretraining's ResNet encoders (``core.ssl.resnet``, built without smp so that a launched run starts without
importing smp, timm and torchvision) are smp's encoders bit for bit: the same names, the same seeded weights, the
same features; so runs, pinned losses and checkpoints are what they were, and weights load either way."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from segmentation_models_pytorch.encoders import get_encoder

from core.config import ENCODERS
from core.ssl.models import build_encoder
from core.ssl.resnet import BLOCKS, ResNetEncoder

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model.encoder=resnet18", "model.proj_hidden=32", "model.proj_dim=16", "data.name=synthetic",
        "data.num_tiles=8", "data.tile_size=32", "data.image_size=32", "train.batch_size=4", "train.max_steps=1",
        "train.ckpt_every=1"]


def _both(name: str, channels: int, seed: int = 5) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    theirs = get_encoder(name, in_channels=channels, depth=5, weights=None)
    torch.manual_seed(seed)
    ours = ResNetEncoder(name, in_channels=channels)
    return theirs, ours


def test_every_encoder_we_offer_is_rebuilt() -> None:
    assert set(BLOCKS) == set(ENCODERS)


@pytest.mark.parametrize("name, channels", [("resnet18", 3), ("resnet18", 4), ("resnet50", 3)])
def test_a_seed_gives_smps_weights_and_features(name: str, channels: int) -> None:
    theirs, ours = _both(name, channels)
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    assert list(theirs.out_channels) == ours.out_channels
    x = torch.randn(2, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    for train in (True, False):
        theirs.train(train), ours.train(train)
        with torch.no_grad():
            fa, fb = theirs(x), ours(x)
        assert len(fa) == len(fb) == 6 and all(torch.equal(p, q) for p, q in zip(fa, fb))


@pytest.mark.parametrize("name", ENCODERS)
def test_every_depth_has_smps_names_and_shapes(name: str) -> None:
    """The deeper encoders differ from those above in their blocks per stage only; on the meta device (no memory,
    no arithmetic) their layouts are compared whole."""
    with torch.device("meta"):
        theirs, ours = get_encoder(name, in_channels=4, depth=5, weights=None), ResNetEncoder(name, in_channels=4)
    layout = [[(k, v.shape) for k, v in net.state_dict().items()] for net in (theirs, ours)]
    assert layout[0] == layout[1]
    assert list(theirs.out_channels) == ours.out_channels


def test_weights_move_between_ours_and_smps(tmp_path: Path) -> None:
    """A pretrained encoder loads into an smp segmentation model's encoder, and back (strict names)."""
    theirs, ours = _both("resnet18", 3, seed=1)
    torch.manual_seed(2)
    trained = ResNetEncoder("resnet18")
    theirs.load_state_dict(trained.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in ours.state_dict().items())
    assert isinstance(build_encoder("resnet34"), ResNetEncoder)


PROBE = ["data.num_tiles=16", "data.tile_size=64", "data.val_fraction=0.25", "data.test_fraction=0.25",
         "train.epochs=1", "train.batch_size=8", "train.test_tile=64"]


@pytest.mark.slow  # a fresh process that pretrains and probes: the full suite, not the fast tier
def test_a_pretraining_run_and_a_probe_import_neither_smp_nor_timm_nor_torchvision(tmp_path: Path) -> None:
    """What this module exists for: a whole (tiny) pretraining run with the CPU presets' AdamW, checkpoint and export
    included, then a linear probe of its encoder (a comparison's evaluation unit), in one process."""
    code = ("import sys; from core.ssl.pretrain import main; from core.seg.probe import main as probe;"
            "from core.store.runs import list_runs;"
            f"assert main(['--no-progress', '--config', 'configs/demo_cpu.yaml', *{TINY!r}]) == 0;"
            "run = list_runs()[0].path;"
            f"assert probe(['--no-progress', '--config', 'configs/probe_demo_cpu.yaml', *{PROBE!r}, "
            "f'model.init={run}']) == 0;"
            "print(sorted({n.split('.')[0] for n in sys.modules} & {'segmentation_models_pytorch', 'timm', "
            "'torchvision'}))")
    env = {**os.environ, "FALSE_WB_RUNS": str(tmp_path / "runs"), "FALSE_WB_DATA": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
