"""Labeled segmentation data: the entry point for fine-tuning and evaluation.

``build_seg_splits(cfg.data)`` turns a :class:`~core.config.SegDataConfig` into train / val / test views of one
tiled, cached data set. Formats (each class's docstring gives its on-disk layout, classes and citation):

========== ==================================================================================================
synthetic  :class:`SyntheticSeg`, the generated aerial scenes with Potsdam labels (no download)
potsdam    :class:`~core.data.seg_formats.Potsdam`   (ISPRS, RGB-coded labels, optional eroded boundaries)
vaihingen  :class:`~core.data.seg_formats.Vaihingen` (ISPRS, IRRG images, same classes as Potsdam)
deepglobe  :class:`~core.data.seg_formats.DeepGlobe` (DeepGlobe 2018 Land Cover, the paper's DGLC)
loveda     :class:`~core.data.seg_formats.LoveDA`    (index-coded masks, Urban and Rural)
folder     :class:`~core.data.seg_formats.FolderSeg` (images/ + masks/ and a YAML class table)
========== ==================================================================================================

Every data set (and every view of one) is a torch Dataset with ``__len__``, ``__getitem__(i) -> dict(image=uint8
(3, H, W), mask=int64 (H, W), index=i)``, ``classes`` (list of ``{"name", "color"}``), ``ignore_index`` (255),
``has_labels``, ``get_images(indices) -> uint8 (B, 3, H, W)``, ``get_masks(indices) -> int64 (B, H, W)`` and
``dominant_class(i)``.

Splits: a data set's own splits are used where it has them (Potsdam and Vaihingen test ids, LoveDA Train/Val,
DeepGlobe train/valid/test folders with masks). What is missing is drawn, seeded, from the training scenes: the
test split by ``test_fraction`` and the validation split by ``val_fraction`` (both shares of the training scenes).
Splits are by scene (or by the format's group, e.g. a folder), never by tile, so overlapping tiles of one scene
never sit on both sides. Then ``label_fraction`` keeps a seeded subset of the training tiles (at least one); for a
given seed the subsets are nested (1% within 5% within 10% within 100%).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .paths import DataError
from .seg_base import SegTiles
from .seg_subset import SegSubset
from .seg_files import IGNORE_INDEX, class_table
from .seg_folder import ClassTable, FolderSeg, load_class_table
from .seg_formats import (DEEPGLOBE_CLASSES, ISPRS_CLASSES, LOVEDA_CLASSES, POTSDAM_TEST_IDS, VAIHINGEN_TEST_AREAS,
                          DeepGlobe, LoveDA, Potsdam, Vaihingen)
from .synthetic import CLASSES, SyntheticAerial
from .protocols import SceneTiles

__all__ = ["DEEPGLOBE_CLASSES", "ISPRS_CLASSES", "LOVEDA_CLASSES", "POTSDAM_TEST_IDS", "VAIHINGEN_TEST_AREAS",
           "ClassTable", "DeepGlobe", "FolderSeg", "LoveDA", "Potsdam", "SegSplits", "SegSubset", "SegTiles",
           "SyntheticSeg", "Vaihingen", "build_seg_dataset", "build_seg_splits", "label_subset", "load_class_table",
           "pretrain_tiles"]


class SyntheticSeg(torch.utils.data.Dataset):
    """The synthetic aerial tiles (:class:`~core.data.synthetic.SyntheticAerial`) with the labeled-set interface.

    Each tile is its own scene (scenes are generated independently), so a seeded split by tile has no leakage.
    Classes: those of ISPRS Potsdam (impervious surfaces, building, low vegetation, tree, car, clutter); no pixel
    is unlabeled. Cached under ``<data_root()>/synthetic/`` by :class:`SyntheticAerial`.
    """

    has_labels = True
    ignore_index = IGNORE_INDEX
    classes = class_table(CLASSES)
    name = "synthetic"

    def __init__(self, num_tiles: int = 2000, tile_size: int = 256, seed: int = 0, progress: bool = True,
                 root: str | Path | None = None, bands: list | None = None):
        kw = {} if bands is None else {"bands": bands}  # the RGB set is built exactly as before bands existed
        self.base = SyntheticAerial(root=root, num_tiles=num_tiles, tile_size=tile_size, seed=seed,
                                    progress=progress, **kw)

    @property
    def band_names(self) -> tuple[str, ...]:
        return self.base.band_names

    @property
    def band_stretch(self) -> None:
        return None  # generated as 8-bit

    def __len__(self) -> int:
        return len(self.base)

    @property
    def tile_size(self) -> int:
        return self.base.tile_size

    def __getitem__(self, i: int) -> dict:
        return self.base[i]

    def get_images(self, indices: Any) -> torch.Tensor:
        return self.base.get_images(indices)

    def get_masks(self, indices: Any) -> torch.Tensor:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return torch.from_numpy(self.base.labels[idx].astype(np.int64))

    def dominant_class(self, i: int) -> int:
        return self.base.dominant_class(i)

    @property
    def counts(self) -> np.ndarray:
        """Pixels of each class in each tile, (N, C) int64, counted once per process in chunks."""
        if "_counts" not in self.__dict__:
            labels, n_cls = self.base.labels, len(self.classes)
            out = np.zeros((len(labels), n_cls), np.int64)
            for start in range(0, len(labels), 256):
                chunk = np.asarray(labels[start:start + 256]).reshape(min(256, len(labels) - start), -1)
                offset = (chunk.astype(np.int64) + np.arange(len(chunk))[:, None] * 256).ravel()
                out[start:start + len(chunk)] = np.bincount(offset, minlength=len(chunk) * 256).reshape(-1, 256)[:, :n_cls]
            self.__dict__["_counts"] = out
        return self.__dict__["_counts"]

    @property
    def scene_ids(self) -> np.ndarray:
        """Each generated tile is its own scene."""
        return np.arange(len(self), dtype=np.int64)

    @property
    def scene_names(self) -> list[str]:
        return [f"synthetic-{i}" for i in range(len(self))]

    def scene_arrays(self, scene: int) -> tuple[np.ndarray, np.ndarray]:
        i = int(scene)
        return np.asarray(self.base.images[i]), np.asarray(self.base.labels[i])

    def tile_info(self, i: int) -> dict:
        return dict(scene=f"synthetic-{int(i)}", source=None, x=0, y=0, split=None, group=f"synthetic-{int(i)}")

    def split_info(self) -> dict[str, Any]:
        n = len(self)
        return dict(group=np.arange(n), group_names=[f"synthetic-{i}" for i in range(n)],
                    split=np.full(n, "", object), scene=np.arange(n), xy=np.zeros((n, 2), np.int64),
                    tile_size=self.tile_size)

    def class_shares(self) -> dict[str, float]:
        counts = np.bincount(np.asarray(self.base.labels).ravel(), minlength=len(self.classes))
        return {c["name"]: float(v) / max(1, float(counts.sum())) for c, v in zip(self.classes, counts)}


def build_seg_dataset(cfg: Any, progress: bool = True) -> Any:
    """The whole labeled data set a ``SegDataConfig`` names (tiled and cached on first use)."""
    if cfg.name == "synthetic":
        return SyntheticSeg(num_tiles=cfg.num_tiles, tile_size=cfg.tile_size, seed=cfg.seed, progress=progress,
                            bands=getattr(cfg, "bands", None))
    if not cfg.root:
        raise DataError(f"data.root: name={cfg.name} needs data.root, the data set folder")
    common: dict[str, Any] = dict(tile_size=cfg.tile_size, tile_overlap=cfg.tile_overlap, progress=progress)
    if getattr(cfg, "bands", None) is not None:
        common["bands"] = cfg.bands
    if cfg.name == "potsdam":
        return Potsdam(cfg.root, eroded=cfg.eroded, **common)
    if cfg.name == "vaihingen":
        return Vaihingen(cfg.root, eroded=cfg.eroded, **common)
    if cfg.name == "deepglobe":
        return DeepGlobe(cfg.root, **common)
    if cfg.name == "loveda":
        return LoveDA(cfg.root, **common)
    if cfg.name == "folder":
        if not cfg.class_table:
            raise DataError("data.class_table: name=folder needs a YAML table of class names and colours")
        table = load_class_table(cfg.class_table)
        unit = getattr(cfg, "split_unit", None)
        if unit is not None and unit != table.group_by:  # the run's recorded unit, whatever the table says now
            table = dataclasses.replace(table, group_by=unit)
        return FolderSeg(cfg.root, table, **common)
    raise DataError(f"data.name: unknown segmentation data set {cfg.name!r}")


@dataclass
class SegSplits:
    """Train / val / test views of one labeled data set. ``train`` already has ``label_fraction`` applied;
    ``scenes`` lists the scenes (groups) in each split."""
    train: SegSubset
    val: SegSubset
    test: SegSubset
    classes: list[dict]
    ignore_index: int
    name: str
    dataset: SceneTiles | None = None
    scenes: dict[str, list[str]] = field(default_factory=dict)
    train_all: SegSubset | None = None  # every training tile, before label_fraction

    def summary(self) -> str:
        parts = [f"{k} {len(getattr(self, k))} tiles / {len(self.scenes.get(k, []))} scenes"
                 for k in ("train", "val", "test")]
        if self.train_all is not None and len(self.train_all) != len(self.train):
            parts[0] = (f"train {len(self.train)} labeled of {len(self.train_all)} tiles / "
                        f"{len(self.scenes.get('train', []))} scenes")
        return f"{self.name}: {len(self.classes)} classes; " + ", ".join(parts)


def _take(frac: float, n: int) -> int:
    return 0 if frac <= 0 or n == 0 else max(1, int(round(frac * n)))


def _rng(seed: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFF_FFFF, purpose])


def label_subset(train_indices: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded subset of training tiles (at least one), sorted. For one seed and one set of training tiles the
    subsets are nested in the fraction: the first k of one seeded permutation."""
    idx = np.sort(np.asarray(train_indices, dtype=np.int64))
    if fraction >= 1.0 or len(idx) == 0:
        return idx
    k = max(1, int(round(fraction * len(idx))))
    return np.sort(idx[_rng(seed, 2).permutation(len(idx))[:k]])


def _drop_overlaps(keep: np.ndarray, held: np.ndarray, scene: np.ndarray, xy: np.ndarray, tile: int) -> np.ndarray:
    """Training tiles that share no pixel with a held-out tile of the same scene (tile-level splits only)."""
    if len(keep) == 0 or len(held) == 0:
        return keep
    ok = np.ones(len(keep), bool)
    for h in held:
        same = scene[keep] == scene[h]
        d = np.abs(xy[keep] - xy[h])
        ok &= ~(same & (d[:, 0] < tile) & (d[:, 1] < tile))
    return keep[ok]


def _tile_scene_labels(ds: Any, info: dict[str, Any]) -> list[tuple[str, str]]:
    """Per scene id: its name and its group, the two things a held-out scene may be named by."""
    names = list(getattr(ds, "scene_names", []) or info["group_names"])
    group_of_scene: dict[int, str] = {}
    for sc, g in zip(np.asarray(info["scene"]), np.asarray(info["group"])):
        group_of_scene.setdefault(int(sc), str(info["group_names"][int(g)]))
    return [(str(names[k]) if k < len(names) else "", group_of_scene.get(k, "")) for k in range(len(names))]


def _named(labels: list[tuple[str, str]], wanted: list[str], title: str, split: str) -> np.ndarray:
    """Tiles whose scene is named in ``wanted``: its name, its group, or a folder above it (``tile_3`` takes
    ``tile_3/image_part_001``). A name that matches nothing is an error, not a silently empty split."""
    hits = np.zeros(len(labels), bool)
    for w in wanted:
        key = w.strip("/").lower()
        m = np.array([n.lower() == key or g.lower() == key or n.lower().startswith(key + "/")
                      for n, g in labels], bool)
        if not m.any():
            shown = ", ".join(sorted({g for _, g in labels})[:6])
            raise DataError(f"data.{split}_scenes: {w!r} names no scene of {title} (its scenes/folders include "
                            f"{shown})")
        hits |= m
    return hits


def build_seg_splits(cfg: Any, progress: bool = True, dataset: Any = None) -> SegSplits:
    """Train / val / test views for a ``SegDataConfig`` (see the module docstring for the rules)."""
    ds = dataset if dataset is not None else build_seg_dataset(cfg, progress=progress)
    info = ds.split_info()
    group, given = np.asarray(info["group"]), np.array(info["split"], object)
    names_of_tiles = _tile_scene_labels(ds, info)
    for split, wanted in (("test", getattr(cfg, "test_scenes", [])), ("val", getattr(cfg, "val_scenes", []))):
        if wanted:
            given[(given == split)] = ""  # named scenes replace the data set's own split of that kind
            given[_named(names_of_tiles, wanted, ds.name, split)[np.asarray(info["scene"])]] = split
    n = len(ds)
    all_idx = np.arange(n)
    test_idx, val_idx = all_idx[given == "test"], all_idx[given == "val"]
    pool = all_idx[(given != "test") & (given != "val")]
    pool_groups = np.unique(group[pool])
    by_tile = len(pool_groups) < 2 and (len(test_idx) == 0 or len(val_idx) == 0)
    units = pool if by_tile else pool_groups
    if by_tile and len(pool) > 1:
        warnings.warn(f"{ds.name}: only one training scene, so validation/test tiles are cut from it too "
                      "(training tiles that overlap them are dropped)", stacklevel=2)
    order = units[_rng(cfg.seed, 1).permutation(len(units))]
    n_test = 0 if len(test_idx) else _take(cfg.test_fraction, len(units))
    n_val = 0 if len(val_idx) else _take(cfg.val_fraction, len(units))
    while n_test + n_val >= len(units) and n_test + n_val > 0:  # keep at least one training unit
        if n_test > 0 and (n_test >= n_val or n_val <= 1):
            n_test -= 1
        else:
            n_val -= 1
    if n_test == 0 and not len(test_idx) and cfg.test_fraction > 0:
        warnings.warn(f"{ds.name}: too few scenes for a test split; the test split is empty", stacklevel=2)
    if n_val == 0 and not len(val_idx) and cfg.val_fraction > 0:
        warnings.warn(f"{ds.name}: too few scenes for a validation split; the validation split is empty",
                      stacklevel=2)
    picked_test, picked_val, rest = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if by_tile:
        test_idx = np.sort(np.concatenate([test_idx, picked_test]))
        val_idx = np.sort(np.concatenate([val_idx, picked_val]))
        train_idx = _drop_overlaps(np.sort(rest), np.concatenate([test_idx, val_idx]), np.asarray(info["scene"]),
                                   np.asarray(info["xy"]), int(info["tile_size"]))
    else:
        in_pool = np.zeros(n, bool)
        in_pool[pool] = True
        test_idx = np.sort(np.concatenate([test_idx, all_idx[in_pool & np.isin(group, picked_test)]]))
        val_idx = np.sort(np.concatenate([val_idx, all_idx[in_pool & np.isin(group, picked_val)]]))
        train_idx = all_idx[in_pool & np.isin(group, rest)]
    if len(train_idx) == 0:
        raise DataError(f"{ds.name}: no training tiles left after the validation and test splits")
    names = list(info["group_names"])
    scene_of = np.asarray(info["scene"])
    grouped = any(g and g != n for n, g in names_of_tiles)  # scenes in groups (``group_by: folder``)

    def scenes_of(idx: np.ndarray) -> list[str]:
        """The scenes of a split by name: its images where they are grouped (a group is the split's unit, the
        records that say what a model saw or was tested on name images, as a split by image does)."""
        if grouped:
            return [names_of_tiles[k][0] for k in np.unique(scene_of[idx])]
        return [names[g] for g in np.unique(group[idx])]

    labeled = label_subset(train_idx, cfg.label_fraction, cfg.seed)
    name = ds.name
    splits = SegSplits(train=SegSubset(ds, labeled, f"{name}/train"), val=SegSubset(ds, val_idx, f"{name}/val"),
                       test=SegSubset(ds, test_idx, f"{name}/test"), classes=ds.classes,
                       ignore_index=ds.ignore_index, name=name, dataset=ds,
                       scenes=dict(train=scenes_of(train_idx), val=scenes_of(val_idx), test=scenes_of(test_idx)),
                       train_all=SegSubset(ds, train_idx, f"{name}/train_all"))
    if (note := neighbours_note(splits)) is not None:
        warnings.warn(note, stacklevel=2)
    return splits


def neighbours_note(splits: SegSplits) -> str | None:
    """Why the test images of an image folder are no unseen scenes: split image by image (the class table's
    ``group_by: file``), or single images named as test scenes, parts of one folder of images (a tile of Dubai's,
    cut into 9) sit in training and test alike, neighbours that share their scene's light, roofs and roads. None
    when no folder is on both sides."""
    table = getattr(splits.dataset, "table", None)
    if table is None:
        return None
    folders = {split: {n.rsplit("/", 1)[0] for n in splits.scenes.get(split, []) if "/" in n}
               for split in ("train", "test")}
    shared = sorted(folders["train"] & folders["test"])
    if not shared:
        return None
    return (f"{splits.name}: the test images share {len(shared)} folder(s) with training images ("
            f"{', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''}): parts of one scene on both sides, so the "
            "test score is not on unseen scenes; name whole folders in data.test_scenes"
            + (", or split by folder (data.split_unit=folder)" if table.group_by == "file" else ""))


def pretrain_tiles(data: Any, progress: bool = True) -> SegSubset:
    """The tiles a pretraining ``DataConfig`` of a labeled set trains on: the scenes of ``data.pretrain_splits``.

    The split is the one fine-tuning draws from the same settings (``build_seg_splits`` of ``data.as_seg()``), so
    with the default ``pretrain_splits=[train]`` no validation or test scene reaches the encoder. Tile i of the
    returned view is what the trainer's (and ``fns.jsonl``'s) index i means. ``split_scenes`` names the scenes of
    every split and ``pretrain_splits`` the ones used.
    """
    splits = build_seg_splits(data.as_seg(), progress=progress)
    parts = {"train": splits.train_all, "val": splits.val, "test": splits.test}
    idx = np.sort(np.concatenate([parts[s].indices for s in data.pretrain_splits]))
    if len(idx) == 0:
        raise DataError(f"data.pretrain_splits: the {splits.name} set has no tiles in {', '.join(data.pretrain_splits)}")
    view = SegSubset(splits.dataset, idx, f"{splits.name}/pretrain[{'+'.join(data.pretrain_splits)}]")
    view.split_scenes = dict(splits.scenes)  # type: ignore[attr-defined]
    view.pretrain_splits = list(data.pretrain_splits)  # type: ignore[attr-defined]
    return view
