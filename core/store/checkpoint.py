"""Checkpoints: one safetensors file per checkpoint, with its JSON card inside (and beside it, for people).

No pickle anywhere: tensors go into safetensors, everything else (optimizer hyper-parameters, scheduler and
scaler state, the card) is JSON in the file's metadata. Files are written atomically, so a run killed at any
moment leaves the previous checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save_file

from .file_versions import file_sha256
from .runs import atomic_write_json, atomic_write_with


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


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint's content, copied off the training state (CPU tensors of its own, metadata as JSON text), so
    that writing it can wait or run in a thread while training goes on (``core/store/background.py``)."""
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    card: dict[str, Any]


def _own_cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous, on the CPU, in memory no training step writes to: one copy (two for a CPU channels-last
    weight would be one too many)."""
    t = t.detach()
    c = t.contiguous()
    if c.device.type == "cpu" and c.data_ptr() != t.data_ptr():
        return c  # contiguous() already copied
    return c.to("cpu", copy=True)


def _cpu_as_is(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` contiguous on the CPU, copied only where they are not (or share memory with one before, which
    safetensors refuses): for a write made now, before any step changes them."""
    out, seen = {}, set()
    for k, t in tensors.items():
        c = t.detach().contiguous().cpu()
        if c.untyped_storage().data_ptr() in seen:
            c = c.clone()
        seen.add(c.untyped_storage().data_ptr())
        out[k] = c
    return out


def snapshot_checkpoint(*, model: torch.nn.Module, card: dict[str, Any],
                        optimizer: torch.optim.Optimizer | None = None,
                        extra_state: dict[str, Any] | None = None, copy: bool = True) -> Snapshot:
    """The state of a checkpoint as it is now: later steps may change the model and optimizer freely. Without
    ``copy``, the tensors are the training state's own (a write made before the next step: ``save_checkpoint``),
    which spares a copy of every weight and optimizer moment (a fifth of a small model's save)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    metadata: dict[str, str] = {"card": json.dumps(card)}
    if optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        metadata["optimizer"] = json.dumps(opt_meta)
    if extra_state is not None:
        metadata["state"] = json.dumps(extra_state)
    return Snapshot({k: _own_cpu_copy(v) for k, v in tensors.items()} if copy else _cpu_as_is(tensors), metadata,
                    card)


def encoder_snapshot(encoder: torch.nn.Module, card: dict[str, Any], of_model: Snapshot | None = None,
                     prefix: str = "model.encoder.") -> Snapshot:
    """The encoder's weights alone (``encoder.``-prefixed keys, ready for smp), shared with ``of_model``'s copy
    when that snapshot holds them under ``prefix`` (no second copy of the weights)."""
    names = list(encoder.state_dict())
    if of_model is not None and all(prefix + k in of_model.tensors for k in names):
        tensors = {f"encoder.{k}": of_model.tensors[prefix + k] for k in names}
    else:
        tensors = {f"encoder.{k}": _own_cpu_copy(v) for k, v in encoder.state_dict().items()}
    return Snapshot(tensors, {"card": json.dumps(card)}, card)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """``tensors`` and their metadata into ``path`` atomically, streamed to the file (no whole-file copy in memory,
    half the CPU time of serialising to bytes first); returns the file's sha256."""
    return str(atomic_write_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), sha256=True))


def write_checkpoint(path: Path, snap: Snapshot) -> str:
    """Write ``path`` (.safetensors) and ``path.with_suffix('.json')`` atomically; return the sha256."""
    digest = write_safetensors(path, snap.tensors, snap.metadata)
    atomic_write_json(path.with_suffix(".json"), {**snap.card, "sha256": digest, "file": path.name})
    return digest


def save_checkpoint(path: Path, *, model: torch.nn.Module, card: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None, extra_state: dict[str, Any] | None = None) -> str:
    """Write ``path`` (.safetensors) and its ``.json`` card atomically, now; return the sha256."""
    return write_checkpoint(path, snapshot_checkpoint(model=model, card=card, optimizer=optimizer,
                                                      extra_state=extra_state, copy=False))


def not_found(path: str | Path, wanted: tuple[str, ...] = ("best.safetensors", "encoder.safetensors",
                                                            "last.safetensors")) -> str:
    """Why ``path`` is no checkpoint, in words that lead to one: a run folder names the file inside it that the
    caller can use (``wanted``, in order of preference)."""
    path = Path(path)
    if not path.is_dir():
        return f"checkpoint not found: {path}" + _shipped_hint(path)
    inside = [f for name in wanted for f in (path / "checkpoints" / name, path / name) if f.is_file()]
    return f"{path} is a folder, not a checkpoint file" + (f"; give {inside[0]}" if inside else "")


def _shipped_hint(path: Path) -> str:
    """A bare name that is none of the shipped models' (``dubai``): the ones it is like, else all of them."""
    if len(path.parts) != 1 or path.suffix:
        return ""
    import difflib

    from .runs import REPO_ROOT

    names = sorted(p.stem for p in (REPO_ROOT / "checkpoints").glob("*.safetensors"))
    close = [n for n in names if n.startswith(path.name)] or difflib.get_close_matches(path.name, names, n=2)
    if close:
        return f" (did you mean {' or '.join(close)}? a shipped model is named without .safetensors)"
    return f" (the shipped models: {', '.join(names)})" if names else ""


def unreadable(path: Path, err: Exception) -> CheckpointError:
    """Why a checkpoint file cannot be read, in words a user can act on: a file that is no safetensors file at all
    (a .pt, a JSON card, an image) is said to be that, not left to the parser's "header too large"."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        head = b""
    if len(head) < 9 or head[8:9] != b"{":  # safetensors: an 8-byte header length, then the JSON header
        return CheckpointError(f"checkpoint {path} is unreadable: it is not a safetensors file (damaged, or another "
                               "format: the workbench's checkpoints are .safetensors files it wrote; a .pt, a card's "
                               ".json or an image is not one)")
    return CheckpointError(f"checkpoint {path} is unreadable: {err}")


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (card, optimizer, state), without loading its tensors."""
    if not Path(path).is_file():
        raise CheckpointError(not_found(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise unreadable(path, err) from None
    return {k: json.loads(v) for k, v in meta.items()}


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, read into memory and checked (``check_weights``). Why not ``load_file``:
    it maps the file, and a resumed run that later replaces the file would keep the old one's disk space held."""
    try:
        tensors = load(Path(path).read_bytes())
    except (SafetensorError, OSError, ValueError) as err:
        raise unreadable(path, err) from None
    check_weights(path, tensors)
    return tensors


_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_COUNTERS = ("num_batches_tracked", "queue_ids", "queue_ptr", "n_averaged")  # our models' integer buffers


def check_weights(path: Path | str, tensors: dict[str, torch.Tensor]) -> None:
    """Every tensor of a checkpoint is what our models hold: float32/16 or bfloat16 and finite, or one of the known
    integer counters. A float64, int8 or NaN weight used to load silently (cast or not) and give masks anyway."""
    for name, t in tensors.items():
        if t.dtype in _FLOATS:
            if t.numel() and not all(bool(torch.isfinite(v)) for v in torch.aminmax(t)):  # NaN propagates: one
                # pass, no mask (a third of the time of isfinite(t).all())
                raise CheckpointError(f"checkpoint {path}: tensor {name} holds NaN or infinite values; it cannot be "
                                      "used (retrain, or take an earlier checkpoint)")
        elif not (name.endswith(_COUNTERS) or name.startswith("optim.")) or t.is_floating_point():
            raise CheckpointError(f"checkpoint {path}: tensor {name} is {str(t.dtype).replace('torch.', '')}; our "
                                  "models hold float32, float16 or bfloat16 weights")


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights (strict) and optimizer state into the given objects; return the metadata. A ``model`` built on
    the meta device (``torch.device("meta")``: no random initialisation to throw away) gets the checkpoint's
    tensors themselves, in the dtypes it was built with."""
    meta = read_metadata(path)
    tensors = {k: v.to(map_location) for k, v in read_tensors(path).items()}
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    built = model.state_dict()
    on_meta = any(t.is_meta for t in built.values())
    if on_meta:  # assigned, not copied: cast as a copy into the built tensors would (a float16 file, float32 model)
        model_sd = {k: v.to(built[k].dtype) if k in built and v.is_floating_point() else v
                    for k, v in model_sd.items()}
    try:
        model.load_state_dict(model_sd, strict=True, assign=on_meta)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit this model: {first}") from None
    if on_meta and any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise CheckpointError(f"checkpoint {path}: the model holds tensors a checkpoint does not store (build it "
                              "on a real device)")
    if optimizer is not None and "optimizer" in meta:
        opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
    return meta


def export_encoder(path: Path, encoder: torch.nn.Module, card: dict[str, Any]) -> str:
    """Encoder weights alone (``encoder.``-prefixed keys), ready for smp segmentation models."""
    return write_checkpoint(path, encoder_snapshot(encoder, card))


def repair_card(path: Path) -> bool:
    """Rewrite the ``.json`` beside a checkpoint from the card inside it when a kill between the two writes left
    it missing or describing an older file; True when it was repaired. Only its writer (lock holder) calls this."""
    path = Path(path)
    side = path.with_suffix(".json")
    digest = file_sha256(path)
    try:
        if json.loads(side.read_text()).get("sha256") == digest:
            return False
    except (OSError, ValueError, AttributeError):
        pass
    card = read_metadata(path).get("card") or {}
    atomic_write_json(side, {**card, "sha256": digest, "file": path.name})
    return True


# ------------------------------------------------------------------ random state, for exact resume
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """Every global random stream a training step may draw on (dropout, numpy, Python, CUDA), as JSON."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [np_state[0], np_state[1].tolist(), *(float(x) if i == 2 else int(x)
                                                        for i, x in enumerate(np_state[2:]))],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    """Restore what ``rng_state`` saved (older checkpoints without it: nothing to do)."""
    if not state:
        return
    torch.set_rng_state(_tensor(state["torch"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_tensor(s), i)
