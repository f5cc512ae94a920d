"""A comparison's unit in the comparison's own process (``jobs: 1``): a new run folder, recorded as started, or the
folder of the same unit cut short by a stop or a kill, continued from its last checkpoint.

Why: a comparison on a CPU runs for hours one unit at a time. Without this, a resume started the unit that was
running again in a new folder, losing its steps and leaving the stopped folder behind. Continuing goes through the
trainers' own ``--resume`` path (``start`` of ``core.pretrain`` and ``core.finetune``), so it is the resume the app's
Resume button does, only in this process. A folder that cannot be continued (unreadable checkpoint, a config that is
no longer the comparison's) is said in one line and the unit starts again in a new one.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..config import config_to_yaml, validate_config
from ..store.lifecycle import EARLY_ERRORS, StopFlag
from ..store.run_lock import lock_run, unlock_run
from ..store.runs import Run, create_run

Started = Callable[[Path], None]  # told a new unit's run folder as soon as it exists
Log = Callable[[str], None]


def _train(trainer: Any, stop: StopFlag | None) -> str:
    """The unit's training, this process the run's writer (its lock, let go when the unit ends: else the app would
    show it running as long as the comparison lives). A stop takes effect at the trainer's next step or phase
    boundary, so the trainer keeps its checkpoint (the comparison's own stop raises where it lands)."""
    try:
        with stop.at_step_boundaries() if stop is not None else nullcontext():
            return trainer.fit(stop)
    finally:
        unlock_run(trainer.run)


def _continued(cfg: Any, cut_short: Path, start: Callable[[Any], Any], parse_args: Callable[[list[str]], Any],
               log: Log, label: str, what: str) -> Any | None:
    """The trainer continuing ``cut_short``, or None (said in one line) when that folder cannot be continued."""
    try:
        same = validate_config(Run(cut_short).stored_config(), type(cfg)) == cfg
    except EARLY_ERRORS as err:
        log(f"{label}: cannot continue {cut_short.name} ({err}): {what} starts again in a new folder")
        return None
    if not same:
        log(f"{label}: {cut_short.name} was made with other settings than the comparison's now (its preset changed?): "
            f"{what} starts again in a new folder")
        return None
    try:
        trainer = start(parse_args(["--resume", str(cut_short)]))
    except EARLY_ERRORS as err:
        unlock_run(Run(cut_short))
        log(f"{label}: cannot continue {cut_short.name} ({err}): {what} starts again in a new folder")
        return None
    except BaseException:
        unlock_run(Run(cut_short))  # a stop while its data is built: the folder stays for the next resume
        raise
    log(f"{label}: {what} continued in {trainer.run.path.name} from step {trainer.step}")
    return trainer


def _new(trainer: Any, cfg: Any, name: str, root: Path, started: Started, log: Log, label: str, what: str) -> Any:
    trainer.run = create_run(name, config_to_yaml(cfg), root)
    lock_run(trainer.run)  # the only writer, as a run of its own process (a --resume elsewhere is refused)
    started(trainer.run.path)
    log(f"{label}: {what} into {trainer.run.path.name}")
    return trainer


def pretrain_unit(cfg: Any, root: Path, cut_short: Path | None, started: Started, log: Log, label: str,
                  stop: StopFlag | None = None) -> Run | None:
    """Pretrain one unit; its run folder when it completed, None when it did not (stopped or failed)."""
    from ..distributed import DistEnv
    from ..ssl.pretrain import Trainer, parse_args, start

    trainer = None
    if cut_short is not None:
        trainer = _continued(cfg, cut_short, lambda args: start(args, DistEnv()), parse_args, log, label,
                             "pretraining")
    if trainer is None:
        trainer = _new(Trainer(cfg, None, progress=True), cfg, cfg.name, root, started, log, label, "pretraining")
    return trainer.run if _train(trainer, stop) == "completed" else None


def finetune_unit(cfg: Any, root: Path, cut_short: Path | None, started: Started, log: Log, label: str,
                  stop: StopFlag | None = None) -> Run:
    """Fine-tune and test one unit; its run folder. A stop that ends it early raises ``KeyboardInterrupt``: the
    caller has no score to read."""
    from .finetune import FinetuneTrainer
    from .finetune_cli import parse_args, start

    trainer = None
    if cut_short is not None:
        trainer = _continued(cfg, cut_short, start, parse_args, log, label, "fine-tuning")
    if trainer is None:
        trainer = _new(FinetuneTrainer(cfg, None, progress=True), cfg, cfg.name or f"finetune-{cfg.model.arch}", root,
                       started, log, label, "fine-tuning")
    if _train(trainer, stop) != "completed":
        raise KeyboardInterrupt
    return trainer.run


__all__ = ["pretrain_unit", "finetune_unit"]
