"""Encoders, projection heads, SimCLR and MoCo v2.

Encoders are smp's ResNet encoders rebuilt without smp (``core.ssl.resnet``: the same parameter names, features and
seeded weights), so pretrained weights load unchanged into smp segmentation models
(``model.encoder.load_state_dict``) and a pretraining process never imports smp, timm or torchvision. Nothing is
downloaded: encoders start random or from a local safetensors file.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from ..config import ENCODERS
from ..imaging.bands import RGB, card_bands
from ..store.checkpoint import CheckpointError, check_weights, not_found
from .resnet import ResNetEncoder


def build_encoder(name: str, weights: str | Path | None = None, bands: Sequence[str] | None = None,
                  field: str = "model.weights") -> nn.Module:
    """A ResNet encoder (smp's, rebuilt) for ``bands`` (default R, G, B), random or loaded from a local safetensors
    file (encoder keys, or ``encoder.``-prefixed); an RGB checkpoint loads into more bands by ``adapt_first_conv``.
    Errors name ``field``, the setting ``weights`` came from."""
    if name not in ENCODERS:
        raise ValueError(f"model.encoder: unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    encoder = ResNetEncoder(name, in_channels=3 if bands is None else len(bands))
    if weights is not None:
        load_encoder_weights(encoder, weights, field=field, bands=bands)
    return encoder


FIRST_CONV = "conv1.weight"  # the stem of every ResNet encoder here


def adapt_first_conv(state: dict[str, Tensor], bands: Sequence[str] | None) -> dict[str, Tensor]:
    """An RGB checkpoint's first layer for other bands: R, G and B keep their own filters, every other band (NIR,
    ...) starts from the mean of the RGB filters, as is customary. Other checkpoints are returned as they are."""
    w = state.get(FIRST_CONV)
    if bands is None or w is None or w.shape[1] != 3 or list(bands) == list(RGB):
        return state
    mean = w.mean(dim=1)
    cols = [w[:, RGB.index(b)] if b in RGB else mean for b in bands]
    return {**state, FIRST_CONV: torch.stack(cols, dim=1).contiguous()}


ENCODER_PREFIXES = ("encoder.", "model.encoder.", "model.net.encoder.")  # export, pretraining, segmentation


def load_encoder_weights(encoder: nn.Module, path: str | Path, field: str = "model.weights",
                         bands: Sequence[str] | None = None) -> None:
    """Load an encoder from any of our checkpoints: an encoder export, a pretraining or a segmentation one.
    ``bands``: the encoder's input bands; a checkpoint made for other bands is refused (RGB ones are adapted).
    Errors name ``field``, the setting the path came from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{field}: {not_found(path, ('encoder.safetensors', 'best.safetensors'))}")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for a torn or foreign file
        if Path(path).suffix == ".json" and Path(path).with_suffix(".safetensors").is_file():
            raise ValueError(f"{field}: {path} is a checkpoint's card; give the weights beside it, "
                             f"{Path(path).with_suffix('.safetensors')}") from None
        raise ValueError(f"{field}: {path} is not a readable safetensors file ({err})") from None
    try:
        check_weights(path, state)
    except CheckpointError as err:
        raise ValueError(f"{field}: {err}") from None
    for prefix in ENCODER_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    made_for = checkpoint_bands(path)
    want = list(bands) if bands is not None else list(RGB)
    if made_for != list(RGB) and made_for != want:
        raise ValueError(f"{field}: {path} was trained on bands {', '.join(made_for)}; this model reads "
                         f"{', '.join(want)} (set data.bands: [{', '.join(made_for)}] to use it)")
    state = adapt_first_conv(state, bands)
    try:
        missing, unexpected = nn.Module.load_state_dict(encoder, state, strict=False)  # smp's returns nothing
    except RuntimeError:
        raise ValueError(f"{field}: {path} holds {_encoder_name(path) or 'another'} encoder weights of "
                         "other shapes than this encoder's") from None
    if missing or unexpected:
        raise ValueError(f"{field}: {path} does not fit this encoder "
                         f"({len(missing)} missing keys, {len(unexpected)} unexpected keys; another encoder type?)")


def checkpoint_bands(path: str | Path) -> list[str]:
    """The bands a checkpoint of ours was trained on (its card's ``bands``, or its run's ``data.bands``); R, G, B
    for every checkpoint made before bands existed."""
    try:
        from ..store.checkpoint import read_metadata

        card = read_metadata(Path(path)).get("card", {}) or {}
    except Exception:  # noqa: BLE001 - a foreign file: its shapes decide
        return list(RGB)
    return card_bands(card)


def check_encoder_name(field: str, path: str | Path | None, encoder: str) -> None:
    """Before any work: a checkpoint whose card names another encoder than the config's is refused in one line (a
    probe found out only after making its run folder, with a traceback in its log)."""
    made = _encoder_name(Path(path)) if path is not None else None
    if made and made != encoder:
        raise ValueError(f"{field}: {path} holds {made} encoder weights; this run builds {encoder} (set "
                         f"model.encoder={made} to use them)")


def _encoder_name(path: Path) -> str | None:
    try:
        from ..store.checkpoint import read_metadata

        return read_metadata(path).get("card", {}).get("encoder")
    except Exception:  # an informative extra only
        return None


def feature_dim(encoder: nn.Module) -> int:
    return int(encoder.out_channels[-1])


def pooled_features(encoder: nn.Module, x: Tensor) -> Tensor:
    """Global-average-pooled last feature map: the representation the projection head and embeddings use."""
    return F.adaptive_avg_pool2d(encoder(x)[-1], 1).flatten(1)


class ProjectionHead(nn.Module):
    """SimCLR MLP head: Linear-BN-ReLU then Linear (hidden 2048, out 128 by default)."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SimCLR(nn.Module):
    """Encoder plus projection head; both views go through the same network."""

    def __init__(self, encoder: str = "resnet18", weights: str | None = None, proj_hidden: int = 2048,
                 proj_dim: int = 128, bands: Sequence[str] | None = None) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, weights, bands)
        self.head = ProjectionHead(feature_dim(self.encoder), proj_hidden, proj_dim)

    def forward(self, views: Tensor) -> Tensor:
        return self.head(pooled_features(self.encoder, views))


class MoCoV2(nn.Module):
    """MoCo v2: a query network, its momentum copy for keys, and a queue of past keys with their dataset indices.

    The queue remembers which tile each key came from, so the loss can leave a query's own tile out of its
    negatives and the trainer can log FNSD flags as pairs of dataset tiles.
    """

    def __init__(self, encoder: str = "resnet18", weights: str | None = None, proj_hidden: int = 2048,
                 proj_dim: int = 128, momentum: float = 0.99, queue_size: int = 4096,
                 bands: Sequence[str] | None = None) -> None:
        super().__init__()
        self.momentum = momentum
        self.encoder = build_encoder(encoder, weights, bands)
        self.head = ProjectionHead(feature_dim(self.encoder), proj_hidden, proj_dim)
        self.key_encoder = copy.deepcopy(self.encoder)
        self.key_head = copy.deepcopy(self.head)
        for p in self.key_params():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def key_params(self) -> list[nn.Parameter]:
        return [*self.key_encoder.parameters(), *self.key_head.parameters()]

    def query_params(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.head.parameters()]

    @torch.no_grad()
    def momentum_update(self) -> None:
        torch._foreach_lerp_(self.key_params(), self.query_params(), 1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, ids: Tensor) -> None:
        """Write keys (already gathered across ranks) into the ring buffer."""
        n, size = keys.shape[0], self.queue.shape[0]
        slots = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[slots] = F.normalize(keys.detach().float(), dim=1).to(self.queue.dtype)
        self.queue_ids[slots] = ids.to(self.queue_ids.device)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def forward(self, queries: Tensor) -> Tensor:
        return self.head(pooled_features(self.encoder, queries))

    @torch.no_grad()
    def keys(self, views: Tensor) -> Tensor:
        return self.key_head(pooled_features(self.key_encoder, views))


def build_pretrain_model(method: str, model_cfg, bands: Sequence[str] | None = None) -> nn.Module:
    """The networks of a registered method (``core.ssl.registry``)."""
    from .registry import get_method

    return get_method(method).build_model(model_cfg, bands)
