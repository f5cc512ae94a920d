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
    """The tiles a pretraining ``DataConfig`` asks for.

    ``name="folder"`` without a class table: :class:`ImageFolderTiles` of ``cfg.root`` (unlabeled, every tile).
    Every labeled set (``synthetic``, ``deepglobe``, ``potsdam``, ``vaihingen``, ``loveda``, ``folder`` with
    ``class_table``): the scenes of ``cfg.pretrain_splits`` only, split as fine-tuning splits them
    (:func:`~core.data.labeled.pretrain_tiles`); the view keeps the labels for scoring flags, never for the loss.
    """
    if cfg.name == "folder" and not getattr(cfg, "class_table", None):
        if not cfg.root:
            raise DataError("data.root: name=folder needs data.root, the image folder to pretrain on")
        return ImageFolderTiles(cfg.root, tile_size=cfg.tile_size, progress=progress, bands=getattr(cfg, "bands", None))
    from .labeled import pretrain_tiles  # the labeled formats load only when asked for

    return pretrain_tiles(cfg, progress=progress)
