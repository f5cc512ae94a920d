"""Presets fill the launch forms (issue 26): on the Pretrain page, as on the Fine-tune page
(tests/test_page_finetune.py), picking a preset sets every field it names, and Launch runs the preset as written."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import PretrainConfig, load_config
from core.store.catalog import config_presets
from tests.pages import errors, open_page

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("preset", sorted(config_presets("pretrain")))
def test_a_pretrain_preset_fills_the_form_and_launches_exactly_itself(empty_store: Path, monkeypatch,
                                                                       preset: str) -> None:
    from core.store import launch

    seen: list = []

    def fake_launch(kind, cfg, root=None, name=None, processes=1):
        seen.append(cfg)
        raise OSError("not started in this test")

    monkeypatch.setattr(launch, "launch", fake_launch)
    import core.seg.data_check as data_check  # a preset's data is ../shared/data or data/: tests never read it

    monkeypatch.setattr(data_check, "pretrain_data_problem", lambda cfg, world=1: None)
    want: PretrainConfig = load_config(ROOT / f"configs/{preset}.yaml")
    at = open_page("pretrain")
    at.selectbox(key="pre-preset").set_value(preset).run()
    assert not at.exception and not errors(at), errors(at)
    shown = {name: at.session_state[f"pre-{preset}-{name}"] for name in ("data", "folder", "batch", "lr", "steps")}
    assert shown["data"] == want.data.name and shown["folder"] == (want.data.root or "")
    assert shown["batch"] == want.train.batch_size and shown["lr"] == pytest.approx(want.train.lr)
    if want.train.max_steps is not None:
        assert shown["steps"] == want.train.max_steps
    at.button(key="pretrain-launch").click().run()
    assert errors(at) == ["Could not start the run: not started in this test"]
    assert seen[-1] == want
