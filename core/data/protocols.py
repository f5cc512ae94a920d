"""What the engine may ask of a data set, as typing protocols.

Why: trainers, evaluation, fingerprints and the flag scoring take many kinds of tile sets (the synthetic set, an image
folder, a labeled format, a split or a label fraction of one). They share an interface by convention; these
protocols write it down, so a signature says which part it needs and a type checker can hold new data sets to it.
``SceneTiles`` is runtime-checkable: whole-scene evaluation asks ``isinstance(split, SceneTiles)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

Indices = Sequence[int] | np.ndarray | torch.Tensor


@runtime_checkable
class TileSet(Protocol):
    """Tiles of one size, fetched a batch at a time as uint8 (B, 3, H, W): what pretraining needs. The memory layout
    is not promised (a cache gives its channels-last one); ``.contiguous()`` where it matters."""

    def __len__(self) -> int: ...

    def get_images(self, indices: Indices) -> torch.Tensor: ...


@runtime_checkable
class LabeledTiles(TileSet, Protocol):
    """Tiles with per-pixel labels: fine-tuning, evaluation and the scoring of flagged pairs need these."""

    @property
    def classes(self) -> list[dict]: ...

    @property
    def ignore_index(self) -> int: ...

    def get_masks(self, indices: Indices) -> torch.Tensor: ...

    def dominant_class(self, i: int) -> int: ...


@runtime_checkable
class SceneTiles(LabeledTiles, Protocol):
    """Labeled tiles that know their scenes, so a split can be scored over whole scenes."""

    @property
    def scene_ids(self) -> np.ndarray: ...

    @property
    def scene_names(self) -> list[str]: ...

    def scene_arrays(self, scene: int) -> tuple[np.ndarray, np.ndarray]: ...
