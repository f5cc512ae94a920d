"""Whether an image file is one of the scenes a model's card names: a score on a training or validation scene is no
unseen score, and a user scoring a file of the model's own data set must be told so.

Why by path: a card names its scenes as the data set does (``tile_2/image_part_003``, ``train/10233``); the file of
such a scene ends with those parts (``.../tile_2/image_part_003.jpg``; DeepGlobe adds a suffix: ``10233_sat.jpg``).
An upload (or a copy elsewhere) has a bare file name, which several tiles share: where the card's data set is on this
machine, its files of that name are compared with the image's bytes, and the one that is the same file names it.
Without the data set, the card's digest of each scene's file names it (``scene_by_digest``), and its thumbnail a
re-encoded, resized or turned copy (``scene_by_look``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..data.seg_base import resolve_root
from ..store.file_versions import file_sha256
from .scene_look import same_picture

VAIHINGEN_PREFIX = "top_mosaic_09cm_"  # its files' names before the scene's (core/data/seg_formats.py: area{N})
MAX_WALK = 20_000  # files looked at for a same-named copy in the data set's folder (a small labeled set: a few hundred)

WORDS = {"training": "the model was trained on it, so its score is no unseen score",
         "validation": "it was watched during the model's fine-tuning, so its score is no unseen score",
         # one image beside a card's pooled figure: a walkthrough read 18.2 % on one test scene beside the card's 38.4
         "test": "the model was not trained on it; its card's test figures pool the pixels of all its test scenes, "
                 "so one image's mIoU (a class predicted there but absent from it counts as 0) is not comparable "
                 "to them"}


def is_scene(parts: tuple[str, ...], scene: tuple[str, ...]) -> bool:
    """Whether the path ``parts`` (a file, or a scene name of another layout) is the data set's ``scene``."""
    if not scene or len(scene) > len(parts):
        return False
    tail = parts[len(parts) - len(scene):]
    stem, last = tail[-1], scene[-1]
    # DeepGlobe's file adds a suffix (10233_sat), Potsdam's too (top_potsdam_2_10_RGB); Vaihingen's its own prefix
    # (top_mosaic_09cm_area1 is area1: that prefix only, or IMG_0001 would be a folder set's scene 0001)
    return tail[:-1] == scene[:-1] and (stem in (last, VAIHINGEN_PREFIX + last) or stem.startswith(last + "_"))


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _data_root(card: dict[str, Any]) -> Path | None:
    """The folder of the card's data set on this machine, if it is here."""
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    root = (config.get("data") or {}).get("root") if isinstance(config.get("data"), dict) else None
    try:
        found = resolve_root(root) if root else None
        return found if found is not None and found.is_dir() else None
    except (OSError, ValueError):
        return None


def _under(path: Path, card: dict[str, Any]) -> bool:
    """Whether ``path`` lies in the folder of the card's data set (on this machine)."""
    root = _data_root(card)
    try:
        return root is not None and path.resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _digest(content: bytes | Path) -> str:
    """Bytes hashed here; a file by ``file_sha256``, remembered per path, size and mtime (a demo's every call)."""
    return hashlib.sha256(content).hexdigest() if isinstance(content, bytes) else file_sha256(content)


def same_files_in_data(card: dict[str, Any], name: str, content: bytes | Path) -> list[Path]:
    """The files of the card's data set named ``name`` (a bare file name) whose bytes are ``content``'s (a backup copy
    inside the set is one more); ``content`` itself when it is a file there is left out (it is found by its path)."""
    root, want = _data_root(card), Path(name).name
    if root is None or not want:
        return []
    try:
        size = len(content) if isinstance(content, bytes) else Path(content).stat().st_size
    except OSError:
        return []
    found, seen, digest = [], 0, None
    for folder, _, files in os.walk(root, followlinks=True):  # linked folders too; MAX_WALK bounds a loop
        seen += len(files)
        if want in files:
            candidate = Path(folder) / want
            try:
                if candidate.stat().st_size == size and not (isinstance(content, Path) and candidate.samefile(content)):
                    digest = digest or _digest(content)
                    if _digest(candidate) == digest:
                        found.append(candidate)
            except OSError:
                pass
        if seen > MAX_WALK:
            break
    return found


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
            if is_scene(parts, PurePosixPath(name).parts):
                return role, name
    if not training and _under(Path(path), card):
        root = resolve_root(card["config"]["data"]["root"])
        return "training", Path(path).resolve().relative_to(root).with_suffix("").as_posix()
    return None


def _role(domain: dict[str, Any], names: list[str]) -> tuple[str, str] | None:
    """(role, name) of the first of ``names`` by the card's held-out lists; a name in none of them trained. The same
    picture as a training scene and a held-out one: the model was trained on it, whatever else it is."""
    held = {n: role for role, key in (("validation", "validation_scenes"), ("test", "test_scenes"))
            for n in _names(domain.get(key))}
    return min(((held.get(n, "training"), n) for n in names), key=lambda r: r[0] != "training", default=None)


def _domain(card: dict[str, Any]) -> dict[str, Any]:
    return card["domain"] if isinstance(card.get("domain"), dict) else {}


def scene_by_digest(card: dict[str, Any], content: bytes | Path) -> tuple[str, str] | None:
    """(role, scene name) when ``content`` is byte for byte the image file of a scene the card keeps the digest of
    (``domain.scene_digests``): an upload named ``image_part_001.jpg``, which nine Dubai tiles share, on a machine
    without the data set. A re-encoded copy is another file: ``scene_by_look`` knows it."""
    digests = _domain(card).get("scene_digests")
    if not isinstance(digests, dict) or not digests:
        return None
    try:
        want = _digest(content)
    except OSError:
        return None
    return _role(_domain(card), [n for n, d in digests.items() if d == want])


def scene_by_look(card: dict[str, Any], rgb: np.ndarray) -> tuple[str, str] | None:
    """(role, scene name) when the picture ``rgb`` is one of the scenes whose thumbnail the card keeps
    (``domain.scene_looks``) in another file: re-encoded, resized, brightened, turned (``core.seg.scene_look``)."""
    looks = _domain(card).get("scene_looks")
    if not isinstance(looks, dict) or not looks:
        return None
    return _role(_domain(card), [name for name, _ in same_picture(looks, rgb)[:1]])  # the closest: the copy's own


def scene_note(card: dict[str, Any], path: str | Path, content: bytes | Path | None = None,
               rgb: np.ndarray | None = None) -> str | None:
    """A line for the outputs when the image is one of the card's scenes: by its path, else (``content``: its bytes or
    the file holding them, e.g. an upload whose ``path`` is only its name) by a same file in the card's data set,
    else (``rgb``: the decoded picture) by the same picture in another file."""
    found, copy = scene_role(card, path), ""
    if found is None and content is not None:
        found = scene_by_digest(card, content)
    if found is None and content is not None:
        roles = [r for c in same_files_in_data(card, Path(path).name, content) if (r := scene_role(card, c))]
        found = min(roles, key=lambda r: r[0] == "training", default=None)  # a named held-out scene first
    if found is None and rgb is not None:
        found, copy = scene_by_look(card, rgb), " (the same picture in another file: re-encoded, resized or turned)"
    if found is None:
        return None
    role, name = found
    words = WORDS[role]
    if role != "training":  # held out from fine-tuning, but the encoder may have read it (a review: validation scene
        from .lineage import seen_in_pretraining  # 19627, whose note said nothing of its pretraining)

        if seen_in_pretraining(card, [name]):
            words = {"validation": "its encoder was pretrained on it (unlabeled) and it was watched during the "
                                   "model's fine-tuning",
                     "test": "the model was not fine-tuned on it, but its encoder was pretrained on it "
                             "(unlabeled)"}[role] + ", so its score is no unseen score"
    return f"this image is {_image_words(card, role, name)}{copy}; {words}"


def _image_words(card: dict[str, Any], role: str, name: str) -> str:
    """"test scene 104113 of the model", or for an image of a folder the card names as a scene "tile_3/image_part_004,
    one of the images of the model's test scene tile_3" (a walkthrough read "test scene tile_3/image_part_004" beside
    the card's "9 images of 1 scene (tile_3)"); a training image beside such folders is called an image too."""
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    folders = [str(f) for key in ("test_scenes", "val_scenes") if isinstance(data.get(key), list) for f in data[key]]
    folder = next((f for f in folders if name.startswith(f"{f}/")), None)
    if folder is not None:
        return f"{name}, one of the images of the model's {role} scene {folder}"
    tests = _domain(card).get("test_scenes") or []
    if role == "training" and any(str(t).startswith(f"{f}/") for f in folders for t in tests):
        return f"training image {name} of the model"
    return f"{role} scene {name} of the model"


def seen_scene_note(notes: list[str]) -> str | None:
    """The note (``scene_note``) that an image is a scene the model was trained on or watched, among a result's
    notes: a score beside it must say it is no unseen score."""
    return next((n for n in notes if n.startswith("this image is ") and n.endswith("no unseen score")), None)


NOT_RECOGNISED = ("not recognised as a scene the model was trained on or watched (by its file's path, and where the "
                  "card keeps them by its digest or thumbnail: a resized, re-encoded or turned copy too), but a crop "
                  "of one would not be, so this is an unseen score only if the image is not cut from one of them")


def role_note(notes: list[str]) -> str | None:
    """The note (``scene_note``) that an image is one of the model's scenes, of any role."""
    return next((n for n in notes if n.startswith("this image is ")), None)


def unseen_check(notes: list[str]) -> str:
    """What a score against a label mask says about being unseen: the image is one of the model's scenes (a training
    or watched one: no unseen score; a test one: what its card says), or it was not recognised as one, which a crop
    would not be (a review scored a crop of a training scene: 99 % accuracy and no word)."""
    seen = seen_scene_note(notes)
    return f"not an unseen score: {seen}" if seen else role_note(notes) or NOT_RECOGNISED


def note_scene(seg: Any, name: str | Path, content: bytes | Path | None = None) -> None:
    """Add ``scene_note`` of the segmentation's model to its notes (a score on a scene the model saw is no unseen
    score: said in every output, the command line's, the page's and the demo's); its picture (``seg.rgb``) is
    compared with the card's scenes too."""
    from ..store.checkpoint import read_metadata

    path = (seg.model or {}).get("path")
    if not path or not Path(name).name:
        return
    try:
        seen = scene_note(read_metadata(Path(path))["card"], name, content, getattr(seg, "rgb", None))
    except Exception:  # noqa: BLE001 - a note must never cost the user a finished segmentation
        return
    if seen is not None and seen not in seg.notes:
        seg.notes.append(seen)


NAMED_AT_MOST = 6  # scenes a line names before "and N more"


def scored_scenes_text(images: list[str], scenes: Any, name_them: bool = False, unit: str | None = None) -> str:
    """How many images were scored, and of how many scenes when a named scene is a folder of images (the 9 images of
    Dubai's tile_3 are one scene, not nine: a remote-sensing reader counts independent scenes), or when a share of the
    folders was held out (``unit``: the data's ``split_unit``, 'folder'). ``name_them``: the scenes' names too where a
    line does not list them after (a review read "3 scenes" of a share-based split and had to open test_metrics.json
    to learn which)."""
    if not images:
        return ""
    named = [str(n) for n in scenes] if isinstance(scenes, list) else []
    folders = [n for n in named if any(str(i).startswith(f"{n}/") for i in images)]
    if not folders and unit == "folder":  # whole folders by share: each folder is one scene
        folders = sorted({str(i).rsplit("/", 1)[0] for i in images if "/" in str(i)})
    if folders and len(folders) < len(images):
        return f"{len(images)} images of {len(folders)} scene{'s' if len(folders) > 1 else ''} ({', '.join(folders)})"
    text = f"{len(images)} scene{'s' if len(images) > 1 else ''}"
    if not name_them:
        return text
    more = len(images) - NAMED_AT_MOST
    return f"{text} ({', '.join(map(str, images[:NAMED_AT_MOST]))}{f' and {more} more' if more > 0 else ''})"
