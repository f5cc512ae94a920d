"""``train.compile``: the network and the loss compiled, with a first step that falls back to eager when compiling
fails (no C compiler, an operator the compiler does not take), in one log line naming why.

Why the first step: ``torch.compile`` compiles lazily, at the first call, so a failure surfaces inside a training
step, after MoCo's momentum update and BatchNorm's running statistics may have moved. The step is therefore run on a
snapshot of the model and optimizer; on failure both are restored and the same step runs eagerly. Later errors are
the training's own and stay errors.
"""
from __future__ import annotations

import copy
from typing import Callable, TypeVar

import torch
from torch import nn

F = TypeVar("F", bound=Callable)


def compiled(fn: F, enabled: bool) -> F:
    """``fn`` compiled for fixed shapes (every step's batch has the same), or as it is."""
    return torch.compile(fn, dynamic=False) if enabled else fn


def why(error: BaseException) -> str:
    """One line: the error's type and the first line of its message."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def first_step_or_eager(step: Callable[[], object], model: nn.Module, optimizer: torch.optim.Optimizer,
                        go_eager: Callable[[str], None]) -> None:
    """Run ``step`` (the first compiled one); if it raises, restore the model and optimizer as they were, call
    ``go_eager`` with the reason, and run the step again (now eager). An eager failure is raised as it is."""
    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(optimizer.state_dict())
    try:
        step()
    except Exception as error:  # noqa: BLE001 - any failure of the compiled step is a reason to try eager
        model.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
        optimizer.zero_grad(set_to_none=True)
        go_eager(why(error))
        step()


__all__ = ["compiled", "why", "first_step_or_eager"]
