"""Whether a picture is one of a card's scenes in another file: re-encoded (JPEG to PNG, another quality), resized,
brightened, rotated or flipped. Its digest (``scene_role.scene_by_digest``) then differs, and a score on it would read
as an unseen score.

Why a 16 x 16 grey thumbnail compared by correlation: it survives re-encoding and resizing (a 10 % copy of a Dubai
or DeepGlobe scene still correlates >= 0.99 with its scene's), a brightness change (correlation is blind to level and
contrast), and the eight rotations and flips are eight cheap comparisons; while two different scenes of our real
data sets correlate at most 0.90 (63 scenes, all pairs and turns; NEON tiles at most 0.53 with any of them). A crop
of more than a few per cent of a side is another picture and is not recognised (a 2 % crop still is: 0.98). The
card keeps each scene's width and height with its thumbnail: a copy must have the same shape (within ``ASPECT``),
which rules out most look-alikes of another size.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

SIDE = 16  # the thumbnail's side: 256 grey levels, 512 hex characters a scene on a card
SAME_PICTURE = 0.97  # the least correlation of two thumbnails of one picture (measured: >= 0.978; other scenes <= 0.90)
MIN_SPREAD = 2.0  # grey levels: a thumbnail flatter than this (a blank page, a uniform test image) matches nothing
ASPECT = 0.03  # how far a copy's width/height may be from the scene's (or its inverse: turned), relatively
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def picture_look(rgb: np.ndarray) -> np.ndarray:
    """The picture's thumbnail, (SIDE * SIDE,) uint8 grey: each cell the mean of its part of the image."""
    small = Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize((SIDE, SIDE), Image.BOX)
    grey = np.asarray(small, dtype=np.float32) @ LUMA
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8).ravel()


def scene_look(rgb: np.ndarray) -> str:
    """What a card keeps of a scene's picture: "WIDTHxHEIGHT:" and its thumbnail in hex."""
    return f"{rgb.shape[1]}x{rgb.shape[0]}:{bytes(picture_look(rgb)).hex()}"


def _decode(text: Any) -> tuple[float, np.ndarray] | None:
    """(width / height, thumbnail) of a card's ``scene_look``; None for anything else."""
    try:
        size, _, hexed = str(text).partition(":")
        width, height = (int(v) for v in size.split("x"))
        look = np.frombuffer(bytes.fromhex(hexed), dtype=np.uint8)
    except ValueError:
        return None
    return (width / height, look) if look.size == SIDE * SIDE and width > 0 and height > 0 else None


def _same_shape(aspect: float, theirs: float) -> bool:
    return any(abs(a / theirs - 1) <= ASPECT for a in (aspect, 1 / aspect))


def _standard(look: np.ndarray) -> np.ndarray | None:
    """Zero mean, unit length (a dot product of two is their correlation); None for a flat thumbnail."""
    x = look.astype(np.float32).ravel()
    if x.std() < MIN_SPREAD:
        return None
    x = x - x.mean()
    return x / np.linalg.norm(x)


def _turns(look: np.ndarray) -> np.ndarray:
    """The thumbnail in its 8 rotations and mirror images, (8, SIDE * SIDE)."""
    square = look.reshape(SIDE, SIDE)
    return np.stack([t.ravel() for k in range(4) for r in (np.rot90(square, k),) for t in (r, r[:, ::-1])])


def same_picture(looks: dict[str, str], rgb: np.ndarray) -> list[tuple[str, float]]:
    """The names in ``looks`` (scene name: ``scene_look``) whose picture ``rgb`` is, turned or not, with their
    correlation, best first."""
    look = picture_look(rgb)
    if _standard(look) is None or not looks:
        return []
    turned = np.stack([_standard(t) for t in _turns(look)])
    aspect = rgb.shape[1] / max(rgb.shape[0], 1)
    found = []
    for name, text in looks.items():
        kept = _decode(text)
        theirs = _standard(kept[1]) if kept is not None and _same_shape(aspect, kept[0]) else None
        if theirs is not None and (corr := float((turned @ theirs).max())) >= SAME_PICTURE:
            found.append((name, corr))
    return sorted(found, key=lambda f: -f[1])
