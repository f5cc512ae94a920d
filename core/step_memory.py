"""Whether one training step (fine-tuning or pretraining) fits the host's memory, said before the first step.

Why: a Fine-tune form took a batch of 4096 on a 2-core machine (capped to the 657 training tiles) and its process
held 19 of the machine's 23 GB within 40 s, still in its first step, until it was killed (a review). On the CPU a
too-large step does not fail: it takes the machine down with it. The activations a step keeps for its backward pass
grow with batch x crop area; they are measured, not guessed, by summing the outputs of every leaf module on a small
input (about 1.2 kB per pixel for DeepLabV3+ / ResNet-18: 630 MB estimated and 590 MB measured at 8 x 256 px, 2.5 GB
and 2.6 GB at 32 x 256 px).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import ConfigError

PROBE_SIDE = 64
FREE_SHARE = 0.8  # of the memory available now: the rest for the weights, the optimizer, the data and the system


def activation_bytes_per_pixel(model: nn.Module, channels: int, side: int = PROBE_SIDE) -> float:
    """Bytes per input pixel of every leaf module's output in one forward pass (float32): what training keeps."""
    total = [0]

    def count(_m: nn.Module, _i: object, out: object) -> None:
        outs = out if isinstance(out, (tuple, list)) else [out]
        total[0] += sum(t.numel() * t.element_size() for t in outs if torch.is_tensor(t))

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()  # BatchNorm's running statistics stay as they are
        with torch.no_grad():
            model(torch.zeros(1, channels, side, side, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total[0] / (side * side)


def weight_bytes(model: nn.Module) -> int:
    """The bytes of the model's trainable weights: their gradients take as much again in a step."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def available_host_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The memory the kernel says can be had without swapping (``MemAvailable``); None where it does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_step_memory(model: nn.Module, channels: int, batch: int, crop: int, device: torch.device,
                      available: int | None = None, asked: int | None = None, size_field: str = "data.crop_size",
                      views: int = 1) -> None:
    """ConfigError naming ``train.batch_size`` and ``size_field`` (the crop, or pretraining's ``data.image_size``)
    when a CPU step of ``batch`` tiles, ``views`` crops each (SimCLR's two), would need more than ``FREE_SHARE`` of
    the host memory available (a GPU's own out-of-memory error is one line already). ``asked``: the batch the config
    gave, where the trainer capped it to the training tiles."""
    if device.type != "cpu":
        return
    available = available if available is not None else available_host_bytes()
    if not available:
        return
    try:
        per_pixel = activation_bytes_per_pixel(model, channels)
    except (TypeError, ValueError, RuntimeError):  # a method's model that takes other inputs: not judged here
        return
    per_tile = per_pixel * crop * crop * views
    # the gradients and an optimizer's two moments besides the weights: three times their size, whatever the batch
    fixed = 3 * weight_bytes(model)
    need, room = per_tile * batch + fixed, FREE_SHARE * available - fixed
    if need <= FREE_SHARE * available:
        return
    fits = max(0, int(room // per_tile))
    field = "train.batch_size" if fits >= 2 else size_field
    given = f"{asked} ({batch} per step: the training tiles)" if asked not in (None, batch) else f"{batch}"
    each = f" ({views} views each)" if views > 1 else ""
    msg = (f"train.batch_size {given}{each} x {size_field} {crop} px: one training step would hold about "
           f"{need / 2**30:.1f} GB of activations, and this machine has {available / 2**30:.1f} GB free; "
           + (f"at most {fits} tiles of {crop} px fit: lower train.batch_size" if fits >= 2 else
              f"not even 2 tiles fit: lower {size_field}"))
    raise ConfigError(msg, [(field, msg)])
