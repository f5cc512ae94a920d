"""Reopening a run folder to continue it: the one path every trainer's ``--resume`` takes.

Why one place: a run may have been killed at any write. Continuing it means taking its lock first (no second
writer), then making the folder consistent again (temp files gone, checkpoint cards that match their files,
records past the checkpoint dropped), and then choosing where to continue: the last checkpoint, or step 0 when
the run was killed before it wrote one.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..console import count
from .checkpoint import CheckpointError, read_metadata, repair_card
from .run_compare import flat_settings
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
        run.truncate_after(-1)  # every record goes, step 0's too (the kNN monitor's untrained encoder)
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


def refuse_if_complete(run: Run, max_steps: int | None, epochs: float | None = None) -> None:
    """A completed run resumed without more steps would only rebuild its data and say "completed" again, and a
    stopped one given fewer steps than it ran was marked completed at the step it had reached, "steps 83->50" (a
    review): both refused in one line that says how to train on (``train.max_steps`` above the step it reached).
    A run set by ``epochs`` (``max_steps`` None) is checked once its data is built: ``max_steps`` is then the steps
    those epochs make, and the line names the epochs."""
    status = run.status()
    step = status.get("step")
    if max_steps is None or not isinstance(step, int):
        return
    asked = (f"train.max_steps={max_steps}" if epochs is None
             else f"train.epochs={epochs:g} ({count(max_steps, 'step')})")
    if status.get("state") == "completed" and step >= max_steps:
        raise ConfigError(f"{'train.max_steps' if epochs is None else 'train.epochs'}: the run is complete at step "
                          f"{step}" + (f" ({asked} asks for no more)" if max_steps < step or epochs is not None else "")
                          + f"; to train on, resume it with train.max_steps=N (N above {step})")
    ckpt = run.last_checkpoint()  # where the resume continues: its status may run ahead of it (a killed run)
    card = (read_metadata(ckpt).get("card") or {}) if ckpt is not None else {}
    at = card.get("step") if isinstance(card.get("step"), int) else 0
    if max_steps < at:
        raise ConfigError(f"{asked} is below the step the run continues from ({at}): a resume cannot shorten it; "
                          f"resume with train.max_steps=N (N at least {at}), or without it to finish as planned")


class ResumeRefused(ConfigError):
    """A resume's key=value overrides are refused: the command was wrong, not the run, whose state stays as it was."""


# What a resume may change: the run's length, how often it reports, saves and measures, how it tests, where its
# data and machine are, and what records it. The length moves the learning-rate schedule's end, and another device
# (and with precision "auto" its precision) other kernels: the steps still to run change, which is what training on or
# moving a run means. Anything else (batch size, views, loss, learning rate, precision, seed) would make config.yaml
# describe steps that ran otherwise, and the run's records (e.g. the batches fn_report rebuilds) stop matching it.
RESUME_SETTINGS = ("name", "train.max_steps", "train.epochs", "train.log_every", "train.ckpt_every",
                   "train.knn_every", "train.eval_every", "train.test_tile", "train.test_overlap", "train.device",
                   "train.compile", "train.trackers", "train.mlflow_uri", "data.root")


# where a run's settings can go on instead, in a new run of the same kind (a fine-tuning run was pointed to its
# encoder export, which only pretraining runs have: a review)
GO_ON_WITH = {
    "pretrain": "from this run's encoder: model.weights=<run>/checkpoints/encoder.safetensors to pretrain on, "
                "model.init=<run> to fine-tune",
    "finetune": "from this run's model: model.init=<run>/checkpoints/best.safetensors",
    "probe": "python -m core.probe --config ... with the same model.init",
}


def refuse_changed_settings(before: Any, after: Any, allowed: Iterable[str] = RESUME_SETTINGS,
                            kind: str = "pretrain") -> list[str]:
    """The settings a resume's overrides change, as "key: old -> new"; ``ResumeRefused`` naming the first that a
    resume may not change. Why: a resume with train.batch_size=24 ran, rewrote config.yaml as if every step had used
    24, and the false-negative report then failed on the first steps' batches, blaming the data."""
    old, new = flat_settings(_plain(before)), flat_settings(_plain(after))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    allowed = set(allowed)
    refused = [k for k in changed if k not in allowed]
    if refused:
        raise ResumeRefused(f"{refused[0]}: a resumed run keeps the settings its steps so far ran with "
                            f"({old.get(refused[0])!r}, asked {new.get(refused[0])!r}"
                            + (f"; also {', '.join(refused[1:])}" if len(refused) > 1 else "")
                            + "); on resume only the length, reporting, checkpoints, test window, data folder, "
                            "device and trackers may change. Start a new run for other settings ("
                            + GO_ON_WITH.get(kind, GO_ON_WITH["pretrain"]) + ")")
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" + (_schedule_words(old.get(k), new.get(k))
                                                         if k in LENGTH and kind != "probe" else "") for k in changed]


LENGTH = ("train.max_steps", "train.epochs")


def _schedule_words(old: Any, new: Any) -> str:
    """What a new length does to the learning-rate schedule (a walkthrough saw the rate climb from 6e-6 at the end of
    a 12-step cosine to 4e-5 after a resume to 18; a shorter one compresses it instead)."""
    how = ("stretched" if new > old else "compressed") if isinstance(old, (int, float)) and isinstance(
        new, (int, float)) else "moved"
    return (f" (the learning-rate schedule is {how} to the new length: the steps still to run follow its new curve, "
            "so the run is not what a fresh run of this length would be)")


# the command that continues a run of each kind (a linear probe's resume runs it again: it keeps no checkpoint)
RESUMED_BY = {"pretrain": "python -m core.pretrain --resume", "finetune": "python -m core.finetune --resume",
              "compare": "python -m core.compare --resume", "probe": "python -m core.probe --resume"}
KIND_WORDS = {"pretrain": "pretraining", "finetune": "fine-tuning", "compare": "comparison", "probe": "linear probe"}


def refuse_other_kind(run: Run, kind: str) -> None:
    """ResumeRefused naming the command that continues ``run`` when it is not a ``kind`` run: a comparison given to
    ``core.pretrain --resume`` was refused as "pretrain_config: unknown setting (and 15 more ...)"."""
    other = run.kind()
    if other == kind:
        return
    how = f"continue it with {RESUMED_BY[other]} {run.path}" if other in RESUMED_BY else "no command resumes it"
    raise ResumeRefused(f"{run.path.name} is a {KIND_WORDS.get(other, other)} run, not a "
                        f"{KIND_WORDS.get(kind, kind)} run: {how}")


def resume_config(path: str | Path, overrides: list[str], validate: Any, upgrade: Any = dict,
                  kind: str = "pretrain") -> tuple[Any, list[str]]:
    """(the config a resume of the run at ``path`` runs with, the settings its overrides change), read before the
    run is locked or touched, so that a refused override leaves the folder as it was. ``validate``: raw -> config;
    ``upgrade``: an old run's raw config brought up to date; ``kind``: the resuming command's (another is refused,
    naming its own command)."""
    from ..config import apply_overrides

    run = open_run_arg(path)
    refuse_other_kind(run, kind)
    raw = upgrade(run.stored_config())
    after = apply_overrides(copy.deepcopy(raw), overrides)  # in place: the stored settings are kept apart
    try:
        cfg = validate(after)
    except (ConfigError, ValueError):  # a refused setting is named as such first: a batch size changed on resume
        unknown = set(flat_settings(_plain(after))) - set(flat_settings(_plain(raw)))  # read "loss.topk (100) is
        refuse_changed_settings(raw, after, (*RESUME_SETTINGS, *unknown), kind)  # more than ..."; a typo: its own
        raise
    try:
        before: Any = validate(raw)
    except (ConfigError, ValueError):  # a stored config only the overrides make valid again: its raw settings
        return cfg, refuse_changed_settings(raw, after, kind=kind)
    return cfg, refuse_changed_settings(before, cfg, kind=kind)


def _plain(cfg: Any) -> dict[str, Any]:
    return cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(cfg)


__all__ = ["KIND_WORDS", "RESUMED_BY", "RESUME_SETTINGS", "ResumeRefused", "open_for_resume", "refuse_changed_settings",
           "refuse_if_complete", "refuse_other_kind", "resume_config"]
