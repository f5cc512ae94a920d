"""What a pretraining run writes when it starts: ``data.json`` (the tiles, splits and scenes it trains on, for
whoever rebuilds its batches later) and the opening lines of its log (device, data, the scenes, skipped images); and
its name where the overrides change what its preset's name says."""
from __future__ import annotations

import functools
import warnings
from typing import Any

from ..config import ConfigError, PretrainConfig, load_config
from ..config.strategy import data_tag, run_name
from ..console import say
from ..data.protocols import TileSet
from ..store.lifecycle import RunLife
from ..data import DataError
from ..data.split_check import check_same_split, set_back
from ..store.runs import atomic_write_json, read_json_file


def data_record(cfg: PretrainConfig, dataset: TileSet) -> dict[str, Any]:
    """What the run trained on (``data.json`` of the run folder)."""
    scenes = getattr(dataset, "split_scenes", None)
    used = getattr(dataset, "pretrain_splits", None)
    if scenes:
        read: list[str] | None = sorted(s for k in (used or []) for s in scenes.get(k, []))
    else:  # an unlabeled folder: every image (None where a data set cannot name them: not known, not "none")
        read = dataset.source_scenes() if hasattr(dataset, "source_scenes") else None
    weights = getattr(getattr(cfg, "model", None), "weights", None)
    if weights and read is not None:  # it goes on from another encoder: what that one read counts too
        from pathlib import Path

        from ..seg.lineage import init_pretrain_scenes

        before = init_pretrain_scenes(Path(weights)) if Path(weights).is_file() else None
        read = None if before is None else sorted(set(before) | set(read))
    return {"name": cfg.data.name, "tiles": len(dataset), "labeled": bool(getattr(dataset, "has_labels", False)),
            "pretrain_splits": used, "split_scenes": scenes, "pretrain_scenes": read}


def check_same_data(run_path: Any, dataset: TileSet, unit: str | None = None) -> None:
    """DataError unless ``dataset`` gives the tiles the run at ``run_path`` trained on (its ``data.json``): for a
    labeled set the same scenes in each split, and the same number. A resume and a flag report read tile indices, so
    a changed data folder, class table or split unit (``unit``: the one its config says now) would quietly point them
    at other tiles."""
    from pathlib import Path

    record = read_json_file(Path(run_path) / "data.json") or {}
    config = Path(run_path) / "config.yaml"
    check_same_split(record.get("split_scenes"), getattr(dataset, "split_scenes", None), config, unit)
    tiles = record.get("tiles")
    if tiles is not None and int(tiles) != len(dataset):
        raise DataError(f"the run trained on {tiles} tiles but its data set now gives {len(dataset)}: the data or "
                        f"its split changed since the run, so its tile indices point at other tiles; "
                        f"{set_back(config, unit)}")


def upsample_note(cfg: PretrainConfig) -> str | None:
    """Views larger than the tiles they are cut from are blown up: no detail the tile lacks, blurrier views, more
    compute. Allowed (a small-tile set on a wide encoder), but never silently."""
    size, tile = cfg.data.image_size, cfg.data.tile_size
    if size <= tile:
        return None
    return (f"data.image_size {size} is larger than data.tile_size {tile}: every view is a crop of a {tile} px tile "
            f"enlarged to {size} px (no detail is added); give data.tile_size >= {size} or a smaller "
            "data.image_size")


def log_start(life: RunLife, cfg: PretrainConfig, dataset: TileSet, where: str, steps: str,
              knn_note: str | None, warm_up: str | None = None) -> None:
    """``where``: device and precision; ``steps``: from -> to; ``warm_up``: why the learning rate never peaks."""
    if life.run is None:
        return
    atomic_write_json(life.run.path / "data.json", data_record(cfg, dataset))
    life.log(f"training {cfg.method}/{cfg.loss.name} {cfg.model.encoder} on {where}, {len(dataset)} tiles, "
             f"batch {cfg.train.batch_size}, steps {steps}")
    if knn_note:
        life.log(knn_note)
        every, total = cfg.train.knn_every, int(steps.rpartition("->")[2] or 0)
        # the demo's 50 in a 40-step run; a resume's earlier values stand (it said "never" above one: a review)
        if knn_note.startswith("kNN monitor every") and 0 < total < every and steps.startswith("0->"):
            never = (f"the kNN monitor never measures in this run ({total} steps, every {every}): give "
                     f"train.knn_every={total} or fewer to see it")
            warnings.warn(never, stacklevel=2)  # the terminal too (a review found these in log.txt only)
            life.log(f"warning: {never}")
    if warm_up and steps.startswith("0->"):
        warnings.warn(warm_up, stacklevel=2)
        life.log(f"warning: {warm_up}")
    upsampled = upsample_note(cfg)
    if upsampled and steps.startswith("0->"):
        warnings.warn(upsampled, stacklevel=2)  # the terminal's one line; the log keeps it for the app
        life.log(f"warning: {upsampled}")
    if cfg.method == "moco" and steps.startswith("0->"):  # a loss of 0 at step 1 reads as a bug without this
        fill = -(-cfg.model.queue_size // cfg.train.batch_size)
        life.log(f"MoCo: the queue starts empty (its unfilled slots are no negatives), so step 1 has no negative "
                 f"and a loss of 0; it is full after about {fill} step(s) of {cfg.train.batch_size} keys")
    scenes = getattr(dataset, "split_scenes", None)
    if scenes:  # which scenes the encoder never read, by name (a review found only counts, images called scenes)
        from ..seg.scene_role import scored_scenes_text

        used = getattr(dataset, "pretrain_splits", [])

        def named(split: str) -> Any:  # a folder named as a test scene: its images are one scene
            return getattr(cfg.data, f"{split}_scenes", None)

        life.log("scenes: " + "; ".join(
            f"{k} {scored_scenes_text(v, named(k), k not in used, getattr(cfg.data, 'split_unit', None)) or 0}"
            f"{' (pretrained on)' if k in used else ''}" for k, v in scenes.items()))
    skipped = getattr(dataset, "skipped", [])
    for path, reason in skipped:
        life.log(f"skipped unreadable image {path}: {reason}")
    if skipped:
        life.log(f"{len(skipped)} unreadable image(s) skipped in total")



NAMED_BY_PRESET = ("method", "loss.name", "loss.detector", "loss.treatment")  # what a preset's name usually says


def name_for_overrides(cfg: PretrainConfig, config: str | None, overrides: list[str]) -> str | None:
    """The name a run gets when its overrides change what its preset's name says (method, loss, detector,
    treatment) and no name= is given: made as the Pretrain page makes it ("demo-simclr-info_nce"), and said. It
    kept the preset's "demo-simclr-false" with a warning, and a walkthrough's InfoNCE, nearest and oracle runs then
    shared one name (a lookup by name was ambiguous). A key set to the preset's own value is no change."""
    named = [k for k in NAMED_BY_PRESET if any(o.split("=", 1)[0].strip() == k for o in overrides)]
    preset = None
    if named and config:
        try:
            preset = load_config(config, [])
        except ConfigError:  # a preset that only its overrides complete (data.root of a folder): every key counts
            pass
    changed = [k for k in named if preset is None or _setting(cfg, k) != _setting(preset, k)]
    if not cfg.name or not changed or any(o.split("=", 1)[0].strip() == "name" for o in overrides):
        return None
    tag = data_tag(cfg.name, preset.method, preset.loss.model_dump()) if preset is not None else None
    new = run_name(cfg.method, cfg.loss.model_dump(), tag)
    say(f"note: the run is named {new!r}, not the preset's {cfg.name!r}, as {', '.join(changed)} changed "
        "(name=... names it otherwise)", err=True)
    return new


def _setting(cfg: PretrainConfig, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), cfg)


__all__ = ["data_record", "log_start", "name_for_overrides", "upsample_note"]
