"""Nothing published carries the paths of the machine that made it (issue 11): every shipped card, every config
and class table, every result in docs/; and the export path makes cards portable on its own."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.store.checkpoint import read_metadata
from core.store.portable import ELSEWHERE, machine_paths, portable
from core.store.runs import REPO_ROOT

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "checkpoints").glob("*.safetensors")), ids=lambda p: p.name)
def test_shipped_cards_name_no_machine_paths(path: Path) -> None:
    assert machine_paths(read_metadata(path).get("card")) == []
    assert machine_paths(json.loads(path.with_suffix(".json").read_text())) == []


def test_configs_class_tables_and_published_results_name_no_machine_paths() -> None:
    texts = [*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("docs/*.json"), *ROOT.glob("docs/*.md")]
    assert len(texts) > 10
    for p in texts:
        text = p.read_text()
        assert "/work/" not in text and "/tmp/" not in text and str(REPO_ROOT) not in text, p
        if p.suffix == ".yaml":
            assert machine_paths(yaml.safe_load(text)) == [], p


def test_portable_keeps_project_paths_relative_and_hides_the_rest() -> None:
    card = {"source_run": "/tmp/ship_runs/20261126-x", "init": str(REPO_ROOT / "runs" / "r1"),
            "command": f"python -m core.export {REPO_ROOT}/runs/r1 --out checkpoints/m.safetensors",
            "nested": [{"root": "../shared/data/dubai"}], "n": 3}
    assert portable(card) == {"source_run": f"{ELSEWHERE}/20261126-x", "init": "runs/r1",
                              "command": "python -m core.export runs/r1 --out checkpoints/m.safetensors",
                              "nested": [{"root": "../shared/data/dubai"}], "n": 3}
    assert machine_paths(portable(card)) == [] and len(machine_paths(card)) == 3
