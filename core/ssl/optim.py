"""Optimizers and the learning-rate schedule used by pretraining.

LARS is timm's ``Lars`` (You et al. 2017): SGD with momentum whose step for each weight matrix and kernel is
``trust * (g + wd * w)`` with the trust ratio ``eta * ||w|| / (||g|| + wd * ||w|| + eps)`` (1 where ``||w||`` or
``||g||`` is 0); norms and biases get neither weight decay nor the adaptation. It replaced our own loop, which
followed SimCLR's TensorFlow form ``eta * ||w|| / ||g + wd * w||``, after ``bench/lars.py`` timed timm's per-tensor
step 1.42-1.60x faster on ResNet-50 (CPU); on CUDA timm takes its multi-tensor path. The two ratios agree when weight
decay is 0 and differ by about 1e-4 relative at the presets' 1e-6. It lives in ``core.ssl.lars``, imported only when
chosen: importing timm pulls in torchvision and ``torch._dynamo`` (2-3 s of every launched run's start).
"""
from __future__ import annotations

import math

import torch
from torch import nn

# torch takes AdamW's multi-tensor path by default on CUDA only; on the CPU it halves the step of a ResNet-18
# (0.073 -> 0.032 s, one thread) with the same bits. SGD's gains nothing; LARS keeps timm's choice (module docstring).
ADAMW_FOREACH = True


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay (and LARS) for weight matrices and kernels only; not for norms and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lars": True},
            {"params": no_decay, "weight_decay": 0.0, "lars": False}]


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                    momentum: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "lars":
        from .lars import LARS

        return LARS(groups, lr=lr, momentum=momentum)
    for g in groups:
        g.pop("lars")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, foreach=ADAMW_FOREACH)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}; choose lars, sgd or adamw")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to zero."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warm_up_note(warmup: int, total: int, field: str = "train.warmup_steps") -> str | None:
    """Why a run never trains at its learning rate (a warm-up at least as long as the run), or None. ``field``: the
    setting that made the warm-up (``train.warmup_epochs`` where that is set)."""
    if warmup < total or total <= 0:
        return None
    return (f"warm-up of {warmup} steps in a run of {total}: the run is all warm-up, its learning rate reaches "
            f"its peak (train.lr x batch / 256) at its last step if at all (shorten {field})")
