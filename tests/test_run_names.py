"""A pretraining run is named the same way in tables, the Pretrain page's caption and the terminal's progress bar,
and the bar counts treated pairs in its treatment's word."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.config import PretrainConfig, validate_config
from core.config.strategy import method_and_strategy
from core.ssl.pretrain import Trainer


@pytest.mark.parametrize("loss, name", [
    ({"name": "false"}, "simclr + FALSE"),
    ({"name": "info_nce"}, "simclr + InfoNCE"),
    ({"name": "dcl", "tau_plus": 0.2}, "simclr + DCL (tau+ 0.2)"),
    ({"name": "false", "detector": "nearest", "treatment": "eliminate"}, "simclr + nearest + eliminate"),
    ({"name": "false", "detector": "oracle", "treatment": "fncc"}, "simclr + oracle (uses labels) + fncc"),
])
def test_a_run_name_spaces_every_part_alike(loss: dict, name: str) -> None:
    assert method_and_strategy("simclr", loss) == name


@pytest.mark.parametrize("loss, shown", [
    ({"name": "false"}, {"cal": 3}),
    ({"name": "false", "detector": "nearest", "treatment": "eliminate"}, {"treated": 3}),
    ({"name": "false", "detector": "support", "treatment": "attract"}, {"treated": 3}),
    ({"name": "info_nce"}, {}),  # flags nothing: no count of zeros
    ({"name": "dcl"}, {}),
])
def test_the_progress_bar_counts_treated_pairs_in_the_treatments_word(loss: dict, shown: dict) -> None:
    cfg = validate_config({"loss": loss}, PretrainConfig)
    assert Trainer._treated(SimpleNamespace(cfg=cfg), {"calibrated": 3}) == shown
