"""A view of some tiles of a labeled set (a split, or a label fraction of one) with the set's own interface, so
fine-tuning, the probe and the flag scores take a split wherever they take a set."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .protocols import SceneTiles


class SegSubset(torch.utils.data.Dataset):
    """A view of some tiles of a labeled set with the same interface (a split, or a label fraction of one).

    ``index`` in an item is the position in this view; ``tile`` is the tile index in the underlying set.
    """

    has_labels = True

    def __init__(self, base: SceneTiles, indices: Sequence[int] | np.ndarray, name: str = ""):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.name = name or getattr(base, "name", "")

    @property
    def classes(self) -> list[dict]:
        return self.base.classes

    @property
    def ignore_index(self) -> int:
        return self.base.ignore_index

    @property
    def tile_size(self) -> int:
        return self.base.tile_size

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(getattr(self.base, "band_names", ("R", "G", "B")))

    @property
    def band_stretch(self) -> list | None:
        return getattr(self.base, "band_stretch", None)

    def __len__(self) -> int:
        return len(self.indices)

    def _map(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.indices[idx]

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        t = int(self.indices[i])
        item = self.base[t]
        item["index"], item["tile"] = i % len(self), t
        return item

    def get_images(self, indices: Any) -> torch.Tensor:
        return self.base.get_images(self._map(indices))

    def get_masks(self, indices: Any) -> torch.Tensor:
        return self.base.get_masks(self._map(indices))

    @property
    def cache_key(self) -> tuple:
        """Which tiles this view holds, for caches keyed by data set (never ``id()``: objects come and go)."""
        inner = getattr(self.base, "base", None)
        where = getattr(self.base, "cache_dir", None) or getattr(inner, "cache_dir", None)
        meta = getattr(self.base, "meta", None) or getattr(inner, "meta", None) or {}
        digest = hashlib.sha256(self.indices.tobytes()).hexdigest()[:16]
        return str(where), meta.get("created"), len(self.indices), digest

    @property
    def counts(self) -> np.ndarray:
        """Pixels of each class in each tile of this view, (n, C) int64."""
        return np.asarray(self.base.counts[self.indices])

    @property
    def scene_ids(self) -> np.ndarray:
        """The scene of every tile of this view (ids of the underlying set's :attr:`scene_names`)."""
        return np.asarray(self.base.scene_ids)[self.indices]

    @property
    def scene_names(self) -> list[str]:
        return self.base.scene_names

    def scene_arrays(self, scene: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base.scene_arrays(scene)

    def dominant_class(self, i: int) -> int:
        return self.base.dominant_class(int(self.indices[int(i)]))

    def tile_info(self, i: int) -> dict:
        return self.base.tile_info(int(self.indices[int(i)]))

    def __repr__(self) -> str:
        return f"SegSubset({self.name!r}, {len(self)} of {len(self.base)} tiles)"


def place_ids(tiles: object) -> np.ndarray | None:
    """The place of every tile, (N,) int64, or None where the set does not know its scenes. Tiles of one place are
    neighbours: the images of one folder where the class table says they are cut from one picture (``places:
    folder``, or ``group_by: folder``: a Dubai tile's 9 parts), else each scene is its own (ids as ``scene_ids``,
    so a seeded choice of places is the one it was). Why not :attr:`scene_ids` alone: "across scenes" figures (the
    kNN monitor's queries, the flags' cross-scene precision, the Embeddings page's kNN) held neighbouring parts of
    one Dubai tile as other scenes (a review)."""
    if isinstance(tiles, SegSubset):
        inner = place_ids(tiles.base)
        return None if inner is None else inner[tiles.indices]
    scenes = getattr(tiles, "scene_ids", None)
    if scenes is None:
        return None
    scenes = np.asarray(scenes, np.int64)
    table = getattr(tiles, "table", None)
    if "folder" not in (getattr(table, "places", None), getattr(table, "group_by", None)):
        return scenes
    folders = [n.rsplit("/", 1)[0] if "/" in n else "." for n in tiles.scene_names]
    first: dict[str, int] = {}  # numbered in scene order
    return np.asarray([first.setdefault(f, len(first)) for f in folders], np.int64)[scenes]
