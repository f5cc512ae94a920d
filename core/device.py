"""Device and numeric precision choice: the GPU when there is one, bf16 where it is supported."""
from __future__ import annotations

import warnings
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
    try:
        dev = torch.device(requested)
    except RuntimeError:  # torch lists twenty device types, most of which no build of ours runs on
        raise ValueError(f"device {requested!r}: give auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {requested!r} asked for, but no CUDA GPU is available")
    return dev


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs on which bf16 matrix products beat fp32."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def pick_precision(requested: str, device: torch.device, inference: bool = False) -> Precision:
    """The one precision policy. "auto": on a GPU bf16, else fp16; on the CPU fp32 for training (bf16 autocast is
    slower there and its gradients coarser), and for inference bf16 only where the CPU has native bf16."""
    on_gpu = device.type == "cuda"
    if requested == "auto":
        if on_gpu:
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            requested = "bf16" if inference and device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if requested not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision: choose auto, fp32, bf16 or fp16, got {requested!r}")
    if requested == "fp16" and not on_gpu:  # asked for by name (auto never picks it off a GPU)
        warnings.warn("precision fp16 on the CPU has no fast kernels: it runs several times slower than fp32 (the "
                      "review: 2 steps took 40 s where 20 took 13 s); use fp32 or auto there", stacklevel=2)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return Precision(requested, dtype, autocast=dtype != torch.float32, channels_last=on_gpu)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return str(device)


def gpu_count() -> int:
    """CUDA GPUs this process can see: how many ranks the Pretrain page offers to start (one per GPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
