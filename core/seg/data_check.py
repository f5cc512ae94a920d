"""The labeled data a fine-tuning run or a probe is about to read, checked before any run folder is made.

Why a module: the command line built the splits before it made a run's folder, so a folder of text files or an
empty one was one line and no run; the app's form launched such settings as runs that failed seconds later and stayed
in the Runs table (a review made three). The trainer, the probe and the form now ask the same question here.
"""
from __future__ import annotations

import warnings
from typing import Any

from ..data import DataError
from ..data.labeled import SegSplits, build_seg_splits
from ..ssl.batch_order import batch_problem


def checked_splits(cfg: Any, progress: bool = False, probe: bool = False) -> SegSplits:
    """The splits of ``cfg.data`` (a fine-tuning or probe config), or DataError saying what is missing: no training
    tiles; for fine-tuning, nothing to score the model (no validation and no test scenes), or no validation without
    ``train.average_from``."""
    splits = build_seg_splits(cfg.data, progress=progress)
    if len(splits.train) == 0:
        raise DataError(f"data: the {cfg.data.name} set gave no training tiles")
    if probe:
        return splits
    if cfg.data.crop_size > cfg.data.tile_size:  # said as pretraining says a view larger than its tile (a review)
        warnings.warn(f"data.crop_size {cfg.data.crop_size} is larger than data.tile_size {cfg.data.tile_size}: every "
                      "crop is padded with a mirror of its tile whose labels are ignored, so part of each step learns "
                      f"nothing; give data.crop_size <= {cfg.data.tile_size}", stacklevel=2)
    if len(splits.val) == 0 and cfg.train.average_from is None:
        raise DataError(f"data: {cfg.data.name} gave no validation tiles; give data.val_fraction or data.val_scenes, "
                        "or set train.average_from (no validation: the weight average is the model)")
    if len(splits.val) == 0 and len(splits.test) == 0:
        raise DataError("data: no validation and no test scenes would score the model; give data.test_scenes "
                        "or data.test_fraction")
    return splits


def data_problem(cfg: Any, probe: bool = False) -> str | None:
    """``checked_splits``'s refusal in one line, or None: what the launch form says before it launches anything.
    Reading the data here costs what the run would spend on it first (seconds for our presets' data, longer for a
    large set read for the first time); its tile cache serves the run after.
    The generated set is not read: nothing in it can be missing, and making it is the run's own first minute."""
    if cfg.data.name == "synthetic":
        return None
    return _problem_of(lambda: checked_splits(cfg, probe=probe), cfg.data.root)


def pretrain_data_problem(cfg: Any, world: int = 1) -> str | None:
    """``data_problem`` of a pretraining config: its tiles built as the run builds them (the folder, the class table,
    the scenes named for test or validation), so that the Pretrain page refuses a scene that names nothing before a
    run is started (a review launched one that failed in the background)."""
    if cfg.data.name == "synthetic":
        return None
    from ..data import build_dataset

    def read() -> None:  # and the batch it must fill over ``world`` ranks, as the run checks once its data is
        tiles = len(build_dataset(cfg.data, progress=False))  # built (batch 64 on 41 tiles failed in the background)
        if problem := batch_problem(tiles, cfg.train.batch_size, world):
            raise DataError(problem)

    return _problem_of(read, cfg.data.root)


def _problem_of(read: Any, root: Any) -> str | None:
    try:
        read()
    except DataError as err:
        return " ".join(str(err).split())
    except OSError as err:
        return f"data: {err.strerror or err} ({getattr(err, 'filename', '') or root})"
    return None
