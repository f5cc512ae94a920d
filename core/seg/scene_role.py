"""Whether an image file is one of the scenes a model's card names: a score on a training or validation scene is no
unseen score, and a user scoring a file of the model's own data set must be told so.

Why by path: a card names its scenes as the data set does (``tile_2/image_part_003``, ``train/10233``); the file of
such a scene ends with those parts (``.../tile_2/image_part_003.jpg``; DeepGlobe adds a suffix: ``10233_sat.jpg``).
An upload has a bare file name, which several tiles share, so only a whole path is matched.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ..data.seg_base import resolve_root

WORDS = {"training": "the model was trained on it, so its score is no unseen score",
         "validation": "it was watched during the model's fine-tuning, so its score is no unseen score",
         "test": "its card's test figures come from such scenes, which no stage of training saw"}


def _is_scene(parts: tuple[str, ...], scene: tuple[str, ...]) -> bool:
    if not scene or len(scene) > len(parts):
        return False
    tail = parts[len(parts) - len(scene):]
    stem, last = tail[-1], scene[-1]
    return tail[:-1] == scene[:-1] and (stem == last or stem.startswith(last + "_"))


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _under(path: Path, card: dict[str, Any]) -> bool:
    """Whether ``path`` lies in the folder of the card's data set (on this machine)."""
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    root = (config.get("data") or {}).get("root") if isinstance(config.get("data"), dict) else None
    if not root:
        return False
    try:
        return path.resolve().is_relative_to(resolve_root(root))
    except (OSError, ValueError):
        return False


def scene_role(card: dict[str, Any], path: str | Path) -> tuple[str, str] | None:
    """(role, scene name) when ``path`` is a scene of the card's data: "validation" or "test" when the card names it so,
    "training" when its list of training scenes names it or, without such a list (a run's card counts them only),
    when the file lies in the data set's folder and is neither; else None."""
    domain = card.get("domain") if isinstance(card.get("domain"), dict) else {}
    evaluation = card.get("evaluation") if isinstance(card.get("evaluation"), dict) else {}
    parts = Path(path).with_suffix("").parts
    training = _names(evaluation.get("training_scenes")) or _names(domain.get("training_scenes"))
    for role, names in (("validation", _names(domain.get("validation_scenes"))),
                        ("test", _names(domain.get("test_scenes"))), ("training", training)):
        for name in names:
            if _is_scene(parts, PurePosixPath(name).parts):
                return role, name
    if not training and _under(Path(path), card):
        root = resolve_root(card["config"]["data"]["root"])
        return "training", Path(path).resolve().relative_to(root).with_suffix("").as_posix()
    return None


def scene_note(card: dict[str, Any], path: str | Path) -> str | None:
    """A line for the outputs when the image is one of the card's scenes."""
    found = scene_role(card, path)
    if found is None:
        return None
    role, name = found
    return f"this image is {role} scene {name} of the model; {WORDS[role]}"
