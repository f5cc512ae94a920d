"""Which negatives of an anchor are likely false: the detectors of the false-negative-aware losses, and the rule
that names a detector and a treatment (``FnRule``).

Split from ``losses.py`` so that the loss core reads as what it is (denominator, numerator, treatment) and a new
detector is one branch in ``_detect``. Everything here is under ``no_grad``: a detector only chooses pairs.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

from .flags import Flags, LogDistance, record_capacity

Selection = Literal["global", "per_anchor"]
Detector = Literal["fnsd", "nearest", "support", "oracle"]
Treatment = Literal["fncc", "eliminate", "attract"]
DETECTORS: tuple[str, ...] = ("fnsd", "nearest", "support", "oracle")
TREATMENTS: tuple[str, ...] = ("fncc", "eliminate", "attract")


@dataclass(frozen=True)
class FnRule:
    """Which negatives are likely false and what the loss does with them. The defaults are FALSE's.

    ``threshold`` is FNCC's gate on the anchor's positive cosine (``math.inf``: never open); ``selection`` and
    ``topk`` are FNSD's; ``nearest`` and ``support`` flag each anchor's ``topk`` highest-scoring negatives, or with
    ``similarity`` set every negative whose score (a cosine) reaches it; ``symmetric`` also treats the mirror pair.
    """

    detector: Detector = "fnsd"
    treatment: Treatment = "fncc"
    alpha: float = 1.0
    threshold: float = 0.9
    selection: Selection = "global"
    topk: int = 1
    symmetric: bool = False
    similarity: float | None = None

    def check(self, temperature: float) -> None:
        _check_common(temperature, self.alpha, self.selection, self.topk)
        _check_threshold(self.threshold)
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.treatment not in TREATMENTS:
            raise ValueError(f"treatment must be one of {', '.join(TREATMENTS)}, got {self.treatment!r}")
        if self.similarity is not None and not -1.0 <= self.similarity <= 1.0:
            raise ValueError(f"similarity must be a cosine in [-1, 1], got {self.similarity}")


@dataclass
class Hints:
    """What a detector needs besides the embeddings. ``support``: (S, M, D) raw embeddings of S extra views of each
    row's image (``support``); ``class_of_id``: the dominant label class of every data set id, -1 for none
    (``oracle``)."""

    support: Tensor | None = None
    class_of_id: Tensor | None = None


# Argument checks

def _check_threshold(threshold: float) -> None:
    """The config's rule (0 < T <= 1), plus ``math.inf``: FNSD switched off, the plain loss."""
    if not (0.0 < threshold <= 1.0 or threshold == math.inf):
        raise ValueError(f"threshold must be in (0, 1] (or math.inf to switch FNSD off), got {threshold}")


def _check_common(temperature: float, alpha: float, selection: str, topk: int) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if selection not in ("global", "per_anchor"):
        raise ValueError(f"selection must be 'global' or 'per_anchor', got {selection!r}")
    if int(topk) != topk or topk < 1:
        raise ValueError(f"topk must be an integer >= 1, got {topk}")


# Detection over an (anchors x columns) logit matrix

def _lower_triangle(m: int, c: int, offset: int, device: torch.device) -> Tensor:
    """True where global column <= global row: the half that the reference's "global" search leaves out (cached in
    eager mode; a compiled loss builds it in its graph)."""
    if torch.compiler.is_compiling():
        return torch.arange(c, device=device)[None, :] <= torch.arange(m, device=device)[:, None] + offset
    return _cached_lower_triangle(m, c, offset, device)


@functools.lru_cache(maxsize=16)
def _cached_lower_triangle(m: int, c: int, offset: int, device: torch.device) -> Tensor:
    rows = torch.arange(m, device=device)[:, None] + offset
    cols = torch.arange(c, device=device)[None, :]
    return cols <= rows


def _fnsd_select(rel: Tensor, pos_logit: Tensor, selection: Selection, topk: int, reduce_min: bool) -> Flags:
    """The flagged pairs with their log D, at a fixed size (no host read).

    ``rel`` holds |expm1(l_ij - l_ip)| with +inf where a row may not flag: D_ij = exp(l_ip) * rel_ij, so the row
    factor is kept apart and very small temperatures neither overflow nor lose the ordering.
    """
    def log_d(rows: Tensor, cols: Tensor) -> Tensor:
        return pos_logit[rows] + torch.log(rel[rows, cols])

    if selection == "per_anchor":
        if topk == 1:  # min is a cheaper pass than topk
            rel_k, cols = rel.min(dim=1, keepdim=True)
        else:
            rel_k, cols = torch.topk(rel, topk, dim=1, largest=False)
        rows = torch.arange(rel.shape[0], device=rel.device)[:, None].expand_as(cols)
        return Flags.from_list(rows.reshape(-1), cols.reshape(-1), torch.isfinite(rel_k).reshape(-1), log_d)
    # global: one minimum over the whole (possibly multi-rank) batch; ties are all kept
    row_min = rel.amin(dim=1)
    log_d_row = pos_logit + torch.log(row_min)
    best = log_d_row.min()
    if reduce_min:
        dist.all_reduce(best, op=dist.ReduceOp.MIN)
    ties = ((log_d_row == best) & (best < math.inf))[:, None] & (rel == row_min[:, None])  # D = 0 (log -inf) counts
    return Flags.from_mask(ties, record_capacity(*rel.shape), log_d)


@dataclass
class _Layout:
    """Which entries of the (anchors x columns) logits play which role."""

    pos_col: Tensor                  # (m,) column of each anchor's positive
    self_col: Tensor | None          # (m,) column of the anchor itself (SimCLR), left out everywhere
    excluded: Tensor | None          # (m, C) bool: further entries left out everywhere (MoCo: same tile in queue)
    row_offset: int                  # global index of local row 0
    triangle: bool                   # global search only over columns after the anchor (the reference)
    row_ids: Tensor | None = None    # (m,) data set id of each anchor's image (oracle)
    col_ids: Tensor | None = None    # (C,) data set id behind each column, -1 for none (oracle)
    support_logits: Tensor | None = None  # (m, C) mean support-view similarity / temperature (support)


def _not_negative(lg: Tensor, lay: _Layout) -> Tensor:
    """(m, C) bool: True where a column is no negative of the row (its positive, itself, or excluded)."""
    m = lg.shape[0]
    arange = torch.arange(m, device=lg.device)
    out = torch.zeros_like(lg, dtype=torch.bool)
    out[arange, lay.pos_col] = True
    if lay.self_col is not None:
        out[arange, lay.self_col] = True
    if lay.excluded is not None:
        out |= lay.excluded
    return out


def _log_distance(lg: Tensor, lp: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """log D = log |exp(l_rc) - exp(l_r,pos)| of given pairs, as FNSD measures it (for every detector's records)."""
    return lp[rows] + torch.log((lg[rows, cols] - lp[rows]).exp().sub(1.0).abs())


def _highest(score: Tensor, blocked: Tensor, topk: int, at_least: float | None, log_d: LogDistance) -> Flags:
    """Each row's ``topk`` highest-scoring columns, or every column scoring ``at_least``; never a blocked one."""
    score = score.masked_fill(blocked, -math.inf)
    if at_least is not None:
        mask = score >= at_least
        return Flags.from_mask(mask, mask.numel(), log_d)
    k = min(topk, score.shape[1])
    vals, cols = torch.topk(score, k, dim=1)
    rows = torch.arange(score.shape[0], device=score.device)[:, None].expand_as(cols)
    return Flags.from_list(rows.reshape(-1), cols.reshape(-1), torch.isfinite(vals).reshape(-1), log_d)


def _same_class(lay: _Layout, class_of_id: Tensor) -> Tensor:
    """(m, C) bool: the column's tile has the anchor's dominant class (tiles of no class match nothing)."""
    table = class_of_id.to(lay.pos_col.device)

    def cls(ids: Tensor) -> Tensor:
        ok = ids >= 0
        return torch.where(ok, table[ids.clamp(min=0)], torch.full_like(ids, -1))

    rc, cc = cls(lay.row_ids), cls(lay.col_ids)
    return (rc[:, None] == cc[None, :]) & (rc >= 0)[:, None]


def _detect(lg: Tensor, lp: Tensor, lay: _Layout, rule: FnRule, temperature: float, hints: Hints,
            distributed: bool) -> Flags:
    """The pairs the rule's detector flags, with their log D (no gradient, no host read)."""
    m, c = lg.shape
    arange = torch.arange(m, device=lg.device)
    if rule.detector == "fnsd":
        rel = (lg - lp[:, None]).exp_().sub_(1.0).abs_()  # expm1 is ~30x slower than exp on CPU
        inf = torch.full((), math.inf, device=rel.device, dtype=rel.dtype)
        rel.index_put_((arange, lay.pos_col), inf)
        if lay.self_col is not None:
            rel.index_put_((arange, lay.self_col), inf)
        if lay.excluded is not None:
            rel.masked_fill_(lay.excluded, math.inf)
        if lay.triangle and rule.selection == "global":
            rel.masked_fill_(_lower_triangle(m, c, lay.row_offset, rel.device), math.inf)
        return _fnsd_select(rel, lp, rule.selection, rule.topk,
                            reduce_min=distributed and rule.selection == "global")

    def log_d(rows: Tensor, cols: Tensor) -> Tensor:
        return _log_distance(lg, lp, rows, cols)

    blocked = _not_negative(lg, lay)
    at_least = None if rule.similarity is None else rule.similarity / temperature
    if rule.detector == "nearest":
        return _highest(lg, blocked, rule.topk, at_least, log_d)
    if rule.detector == "support":
        if lay.support_logits is None:
            raise ValueError("detector 'support' needs the support views' embeddings (hints.support)")
        return _highest(lay.support_logits, blocked, rule.topk, at_least, log_d)
    if hints.class_of_id is None or lay.row_ids is None or lay.col_ids is None:  # oracle
        raise ValueError("detector 'oracle' needs the dominant class of every data set id (hints.class_of_id)")
    mask = _same_class(lay, hints.class_of_id) & ~blocked
    return Flags.from_mask(mask, mask.numel(), log_d)
