"""Where a segmentation model's or probe's encoder weights come from (``model.init``), as a path.

Its own module so that a linear probe, and the Fine-tune page's form, can resolve an init without importing the
fine-tuning trainer (and with it segmentation-models-pytorch, timm and torchvision: 2-3 s of a process's start).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..config import ConfigError
from ..store.runs import AmbiguousRunName, NoSuchRun, NotARunError, Run, open_run_arg, runs_root


def resolve_init(init: str) -> Path | None:
    """'random', a pretraining run folder (its encoder export), or a checkpoint file holding an encoder. A run is
    also found by its name under the runs root, bare (as the Runs page lists it) or as ``runs/<run>`` (as the README
    writes it, when ``FALSE_WB_RUNS`` puts the runs elsewhere), as ``--resume`` and ``export`` find it."""
    if init == "random":
        return None
    p = Path(init)
    if not p.exists():
        try:  # a run's name, bare or as runs/<run>, found as every command finds it
            p = open_run_arg(init).path
        except AmbiguousRunName as err:
            raise ConfigError(f"model.init: {err}") from None
        except NoSuchRun:
            pass  # neither a run nor a file: said below
        except NotARunError as err:  # a folder of that name that is no run
            raise NotARunError(f"model.init: {err}") from None
    if p.is_dir():
        enc = p / "checkpoints" / "encoder.safetensors"
        if not enc.is_file():
            raise NotARunError(f"model.init: {p} is not a pretraining run with an encoder checkpoint "
                               "(checkpoints/encoder.safetensors)")
        _say_if_live(Run(p))
        return enc
    if not p.is_file():
        raise ConfigError(f"model.init: no such run folder or checkpoint: {p}, nor a run of that name in {runs_root()}")
    return p


def _say_if_live(run: Run) -> None:
    """A run still training gives the encoder of its last checkpoint, not of its end: said (a review fine-tuned from
    a half-trained run without a word)."""
    if run.is_live():
        status = run.status()
        warnings.warn(f"model.init: run {run.path.name} is still training (step {status.get('step')} of "
                      f"{status.get('total_steps')}): its encoder is the one of its last checkpoint, not of its end",
                      stacklevel=3)
