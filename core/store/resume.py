"""Reopening a run folder to continue it: the one path every trainer's ``--resume`` takes.

Why one place: a run may have been killed at any write. Continuing it means taking its lock first (no second
writer), then making the folder consistent again (temp files gone, checkpoint cards that match their files,
records past the checkpoint dropped), and then choosing where to continue: the last checkpoint, or step 0 when
the run was killed before it wrote one.
"""
from __future__ import annotations

from pathlib import Path

from .checkpoint import CheckpointError, read_metadata, repair_card
from .runs import Run, open_run
from .run_lock import lock_run


def open_for_resume(path: str | Path) -> tuple[Run, Path | None]:
    """(run, checkpoint to continue from, or None to start again at step 0), with this process as the run's writer.

    Raises NotARunError (not a run folder), RunBusyError (another process writes it) or CheckpointError (the last
    checkpoint is unreadable), each in one line."""
    run = open_run(path)
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


__all__ = ["open_for_resume"]
