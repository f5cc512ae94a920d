"""Checkpoints: one safetensors file per checkpoint, with its JSON card inside (and beside it, for people).

No pickle anywhere: tensors go into safetensors, everything else (optimizer hyper-parameters, scheduler and
scaler state, the card) is JSON in the file's metadata. Files are written atomically, so a run killed at any
moment leaves the previous checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .runs import atomic_write_bytes, atomic_write_json


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit what it is loaded into."""


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, *, model: torch.nn.Module, card: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, extra_state: dict[str, Any] | None = None) -> str:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` atomically; return the sha256."""
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    metadata: dict[str, str] = {"card": json.dumps(card)}
    if optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        metadata["optimizer"] = json.dumps(opt_meta)
    if extra_state is not None:
        metadata["state"] = json.dumps(extra_state)
    tensors = {k: v.contiguous().cpu().clone() for k, v in tensors.items()}
    blob = save(tensors, metadata=metadata)
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path, blob)
    atomic_write_json(path.with_suffix(".json"), {**card, "sha256": digest, "file": path.name})
    return digest


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (card, optimizer, state), without loading its tensors."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
    return {k: json.loads(v) for k, v in meta.items()}


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights (strict) and optimizer state into the given objects; return the metadata."""
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from None
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit this model: {first}") from None
    if optimizer is not None and "optimizer" in meta:
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
    return meta


def export_encoder(path: Path, encoder: torch.nn.Module, card: dict[str, Any]) -> str:
    """Encoder weights alone (``encoder.``-prefixed keys), ready for smp segmentation models."""
    tensors = {f"encoder.{k}": v.detach().contiguous().cpu().clone() for k, v in encoder.state_dict().items()}
    blob = save(tensors, metadata={"card": json.dumps(card)})
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path, blob)
    atomic_write_json(path.with_suffix(".json"), {**card, "sha256": digest, "file": path.name})
    return digest
