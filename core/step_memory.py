"""Whether one training step (fine-tuning or pretraining) fits the host's memory, said before the first step.

Why: a Fine-tune form took a batch of 4096 on a 2-core machine (capped to the 657 training tiles) and its process
held 19 of the machine's 23 GB within 40 s, still in its first step, until it was killed (a review). On the CPU a
too-large step does not fail: it takes the machine down with it. What a step keeps for its backward pass grows with
batch x crop area; it is measured, not guessed: the tensors autograd saves in one forward pass of a small input
(parameters left out; a frozen encoder saves nothing), counted once per storage, with a margin of ``MARGIN`` for
what a real step holds besides (measured per 256 px tile, DeepLabV3+ / ResNet-18, 0.9 kB per pixel saved: a step's peak
grew 1.14x that in full fine-tuning and 1.3-1.6x with a frozen encoder, whose forward pass holds transient features).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import ConfigError

PROBE_SIDE = 64
FREE_SHARE = 0.8  # of the memory available now: the rest for the data, the process and the system
MARGIN = 1.6  # a step's peak over what autograd saves (transient buffers): the frozen encoder's 1.6x, measured


def saved_bytes_per_pixel(model: nn.Module, channels: int, side: int = PROBE_SIDE) -> float:
    """Bytes per input pixel that autograd saves for the backward pass of one forward pass (BatchNorm in eval
    mode, so its running statistics stay as they are; what it saves is the same)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return t

    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.zeros(1, channels, side, side, device=device))
    finally:
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
                      views: int = 1, processes: int = 1) -> None:
    """ConfigError naming ``train.batch_size`` or ``size_field`` (the crop, or pretraining's ``data.image_size``)
    when a CPU step of ``batch`` tiles, ``views`` crops each that train (SimCLR's two, MoCo's query alone), in each of
    ``processes`` processes of this host, would need more than ``FREE_SHARE`` of the memory available (a GPU's own
    out-of-memory error is one line already). ``asked``: the batch the config gave, where the trainer capped it to
    the training tiles."""
    if device.type != "cpu":
        return
    available = available if available is not None else available_host_bytes()
    if not available:
        return
    try:
        per_pixel = saved_bytes_per_pixel(model, channels)
    except (TypeError, ValueError, RuntimeError):  # a method's model that takes other inputs: not judged here
        return
    per_tile = MARGIN * per_pixel * crop * crop * views * processes
    fixed = 3 * weight_bytes(model) * processes  # gradients and an optimizer's two moments besides the weights
    limit = FREE_SHARE * available
    if per_tile * batch + fixed <= limit:
        return
    fits = int((limit - fixed) // per_tile) if limit > fixed else 0
    field = "train.batch_size" if fits >= 2 else size_field
    given = f"{asked} ({batch} per step: the training tiles)" if asked not in (None, batch) else f"{batch}"
    each = f" ({views} training views each)" if views > 1 else ""
    advice = (f"at most {fits} tiles of {crop} px fit: lower train.batch_size" if fits >= 2 else
              f"not even 2 tiles fit: lower {size_field}" if limit > fixed else
              "the model's weights, gradients and optimizer state alone do not fit: a smaller model.encoder")
    msg = (f"train.batch_size {given}{each} x {size_field} {crop} px: one training step would hold about "
           f"{(per_tile * batch + fixed) / 2**30:.1f} GB (what its backward pass keeps, and the weights' gradients "
           f"and optimizer state), over the {100 * FREE_SHARE:.0f} % of this machine's "
           f"{available / 2**30:.1f} GB free that a step may take; {advice}")
    raise ConfigError(msg, [(field, msg)])
