"""Reopening a run folder to continue it: the one path every trainer's ``--resume`` takes.

Why one place: a run may have been killed at any write. Continuing it means taking its lock first (no second
writer), then making the folder consistent again (temp files gone, checkpoint cards that match their files,
records past the checkpoint dropped), and then choosing where to continue: the last checkpoint, or step 0 when
the run was killed before it wrote one.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from .checkpoint import CheckpointError, read_metadata, repair_card
from .runs import Run, open_run_arg
from .run_lock import lock_run


def open_for_resume(path: str | Path) -> tuple[Run, Path | None]:
    """(run, checkpoint to continue from, or None to start again at step 0), with this process as the run's writer.

    Raises NotARunError (not a run folder), RunBusyError (another process writes it) or CheckpointError (the last
    checkpoint is unreadable), each in one line."""
    run = open_run_arg(path)
    lock_run(run)  # before anything is read or truncated; it also removes the temp files of a killed writer
    ckpt = run.last_checkpoint()
    if ckpt is None:
        run.truncate_after(0)
        run.log("no checkpoint yet: starting again from step 0")
        return run, None
    read_metadata(ckpt)  # readable? (one line if not)
    for other in sorted(run.checkpoint_dir.glob("*.safetensors")):
        try:
            if repair_card(other):
                run.log(f"rewrote {other.with_suffix('.json').name} from the card inside {other.name}")
        except (CheckpointError, OSError) as err:
            if other == ckpt:
                raise
            run.log(f"left {other.name} as it is: {err}")
    return run, ckpt


def refuse_if_complete(run: Run, max_steps: int | None) -> None:
    """A completed run resumed without more steps would only rebuild its data and say "completed" again: refused
    in one line that says how to train on (``train.max_steps`` above the step it reached)."""
    status = run.status()
    step = status.get("step")
    if status.get("state") == "completed" and max_steps is not None and isinstance(step, int) and step >= max_steps:
        raise ConfigError(f"train.max_steps: the run is complete at step {step}"
                          + (f" (train.max_steps={max_steps} asks for no more)" if max_steps < step else "")
                          + f"; to train on, resume it with train.max_steps=N (N above {step})")


__all__ = ["open_for_resume", "refuse_if_complete"]
