"""Which labeled data a segmentation form starts from: the encoder's own pretraining set, or an added data source.

Why: an encoder pretrained on DeepGlobe is meant to be fine-tuned, probed and looked at on DeepGlobe, split as it was
pretrained (``DataConfig.as_seg``: the same scenes, so its test scenes never reached the encoder); the synthetic
set as a default said nothing about it. The encoder's card (``config.data``, written by the pretraining run that
made it, shipped or not) says what it saw. A data source (``core.store.sources``) is a folder the user added; when a
preset in ``configs/`` reads the same folder, its class table and split come with it.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..config import DataConfig, SegDataConfig, upgrade_run_config
from ..store.catalog import config_presets
from ..store.file_versions import yaml_file
from ..store.runs import REPO_ROOT
from ..store.sources import SourceInfo

# the data fields a preset reading a source's folder lends it (how it is labeled and split)
FROM_PRESET = ("class_table", "tile_size", "tile_overlap", "val_fraction", "test_fraction", "test_scenes",
               "val_scenes", "split_unit", "seed", "bands")


def card_data(card: dict[str, Any]) -> DataConfig | None:
    """The data set an encoder was pretrained on, from its card; None when the card does not say or is unreadable."""
    config = card.get("config") if isinstance(card, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return None
    try:
        return DataConfig.model_validate(upgrade_run_config({"data": dict(config["data"])})["data"])
    except ValueError:
        return None


def encoder_seg_data(card: dict[str, Any]) -> SegDataConfig | None:
    """The labeled set an encoder was pretrained on, split as in its pretraining; None for unlabeled imagery (a
    folder without a class table) or a card that does not say."""
    data = card_data(card)
    if data is None or not data.labeled:
        return None
    try:
        return data.as_seg()
    except ValueError:
        return None


def describe(data: DataConfig | SegDataConfig) -> str:
    """One line: which set, where, how split."""
    if data.name == "synthetic":
        what = f"synthetic, {data.num_tiles} tiles of {data.tile_size} px, seed {data.seed}"
    else:
        what = f"{data.name} at {data.root}" + (f" with {data.class_table}" if data.class_table else "")
    split = (f"test scenes {', '.join(data.test_scenes)}" if data.test_scenes else
             f"{data.test_fraction:.0%} of the scenes for test") + f", split seed {data.seed}"
    if data.split_unit:
        split += ", each folder kept whole" if data.split_unit == "folder" else ", image by image"
    bands = f", bands {', '.join(map(str, data.bands))}" if data.bands else ""
    return f"{what}{bands} ({split})"


def _resolved(path: Any) -> Path | None:
    if not isinstance(path, str) or not path:
        return None
    p = Path(path).expanduser()
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def preset_reading(folder: str | Path) -> tuple[str, dict[str, Any]] | None:
    """(preset name, its data section) of the first fine-tuning, probe or pretraining preset whose data root is
    this folder."""
    target = Path(folder).resolve()
    for kind in ("finetune", "probe", "pretrain"):
        for name, path in config_presets(kind).items():
            try:
                raw = yaml_file(path) or {}
            except (OSError, ValueError):
                continue
            data = raw.get("data") if isinstance(raw, dict) else None
            if isinstance(data, dict) and _resolved(data.get("root")) == target:
                return name, data
    return None


def same_data_set(a: DataConfig | SegDataConfig, b: DataConfig | SegDataConfig) -> bool:
    """Whether two data configs read the same data set: the same set name and folder (the synthetic set: any, since
    its scenes come from the same seeds whatever its size)."""
    return a.name == b.name and (a.name == "synthetic" or _resolved(a.root) == _resolved(b.root))


def preset_for(kind: str, data: DataConfig | SegDataConfig) -> str | None:
    """The preset of ``kind`` (finetune, probe) made for this data set: the same set name and folder (for the
    synthetic set, any), the one of the same bands first; None when there is none."""
    found = []
    for name, path in config_presets(kind).items():
        try:
            raw = yaml_file(path) or {}
        except (OSError, ValueError):
            continue
        theirs = raw.get("data") if isinstance(raw, dict) else None
        if isinstance(theirs, dict) and same_data_set(
                SimpleNamespace(name=theirs.get("name", "synthetic"), root=theirs.get("root")), data):
            found.append((theirs.get("bands") != data.bands, name))
    return min(found)[1] if found else None


def source_data(source: SourceInfo) -> tuple[DataConfig, str]:
    """A data source as a data config (every scene: ``pretrain_splits`` all three) and where its labels and split
    come from, in words. Labeled folders need a class table: from a preset that reads the same folder, else none
    (then it is unlabeled here and the form asks for one)."""
    fields: dict[str, Any] = {"name": source.kind, "root": source.path, "bands": source.bands,
                              "pretrain_splits": ["train", "val", "test"]}
    note = "no preset reads this folder: the split is the default one"
    found = preset_reading(source.path)
    if found is not None:
        name, data = found
        fields.update({k: data[k] for k in FROM_PRESET if k in data and data[k] is not None})
        note = f"class table and split from preset {name}, which reads the same folder"
    if source.kind == "folder" and source.labels and not fields.get("class_table"):
        note = "images and masks, but no class table yet: give one (configs/classes/*.yaml)"
    return DataConfig.model_validate(fields), note


__all__ = ["card_data", "describe", "encoder_seg_data", "preset_for", "preset_reading", "source_data"]
