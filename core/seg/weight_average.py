"""The mean of a fine-tuning run's weights over its last steps (stochastic weight averaging, Izmailov et al. 2018).

Why: on a small labeled set the model picked by a few validation images is close to a coin toss (the Dubai runs'
validation mIoU jumps between about 35 and 50 % from one evaluation to the next, and the best one was once the
worst on the test tile). Averaging the weights of the last part of a run needs no choice: it lands in the middle
of the region the run wanders in, which tends to generalise at least as well as any one point of it. BatchNorm
statistics of an average are not the average of statistics, so they are measured again on training crops.

torch's ``AveragedModel`` and ``update_bn`` do the arithmetic; this module decides when to average, holds the
learning rate steady meanwhile, and saves/restores the average so a killed run resumes exactly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from ..store.checkpoint import load_checkpoint, save_checkpoint

MAX_BN_BATCHES = 100  # one pass over the training tiles, at most this many batches


class WeightAverage:
    """Averages the parameters after every step from ``start`` (a step index) on."""

    def __init__(self, model: nn.Module, fraction: float, total_steps: int) -> None:
        self.start = min(total_steps - 1, max(0, math.floor(fraction * total_steps)))
        self.average = AveragedModel(model, use_buffers=False)

    @property
    def count(self) -> int:
        return int(self.average.n_averaged.item())

    def lr_step(self, step: int) -> int:
        """The step the learning-rate schedule should see: it stops decaying where the averaging starts."""
        return min(step, self.start)

    def after_step(self, model: nn.Module, steps_done: int) -> None:
        if steps_done > self.start:
            self.average.update_parameters(model)

    def describe(self, bn_batches: int) -> str:
        return (f"mean of the weights after steps {self.start + 1}-{self.start + self.count} ({self.count} models), "
                f"BatchNorm statistics re-measured on {bn_batches} batches of training crops")

    def finish(self, batches: Iterable[torch.Tensor]) -> nn.Module:
        """The averaged model with its BatchNorm statistics measured on ``batches``; in eval mode."""
        model = self.average.module
        update_bn(batches, model)
        return model.eval()

    # ------------------------------------------------------------------ resume
    # One file per checkpoint step, ``average-<step>.safetensors``: written before the step's ``last`` checkpoint and
    # the older ones removed after it, so whatever write a kill lands on, the average of the step a resume starts
    # from is on disk.
    @staticmethod
    def path(folder: Path, step: int) -> Path:
        return folder / f"average-{step}.safetensors"

    def save(self, folder: Path, card: dict[str, Any], step: int) -> None:
        save_checkpoint(self.path(folder, step), model=self.average, card=card,
                        extra_state={"step": step, "averaged": self.count})

    def prune(self, folder: Path, step: int) -> None:
        """Remove the averages of other steps (call once ``last`` of ``step`` is written)."""
        keep = self.path(folder, step).name
        for old in folder.glob("average-*.safetensors"):
            if old.name != keep:
                old.with_suffix(".json").unlink(missing_ok=True)
                old.unlink(missing_ok=True)

    def restore(self, folder: Path, step: int, log: Callable[[str], None]) -> None:
        """Load the average saved with the checkpoint of ``step`` (none before the averaging starts)."""
        path = self.path(folder, step)
        if path.exists():
            load_checkpoint(path, model=self.average)
        elif step > self.start:
            log(f"weight average: no {path.name} beside the step-{step} checkpoint; averaging starts afresh here")


def training_batches(get_batch: Callable[[int], torch.Tensor], steps_per_epoch: int) -> Iterator[torch.Tensor]:
    """The inputs ``update_bn`` sees: the training crops of one pass, as the steps draw them (capped), one at a
    time so that a large set is never all in memory."""
    return (get_batch(i) for i in range(bn_batch_count(steps_per_epoch)))


def bn_batch_count(steps_per_epoch: int) -> int:
    return min(steps_per_epoch, MAX_BN_BATCHES)
