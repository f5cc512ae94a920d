"""A comparison's unit in the comparison's own process (``jobs: 1``): a new run folder, recorded as started, or the
folder of the same unit cut short by a stop or a kill, continued from its last checkpoint.

Why: a comparison on a CPU runs for hours one unit at a time. Without this, a resume started the unit that was
running again in a new folder, losing its steps and leaving the stopped folder behind. Continuing goes through the
trainers' own ``--resume`` path (``start`` of ``core.pretrain`` and ``core.finetune``), so it is the resume the app's
Resume button does, only in this process.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator

from ..config import config_to_yaml
from ..store.lifecycle import StopFlag
from ..store.run_lock import unlock_run
from ..store.runs import Run, create_run

Started = Callable[[Path], None]  # told a new unit's run folder as soon as it exists


@contextmanager
def _writing(run: Run) -> Iterator[None]:
    """A resumed folder is locked by this process (``open_for_resume``); it is let go when the unit ends, or the app
    would show it running as long as the comparison lives."""
    try:
        yield
    finally:
        unlock_run(run)


def _train(trainer: Any, resumed: bool, stop: StopFlag | None) -> str:
    """The unit's training; a stop ends it at a step boundary with a checkpoint (the comparison's own stop raises
    where it lands, which would leave nothing to continue from)."""
    with (stop.at_step_boundaries() if stop is not None else nullcontext()):
        if not resumed:
            return trainer.fit(stop)
        with _writing(trainer.run):
            return trainer.fit(stop)


def pretrain_unit(cfg: Any, root: Path, cut_short: Path | None, started: Started, log: Callable[[str], None],
                  label: str, stop: StopFlag | None = None) -> Run | None:
    """Pretrain one unit; its run folder when it completed, None when it did not (stopped or failed)."""
    from ..distributed import DistEnv
    from ..ssl.pretrain import Trainer, parse_args, start

    if cut_short is not None:
        trainer = start(parse_args(["--resume", str(cut_short)]), DistEnv())
        log(f"{label}: pretraining continued in {trainer.run.path.name} from step {trainer.step}")
    else:
        trainer = Trainer(cfg, None, progress=True)
        trainer.run = create_run(cfg.name, config_to_yaml(cfg), root)
        started(trainer.run.path)
        log(f"{label}: pretraining into {trainer.run.path.name}")
    return trainer.run if _train(trainer, cut_short is not None, stop) == "completed" else None


def finetune_unit(cfg: Any, root: Path, cut_short: Path | None, started: Started, log: Callable[[str], None],
                  label: str, stop: StopFlag | None = None) -> Run:
    """Fine-tune and test one unit; its run folder. A stop that ends it early raises ``KeyboardInterrupt``: the
    caller has no score to read."""
    from .finetune import FinetuneTrainer
    from .finetune_cli import parse_args, start

    if cut_short is not None:
        trainer = start(parse_args(["--resume", str(cut_short)]))
        log(f"{label}: fine-tuning continued in {trainer.run.path.name} from step {trainer.step}")
    else:
        trainer = FinetuneTrainer(cfg, None, progress=True)
        trainer.run = create_run(cfg.name or f"finetune-{cfg.model.arch}", config_to_yaml(cfg), root)
        started(trainer.run.path)
    if _train(trainer, cut_short is not None, stop) != "completed":
        raise KeyboardInterrupt
    return trainer.run


__all__ = ["pretrain_unit", "finetune_unit"]
