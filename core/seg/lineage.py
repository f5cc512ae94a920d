"""What a segmentation model's encoder was pretrained on, so that a test score is called unseen only when it is.

Why: fine-tuning never reads its test scenes, but the encoder it starts from may have been pretrained (unlabeled) on
them: a pretraining run made before ``data.pretrain_splits`` read every tile, and any run may be given a folder that
holds the test scenes. The scenes a pretraining read are in its ``data.json`` (``pretrain_scenes``); an exported
encoder carries them in its card, and a segmentation model carries its encoder's list on, so the record follows the
weights wherever they go (a second round of fine-tuning from a segmentation model included).
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ..store.checkpoint import CheckpointError, read_metadata
from .scene_role import VAIHINGEN_PREFIX, is_scene

KEY = "pretrain_scenes"  # on encoder and segmentation cards: the scenes the encoder's pretraining read


def run_pretrain_scenes(run_path: Path) -> list[str] | None:
    """The scenes a pretraining run read (its ``data.json``); None when the run does not record them."""
    record = Path(run_path) / "data.json"
    try:
        data = json.loads(record.read_text()) if record.is_file() else {}
        scenes = data.get(KEY)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(scenes, list) or (not scenes and data.get("pretrain_splits") is None):
        return None  # an unlabeled folder's run from before session 42 wrote [] for "not named", not for "none"
    return [str(s) for s in scenes]


def init_pretrain_scenes(init: Path | None) -> list[str] | None:
    """The scenes the encoder file ``init`` (as ``resolve_init`` gives it) has read before: none for a random
    encoder, its card's record, else its run folder's (a run's own ``checkpoints/encoder.safetensors``); a
    segmentation model adds the scenes it was fine-tuned and validated on. None when nothing records them (an encoder
    exported before cards held them, a file made elsewhere)."""
    if init is None:
        return []
    try:
        card = read_metadata(init).get("card")
    except (CheckpointError, ValueError, OSError):  # a file made elsewhere: its metadata is not ours
        card = None
    if not isinstance(card, dict):
        return None
    record = [str(s) for s in card[KEY]] if isinstance(card.get(KEY), list) else (
        run_pretrain_scenes(init.parent.parent) if init.parent.name == "checkpoints" else None)
    if record is None or card.get("kind") != "segmentation":
        return record
    trained = (card.get("evaluation") or {}).get("training_scenes")
    if not isinstance(trained, list):  # a second round whose first round's scenes are not named: unknown
        return None
    return record + [str(s) for s in trained] + [str(s) for s in (card.get("domain") or {}).get("validation_scenes")
                                                 or []]


def seen_in_pretraining(card: dict[str, Any], scenes: list[str]) -> list[str] | None:
    """Which of ``scenes`` the model's encoder was pretrained on; None when its card does not record that. A scene
    counts as read when a pretraining scene is it or ends with it (a folder of copies: ``dubai/tile_3/image_part_001``
    holds ``tile_3/image_part_001``), by the data sets' file-name rules (``scene_role.is_scene``); a copy renamed or
    flattened out of its folders is not recognised."""
    record = card.get(KEY)
    if not isinstance(record, list):
        model = (card.get("config") or {}).get("model") if isinstance(card.get("config"), dict) else None
        if not (isinstance(model, dict) and model.get("init") == "random"):
            return None
        record = []  # a random encoder: no pretraining at all
    by_name: dict[str, list[tuple[str, ...]]] = {}  # the names a record's last part can match (is_scene's rules)
    for r in record:
        parts = PurePosixPath(str(r)).parts
        if parts:
            for name in _names_matched(parts[-1]):
                by_name.setdefault(name, []).append(parts)
    return [s for s in scenes if (want := PurePosixPath(s).parts) and any(
        is_scene(parts, want) for parts in by_name.get(want[-1], ()))]


def _names_matched(stem: str) -> set[str]:
    """Every scene name ``stem`` can be by ``is_scene``: itself, without Vaihingen's prefix, and each part before
    an underscore (DeepGlobe's ``10233_sat`` is ``10233``). An index: a scene is compared with its candidates only,
    not with every recorded image (1.1 s for the synthetic card's 1,600 x 200 before)."""
    names = {stem, stem.removeprefix(VAIHINGEN_PREFIX)}
    names |= {stem[:i] for i, ch in enumerate(stem) if ch == "_"}
    return names


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def pretraining_note(card: dict[str, Any], scenes: dict[str, list[str]]) -> str | None:
    """A fine-tuning run's warning when its encoder was pretrained on its test or validation scenes, with both
    causes: a pretraining that read every split, or this run's other split (a review changed the test share of an
    encoder pretrained on [train] and was told to pretrain on [train]). Validation scenes alone: said as such, the
    test score standing (the DGLC presets pretrain on [train, val]; a review read "NOT an unseen score" of their
    test scenes, which no stage saw)."""
    held = [(split, seen) for split in ("test", "val")
            if (seen := seen_in_pretraining(card, list(scenes.get(split) or [])))]
    if not held:
        return None
    what = " and ".join(f"{len(seen)} of its {split} scenes ({_few(seen)})" for split, seen in held)
    if [split for split, _ in held] == ["val"]:  # the test score stands: a preset may pretrain on [train, val]
        return (f"model.init has read {what} before (pretraining, or an earlier fine-tuning, unlabeled or not): its "
                "validation scores are not on unseen scenes; its test scenes are unseen, so the test score is one. "
                "To keep validation unseen too, pretrain with data.pretrain_splits=[train]")
    splits = "[train]" if any(split == "val" for split, _ in held) else "[train] (or [train, val])"
    return (f"model.init has read {what} before (pretraining, or an earlier fine-tuning): its scores there are not "
            f"on unseen scenes. Either that pretraining read them (pretrain with data.pretrain_splits={splits} on "
            "this data set, or on a folder without them), or this run splits the scenes otherwise than it did (keep "
            "its data.seed, data.num_tiles, data.val_fraction, data.test_fraction and data.split_unit, and name as "
            "data.test_scenes only scenes it held out)")


def init_note(init: Path | None, scenes: dict[str, list[str]]) -> str | None:
    """``pretraining_note`` for an encoder file (``resolve_init``'s; None: random) without a card of its own yet:
    a probe's, whose frozen encoder must not have read the scenes that score it."""
    record = init_pretrain_scenes(init)
    return None if record is None else pretraining_note({KEY: record}, scenes)


def unseen_words(seen: list[str] | None, total: int) -> tuple[str, str | None]:
    """How to name a model's test scenes, given which of them (``seen``, None: not recorded) its encoder was
    pretrained on, and a note where the name needs one: "scenes it never saw" only when no stage read them."""
    if seen is None:
        return "scenes fine-tuning never saw", ("note: the model's card does not record what its encoder was "
                                                "pretrained on, so these scenes may have been in that pretraining "
                                                "(unlabeled)")
    if seen:
        return "scenes fine-tuning never saw", (f"note: its encoder had read {len(seen)} of these {total} scenes "
                                                f"before ({_few(seen)}; in pretraining, unlabeled, or an earlier "
                                                "fine-tuning): not a score on unseen scenes")
    return "scenes it never saw", None
