"""Which models exist on this machine: the shipped checkpoints and those the runs wrote.

Why one place: the Segment, Embeddings and Fine-tune pages, the Gradio demo and the benchmarks all offer the same
choices, labelled the same way, and read the cards from the ``.json`` beside each file (cheap: no tensors).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, read_metadata
from .file_versions import json_file, read_once
from .run_state import SHOWN_LIVE
from .run_summary import test_not_unseen
from .runs import REPO_ROOT, kind_of_config, list_runs

SHIPPED = REPO_ROOT / "checkpoints"


def named_checkpoint(text: str | Path) -> Path:
    """A checkpoint as a command line names it: a path, or a shipped model's name as reports and pages call it
    (``deepglobe_seg``: ``checkpoints/deepglobe_seg.safetensors``) when no file of that name is here."""
    path = Path(text)
    shipped = SHIPPED / f"{path.name}.safetensors"
    if not path.exists() and len(path.parts) == 1 and not path.suffix and shipped.is_file():
        return shipped
    return path


@dataclass(frozen=True)
class ModelEntry:
    label: str
    path: Path
    card: dict[str, Any]
    test: dict[str, Any] | None = None  # a run's test_metrics.json (a shipped card holds its own)

    @property
    def kind(self) -> str:
        return str(self.card.get("kind", "?"))

    @property
    def shipped(self) -> bool:
        return self.label.startswith("shipped: ")

    def test_miou(self) -> float | None:
        """mIoU on the held-out scenes its card names (``domain.test_scenes``), when it was tested on exactly those and
        they were unseen (a run whose encoder had read them has no such figure: it must not win a choice by it)."""
        scenes = (self.card.get("domain") or {}).get("test_scenes")
        for test in (self.test, self.card.get("evaluation"), self.card.get("test_metrics")):
            if isinstance(test, dict) and test_not_unseen(test):
                return None
            miou = test.get("miou") if isinstance(test, dict) else None
            if isinstance(miou, (int, float)) and scenes and list(test.get("scenes") or []) == list(scenes):
                return float(miou)
        return None


def _card(path: Path) -> dict[str, Any]:
    """The card from the ``.json`` beside the file, else from the file's header (runs write no ``.json``)."""
    try:
        card = json_file(path.with_suffix(".json"))
        return card if isinstance(card, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    try:
        card = read_once(path, read_metadata, "header").get("card")
    except (OSError, CheckpointError, json.JSONDecodeError):
        return {}
    return card if isinstance(card, dict) else {}


def _shipped(kind: str) -> list[ModelEntry]:
    out = []
    for p in sorted(SHIPPED.glob("*.safetensors")):
        card = _card(p)
        if card.get("kind") == kind:
            out.append(ModelEntry(f"shipped: {p.stem}", p, card))
    return out


def shipped_class_sets() -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, classes) of every shipped segmentation model: the class colours a user's mask may be drawn in."""
    return [(e.path.stem, list(e.card.get("classes") or [])) for e in _shipped("segmentation")]


def segmentation_models(root: Path | None = None) -> list[ModelEntry]:
    """Shipped segmentation checkpoints (the default first), then each fine-tuning run's best model, once its run
    has ended: a live run's best model is still changing and has no test score yet (a review's demo server offered,
    and weighed by domain fit, a run still testing its 10-step model)."""
    shipped = _shipped("segmentation")
    shipped.sort(key=lambda e: e.path.name != "dubai_seg.safetensors")
    runs = []
    for run in reversed(list_runs(root)):
        best = run.checkpoint_dir / "best.safetensors"
        if best.is_file() and run.kind() == "finetune" and run.state() not in SHOWN_LIVE:  # its status, no lock
            test = run.read_json("test_metrics.json")
            runs.append(ModelEntry(f"run: {run.id}", best, _card(best), test if isinstance(test, dict) else None))
    return shipped + runs


def encoder_models(root: Path | None = None) -> list[ModelEntry]:
    """Pretrained encoders: each pretraining run's latest encoder, then the shipped ones."""
    runs = []
    for run in reversed(list_runs(root)):
        enc = run.checkpoint_dir / "encoder.safetensors"
        if enc.is_file() and run.kind() == "pretrain":
            runs.append(ModelEntry(f"run: {run.id}", enc, _card(enc)))
    return runs + _shipped("encoder")


CONFIGS = REPO_ROOT / "configs"


def config_presets(kind: str) -> dict[str, Path]:
    """The YAML presets in ``configs/`` for one run kind (pretrain, finetune, compare), by file stem."""
    import yaml

    from .file_versions import yaml_file

    out: dict[str, Path] = {}
    for p in sorted(CONFIGS.glob("*.yaml")):
        try:
            raw = yaml_file(p) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(raw, dict):
            continue
        if kind_of_config(raw) == kind:
            out[p.stem] = p
    return out
