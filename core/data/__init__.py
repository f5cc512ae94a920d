"""Datasets, tiling and augmentations for pretraining.

``build_dataset(cfg.data)`` is the one entry point the trainer needs; the classes are exported for pages,
tests and scripts.
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from .augment import IMAGENET_MEAN, IMAGENET_STD, TwoViewAugment
from .folder import ImageFolderTiles
from .paths import DataError, data_root
from .synthetic import CLASSES, SyntheticAerial, generate_scene

__all__ = ["CLASSES", "DataError", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFolderTiles", "SyntheticAerial",
           "TwoViewAugment", "build_dataset", "data_root", "generate_scene"]


def build_dataset(cfg: Any, progress: bool = True) -> Dataset:
    """The dataset a ``DataConfig`` asks for.

    ``name="synthetic"``: :class:`SyntheticAerial` (num_tiles, tile_size, seed), cached under ``data_root()``;
    ``cfg.root`` is ignored there, since it names the image folder of ``name="folder"``.
    ``name="folder"``: :class:`ImageFolderTiles` of ``cfg.root`` at ``cfg.tile_size``.
    """
    if cfg.name == "synthetic":
        return SyntheticAerial(num_tiles=cfg.num_tiles, tile_size=cfg.tile_size, seed=cfg.seed, progress=progress)
    if cfg.name == "folder":
        if not cfg.root:
            raise DataError("data.root: name=folder needs data.root, the image folder to pretrain on")
        return ImageFolderTiles(cfg.root, tile_size=cfg.tile_size, progress=progress)
    raise DataError(f"data.name: unknown data set {cfg.name!r}; choose synthetic or folder")
