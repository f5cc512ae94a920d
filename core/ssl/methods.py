"""The contrastive methods, each owning its training step's loss: SimCLR and MoCo v2, with or without FALSE.

Why here and not in the trainer: a method decides what its forward passes are, which rows its loss has and what
happens after the optimizer step (MoCo: the momentum update, the keys, the queue and FALSE on the queue, together,
as in facebookresearch/moco's builder). The trainer calls ``loss`` and ``after_step`` and has no method branches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..config import PretrainConfig
from .losses import ContrastiveInfo, Hints, dcl_loss, false_loss, false_loss_moco, info_nce
from .models import MoCoV2, SimCLR
from .compiled import compiled
from .registry import Method, Step, get_method, register
from .shuffle_bn import KeyShuffle, bn_note, bn_splits, split_batchnorm

Gather = Callable[[Tensor], Tensor]  # a tensor of this rank -> the same of every rank, concatenated (rank-major)


def _rule_args(cfg: PretrainConfig) -> dict:
    lc = cfg.loss
    return dict(alpha=lc.alpha, threshold=lc.threshold, selection=lc.selection, topk=lc.topk,
                detector=lc.detector, treatment=lc.treatment, similarity=lc.similarity)


def contrastive_loss(cfg: PretrainConfig, embeddings: Tensor, ids: Tensor, distributed: bool,
                     hints: Hints | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """The configured SimCLR loss (InfoNCE, DCL, or a detector and a treatment: FALSE by default)."""
    lc = cfg.loss
    # the trainer's batches hold every id twice by construction (BatchOrder): no host read to prove it each step
    if lc.name == "info_nce":
        return info_nce(embeddings, ids, lc.temperature, distributed=distributed, check_ids=False)
    if lc.name == "dcl":
        return dcl_loss(embeddings, ids, lc.temperature, tau_plus=lc.tau_plus, distributed=distributed,
                        check_ids=False)
    return false_loss(embeddings, ids, temperature=lc.temperature, symmetric=lc.symmetric, hints=hints,
                      distributed=distributed, check_ids=False, **_rule_args(cfg))


def moco_loss(cfg: PretrainConfig, moco: MoCoV2, q: Tensor, k: Tensor, ids: Tensor, distributed: bool,
              hints: Hints | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """MoCo v2 loss against the queue. InfoNCE is FALSE with alpha 0 (FNSD's flags recorded, never acted on);
    DCL flags nothing."""
    lc = cfg.loss
    if lc.name == "false":
        args = _rule_args(cfg)
    else:
        args = dict(alpha=0.0, threshold=math.inf, selection=lc.selection, topk=lc.topk)
    return false_loss_moco(q, k, moco.queue.clone(), query_ids=ids, queue_ids=moco.queue_ids.clone(),
                           temperature=lc.temperature, hints=hints, detect=lc.name != "dcl",
                           tau_plus=lc.tau_plus if lc.name == "dcl" else None, distributed=distributed, **args)


@dataclass
class StepExtra:
    """What some detectors need of a step besides its two views: ``support`` (S*B, C, H, W) further augmented views
    of the step's B images, view-major (``support``), and the dominant class of every data set id (``oracle``)."""

    support: Tensor | None = None
    class_of_id: Tensor | None = None


@torch.no_grad()
def _hints(net: nn.Module, extra: StepExtra | None, rows_per_image: int, images: int) -> Hints | None:
    """The loss's hints for this step: the support views embedded (no gradient: they only detect), one (S, M, D)
    block whose row r belongs to image r mod B, as the loss's rows do."""
    if extra is None:
        return None
    support = None
    if extra.support is not None:
        emb = net(extra.support)
        support = emb.view(-1, images, emb.shape[1]).repeat(1, rows_per_image, 1)
    return Hints(support=support, class_of_id=extra.class_of_id)


@dataclass
class StepLoss:
    """What one step's loss gives the trainer besides the loss: the flags, the dataset ids of this rank's loss
    rows, and for MoCo the tile behind each queue slot (the flags' candidates), read before after_step moves the queue."""

    loss: Tensor
    info: ContrastiveInfo
    row_ids: Tensor
    candidate_ids: Callable[[], Tensor] | None = None


class SimCLRStep:
    """Both views of every image through the network; InfoNCE or FALSE over the 2B rows."""

    def __init__(self, cfg: PretrainConfig, model: nn.Module, net: nn.Module,
                 shuffle: KeyShuffle | None = None, compile_loss: bool = False) -> None:
        self.cfg, self.net = cfg, net
        self._loss = compiled(contrastive_loss, compile_loss)

    def loss(self, views: Tensor, ids: Tensor, distributed: bool, extra: StepExtra | None = None,
             step: int = 0) -> StepLoss:
        b = ids.shape[0] // 2
        hints = _hints(self.net, extra, rows_per_image=2, images=b)
        loss, info = self._loss(self.cfg, self.net(views), ids, distributed, hints)
        return StepLoss(loss, info, ids)

    def after_step(self, gather: Gather) -> None:
        pass


class MoCoStep:
    """Queries from the first views, keys from the momentum network on the second views, the queue as negatives;
    after the optimizer step the keys (of every rank) join the queue with their tile ids."""

    def __init__(self, cfg: PretrainConfig, model: nn.Module, net: nn.Module,
                 shuffle: KeyShuffle | None = None, compile_loss: bool = False) -> None:
        if not isinstance(model, MoCoV2):
            raise TypeError("method moco needs a MoCoV2 model")
        self.cfg, self.model, self.net, self.shuffle = cfg, model, net, shuffle
        self._loss = compiled(moco_loss, compile_loss)
        self._pending: tuple[Tensor, Tensor] | None = None

    def loss(self, views: Tensor, ids: Tensor, distributed: bool, extra: StepExtra | None = None,
             step: int = 0) -> StepLoss:
        b = ids.shape[0] // 2
        hints = _hints(self.net, extra, rows_per_image=1, images=b)
        q = self.net(views[:b])
        self.model.momentum_update()
        k = self.model.keys(views[b:]) if self.shuffle is None else self.shuffle.keys(self.model.keys, views[b:], step)
        loss, info = self._loss(self.cfg, self.model, q, k, ids[:b], distributed, hints)
        self._pending = (k, ids[:b])
        return StepLoss(loss, info, ids[:b], candidate_ids=lambda: self.model.queue_ids)

    @torch.no_grad()
    def after_step(self, gather: Gather) -> None:
        assert self._pending is not None, "after_step without loss"
        k, ids = self._pending
        self.model.enqueue(gather(k), gather(ids))
        self._pending = None


class SimCLRMethod(Method):
    """SimCLR (Chen et al., 2020): both views through one network, the other 2B - 2 rows of the batch negatives."""

    name, label = "simclr", "SimCLR"

    def build_model(self, model_cfg: Any, bands: Any = None) -> nn.Module:
        return SimCLR(encoder=model_cfg.encoder, weights=model_cfg.weights, proj_hidden=model_cfg.proj_hidden,
                      proj_dim=model_cfg.proj_dim, bands=bands)

    def step(self, cfg: PretrainConfig, model: nn.Module, net: nn.Module, rank: int, world: int,
             gather: Gather | None, compile_loss: bool) -> SimCLRStep:
        return SimCLRStep(cfg, model, net, None, compile_loss)


class MoCoMethod(Method):
    """MoCo v2 (Chen et al., 2020): a momentum key network and a queue of past keys as the negatives; its keys
    computed in shuffled sub-batches (shuffle-BN, ``model.moco_shuffle_bn``) so they never see their query's batch."""

    name, label, queue = "moco", "MoCo v2", True

    def build_model(self, model_cfg: Any, bands: Any = None) -> nn.Module:
        return MoCoV2(encoder=model_cfg.encoder, weights=model_cfg.weights, proj_hidden=model_cfg.proj_hidden,
                      proj_dim=model_cfg.proj_dim, bands=bands, momentum=model_cfg.moco_momentum,
                      queue_size=model_cfg.queue_size)

    def step(self, cfg: PretrainConfig, model: nn.Module, net: nn.Module, rank: int, world: int,
             gather: Gather | None, compile_loss: bool) -> MoCoStep:
        shuffle = KeyShuffle(cfg.seed, rank, world, gather if world > 1 else None) \
            if cfg.model.moco_shuffle_bn else None
        return MoCoStep(cfg, model, net, shuffle, compile_loss)

    def check(self, cfg: PretrainConfig) -> None:
        if cfg.model.queue_size < cfg.train.batch_size:
            raise ValueError(f"model.queue_size ({cfg.model.queue_size}) must hold at least one batch "
                             f"(train.batch_size {cfg.train.batch_size})")
        if cfg.model.moco_shuffle_bn:  # sub-batches of 2 or more (checked per rank again at start)
            bn_splits(cfg.train.batch_size, 1, cfg.model.moco_bn_splits)

    def negatives(self, cfg: PretrainConfig) -> tuple[int, str]:
        return cfg.model.queue_size, "model.queue_size"

    def loss_rows(self, local_batch: int) -> int:
        return local_batch

    def batchnorm(self, model: nn.Module, cfg: PretrainConfig, world: int, local_batch: int,
                  sync: bool) -> tuple[nn.Module, dict[str, Any]]:
        splits = 0
        if cfg.model.moco_shuffle_bn:  # no SyncBatchNorm: it would share statistics over the whole batch again
            splits = bn_splits(local_batch, world, cfg.model.moco_bn_splits)
            split_batchnorm(model, splits)
        else:
            model, _ = super().batchnorm(model, cfg, world, local_batch, sync)
        return model, {"moco_bn": bn_note(cfg.model.moco_shuffle_bn, splits, world, local_batch)}


register(SimCLRMethod())
register(MoCoMethod())


def method_step(cfg: PretrainConfig, model: nn.Module, net: nn.Module, rank: int = 0, world: int = 1,
                gather: Gather | None = None, compile_loss: bool = False) -> Step:
    """The step of ``cfg.method`` over this model (``net``: the same, maybe wrapped in DDP or compiled); across
    the ranks through ``gather`` where the method needs it; ``compile_loss`` compiles the loss (``train.compile``)."""
    return get_method(cfg.method).step(cfg, model, net, rank, world, gather, compile_loss)


__all__ = ["contrastive_loss", "moco_loss", "StepExtra", "StepLoss", "SimCLRStep", "MoCoStep", "SimCLRMethod",
           "MoCoMethod", "method_step"]
