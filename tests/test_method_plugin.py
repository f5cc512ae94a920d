"""Methods as plug-ins (issue 30): a method registered from this test file alone (no engine file touched) is a
value of ``method`` in configs and on the Pretrain page, trains through the real trainer with its own networks, step,
BatchNorm policy and card, and has its own config check; SimCLR and MoCo v2 are registered the same way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from core.config import ConfigError, load_config
from core.pretrain import main as pretrain_main
from core.ssl.methods import SimCLRStep
from core.ssl.models import SimCLR
from core.store.checkpoint import read_tensors
from core.ssl.registry import Method, get_method, method_label, method_names, register, unregister
from core.store.runs import list_runs

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config", str(ROOT / "configs/demo_cpu.yaml"), "--no-progress", "model.encoder=resnet18",
        "model.proj_hidden=16", "model.proj_dim=8", "data.name=synthetic", "data.num_tiles=24", "data.tile_size=40",
        "data.image_size=32", "train.batch_size=8", "train.knn_every=0", "train.max_steps=2", "train.ckpt_every=2",
        "loss.name=info_nce"]


class FrozenBNSimCLR(Method):
    """A SimCLR whose BatchNorm layers keep their running statistics (eval mode) while training: small, but its
    own networks, step, BatchNorm policy, card and check."""

    name, label = "frozen_bn_simclr", "SimCLR, frozen BatchNorm"
    built = 0

    def build_model(self, model_cfg: Any, bands: Any = None) -> nn.Module:
        type(self).built += 1
        return SimCLR(encoder=model_cfg.encoder, proj_hidden=model_cfg.proj_hidden, proj_dim=model_cfg.proj_dim,
                      bands=bands)

    def step(self, cfg, model, net, rank, world, gather, compile_loss):
        step = SimCLRStep(cfg, model, net, None, compile_loss)
        plain = step.loss

        def loss(*args: Any, **kwargs: Any):
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
            return plain(*args, **kwargs)

        step.loss = loss
        return step

    def check(self, cfg) -> None:
        if cfg.train.batch_size % 4:
            raise ValueError(f"train.batch_size ({cfg.train.batch_size}) must be a multiple of 4 for this method")

    def batchnorm(self, model, cfg, world, local_batch, sync):
        return model, {"batchnorm": "frozen: running statistics of the initial encoder"}


@pytest.fixture
def plugin():
    method = register(FrozenBNSimCLR())
    try:
        yield method
    finally:
        unregister(method.name)


def test_builtin_methods_are_registered_plugins() -> None:
    assert method_names()[:2] == ["simclr", "moco"]
    assert get_method("moco").queue and not get_method("simclr").queue
    assert method_label("moco") == "MoCo v2" and method_label("gone_method") == "gone_method"
    with pytest.raises(ConfigError, match="unknown method 'byol'; choose from simclr, moco"):
        load_config(str(ROOT / "configs/demo_cpu.yaml"), ["method=byol"])


def test_a_method_registered_from_a_test_file_trains_through_the_real_trainer(plugin, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.batch_size \(6\) must be a multiple of 4"):
        load_config(str(ROOT / "configs/demo_cpu.yaml"), [f"method={plugin.name}", "train.batch_size=6"])
    before = FrozenBNSimCLR.built
    assert pretrain_main([*TINY, "--runs-root", str(tmp_path), f"method={plugin.name}"]) == 0
    assert FrozenBNSimCLR.built == before + 1
    run = list_runs(tmp_path)[0]
    assert run.status()["state"] == "completed"
    card = json.loads((run.path / "checkpoints/last.json").read_text())
    assert card["method"] == plugin.name and card["batchnorm"].startswith("frozen")
    tensors = read_tensors(run.path / "checkpoints/last.safetensors")
    running = tensors["model.encoder.bn1.running_mean"]
    assert torch.count_nonzero(running) == 0  # its step froze BatchNorm: the statistics never left their start


def test_the_pretrain_page_offers_a_registered_method(plugin, empty_store: Path) -> None:
    from tests.pages import open_page

    at = open_page("pretrain")
    assert not at.exception, at.exception
    radio = next(r for r in at.radio if r.label == "Method")
    assert plugin.name in radio.options or "SimCLR, frozen BatchNorm" in radio.options


def test_a_method_file_is_found_without_an_edit_anywhere_else(tmp_path: Path, monkeypatch) -> None:
    """A new method is one file ``method_<name>.py`` beside the built-in ones: the registry imports it."""
    import sys

    from core.ssl import registry

    package = tmp_path / "toyplugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "method_toy.py").write_text(
        "from core.ssl.methods import SimCLRMethod\nfrom core.ssl.registry import register\n\n\n"
        "class Toy(SimCLRMethod):\n    name, label = 'toy', 'Toy SimCLR'\n\n\nregister(Toy())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PLUGIN_PACKAGE", ("toyplugins", package))
    monkeypatch.setattr(registry, "_builtins_loaded", False)
    try:
        assert "toy" in method_names() and method_label("toy") == "Toy SimCLR"
        assert load_config(str(ROOT / "configs/demo_cpu.yaml"), ["method=toy"]).method == "toy"
    finally:
        unregister("toy")
        sys.modules.pop("toyplugins.method_toy", None)
