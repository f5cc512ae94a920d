"""Device and numeric precision choice: the GPU when there is one, bf16 where it is supported."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: torch.dtype
    autocast: bool
    channels_last: bool


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {requested!r} asked for, but no CUDA GPU is available")
    return dev


def pick_precision(requested: str, device: torch.device) -> Precision:
    """fp32 on the CPU by default (bf16 autocast is slower there); bf16, else fp16, on a GPU."""
    on_gpu = device.type == "cuda"
    if requested == "auto":
        requested = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "fp32"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return Precision(requested, dtype, autocast=dtype != torch.float32, channels_last=on_gpu)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return str(device)
