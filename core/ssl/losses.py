"""Contrastive losses: InfoNCE (NT-Xent), false-negative-aware InfoNCE (FALSE and its relatives) and the debiased
contrastive loss (DCL), all from one core.

False-negative handling is two independent choices (an :class:`FnRule`):

- a *detector* decides which negatives of an anchor are likely false: ``fnsd`` (FALSE's self-determination, Zhang et
  al., IEEE GRSL 2022: the negative whose exp-scaled similarity is closest to the anchor's positive similarity),
  ``nearest`` (the anchor's own most similar negatives), ``support`` (FNC, Huynh et al., WACV 2022: similarity to
  extra augmented views of the anchor's image, averaged), ``oracle`` (same dominant label class: the ceiling, it
  reads labels);
- a *treatment* decides what the loss does with them: ``fncc`` (FALSE's calibration: a flagged pair of a confident
  anchor counts as ``alpha`` positive and ``1 - alpha`` negative), ``eliminate`` (left out of the denominator, FNC),
  ``attract`` (one more positive, averaged with the real one as in supervised contrastive learning, FNC).

FALSE is ``fnsd`` + ``fncc``. DCL (Chuang et al., NeurIPS 2020) detects nothing: it debiases the negatives' sum
with a class prior ``tau_plus``. See docs/FALSE_SPEC.md and docs/fn_strategies.md.

Everything is vectorised over the batch and computed in fp32 log-sum-exp arithmetic, also under autocast.
One identity keeps it cheap: a calibrated candidate moves weight ``alpha`` from the negatives to the positives,
so the denominator ``P + N`` is the plain InfoNCE denominator and only the numerator changes:

    L_i = logsumexp_{j != i} l_ij  -  log( exp(l_i,pos) + alpha * sum_{m in cal(i)} exp(l_im) )

Example::

    >>> z = torch.randn(8, 128)                     # two views of 4 images, any row order
    >>> ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    >>> loss, info = false_loss(z, ids, temperature=0.5, alpha=1.0, threshold=0.9)
    >>> info.num_flagged, info.num_calibrated
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..distributed import gather_no_grad, gather_with_grad, use_distributed
from .detectors import (DETECTORS, TREATMENTS, Detector, FnRule, Hints, Selection, Treatment, _check_common,  # noqa: F401
                        _check_threshold, _detect, _Layout, _log_distance, _not_negative)

# ----------------------------------------------------------------------------------------------------------------
# Diagnostics

@dataclass
class ContrastiveInfo:
    """What FNSD flagged and how the batch looks; no gradient. Row indices are global (over all ranks)."""

    anchor: Tensor          # (K,) anchor row
    candidate: Tensor       # (K,) flagged column: a batch row (SimCLR) or a queue slot (MoCo)
    distance: Tensor        # (K,) D = |S_ac - s_a| on exp-scaled similarities
    cos: Tensor             # (K,) cosine of anchor and candidate
    cos_pos: Tensor         # (K,) cosine of the anchor and its own positive
    calibrated: Tensor      # (K,) bool: the treatment applied to the pair (FNCC: its gate opened)
    mirrored: Tensor        # (K,) bool: added in the candidate's row by symmetric=True
    num_flagged: int = 0
    num_calibrated: int = 0
    pos_cos_mean: float = float("nan")
    neg_cos_mean: float = float("nan")
    frac_above_threshold: float = float("nan")

    PAIR_FIELDS = ("anchor", "candidate", "distance", "cos", "cos_pos", "calibrated", "mirrored")

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-serialisable dict per flagged pair."""
        cols = {name: getattr(self, name).detach().cpu().tolist() for name in self.PAIR_FIELDS}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]

    def counts(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.PAIR_FIELDS}


def _empty_info(device: torch.device) -> ContrastiveInfo:
    e_long = torch.empty(0, dtype=torch.long, device=device)
    e_float = torch.empty(0, dtype=torch.float32, device=device)
    e_bool = torch.empty(0, dtype=torch.bool, device=device)
    return ContrastiveInfo(e_long, e_long, e_float, e_float, e_float, e_bool, e_bool)


# ----------------------------------------------------------------------------------------------------------------
# Argument checks

def _check_embeddings(embeddings: Tensor, sample_ids: Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (M, D), got shape {tuple(embeddings.shape)}")
    if sample_ids.ndim != 1 or sample_ids.shape[0] != embeddings.shape[0]:
        raise ValueError(f"sample_ids must be (M,) with M = {embeddings.shape[0]}, got {tuple(sample_ids.shape)}")


def _positive_columns(ids_all: Tensor, row_offset: int, m: int) -> Tensor:
    """For each local row, the global column of the other view with the same sample id (sort, no M x M work)."""
    order = torch.argsort(ids_all, stable=True)
    first, second = order[0::2], order[1::2]
    sorted_ids = ids_all[order]
    ok = ids_all.numel() % 2 == 0 and bool((ids_all[first] == ids_all[second]).all()) and bool(
        (sorted_ids[2::2] != sorted_ids[1:-1:2]).all())
    if not ok:
        raise ValueError("sample_ids: every sample id must appear exactly twice (two views per image)")
    partner = torch.empty_like(order)
    partner[first] = second
    partner[second] = first
    return partner[row_offset: row_offset + m]


# ----------------------------------------------------------------------------------------------------------------
# The shared core: rows are anchors, columns are candidates

def _calibrated_numerator(logits: Tensor, pos_logit: Tensor, rows: Tensor, cols: Tensor, alpha: float) -> Tensor:
    """log( exp(l_pos) + alpha * sum exp(l_rc) ) per row, stable, differentiable through ``logits``."""
    if rows.numel() == 0 or alpha == 0.0:
        return pos_logit
    cand = logits[rows, cols]
    row_max = pos_logit.detach().clone().scatter_reduce(0, rows, cand.detach(), reduce="amax")
    terms = torch.zeros_like(pos_logit).index_add(0, rows, alpha * torch.exp(cand - row_max[rows]))
    return row_max + torch.log(torch.exp(pos_logit - row_max) + terms)


def _debiased_log_denominator(logits: Tensor, pos_logit: Tensor, lay: _Layout, temperature: float,
                              tau_plus: float) -> Tensor:
    """log( exp(l_pos) + N_g ) of DCL: the negatives' sum less the positives it holds by the class prior tau+,
    floored at N exp(-1/t) (Chuang et al., eq. 6), in stable log arithmetic."""
    neg = logits.masked_fill(_not_negative(logits.detach(), lay), -math.inf)
    n_neg = torch.isfinite(neg).sum(dim=1).to(logits.dtype)
    top = torch.maximum(pos_logit, neg.amax(dim=1)).detach()
    pos_e = torch.exp(pos_logit - top)
    neg_e = torch.exp(neg - top[:, None]).sum(dim=1)
    floor = n_neg * torch.exp(-1.0 / temperature - top)
    n_g = torch.maximum((neg_e - tau_plus * n_neg * pos_e) / (1.0 - tau_plus), floor)
    return top + torch.log(pos_e + n_g)


def _contrastive_core(logits: Tensor, lay: _Layout, *, temperature: float, rule: FnRule | None,
                      distributed: bool, hints: Hints | None = None,
                      tau_plus: float | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """The one loss: rows are anchors, columns candidates. ``rule`` None detects nothing (InfoNCE, or DCL with
    ``tau_plus``); otherwise its detector flags pairs and its treatment changes the numerator (fncc, attract) or the
    denominator (eliminate) of the flagged pairs it applies to."""
    m, c = logits.shape
    arange = torch.arange(m, device=logits.device)
    pos_logit = logits[arange, lay.pos_col]
    dropped = logits
    if lay.self_col is not None:
        dropped = dropped.index_put((arange, lay.self_col), torch.tensor(-math.inf, device=logits.device))
    if lay.excluded is not None:
        dropped = dropped.masked_fill(lay.excluded, -math.inf)

    threshold = math.inf if rule is None else rule.threshold
    with torch.no_grad():
        lg = logits.detach()
        lp = pos_logit.detach()
        cos_pos = lp * temperature
        gate = cos_pos >= threshold
        empty = torch.empty(0, dtype=torch.long, device=logits.device)
        rows, cols, log_d = empty, empty, lg.new_empty(0)
        if rule is not None:
            rows, cols, log_d = _detect(lg, lp, lay, rule, temperature, hints or Hints(), distributed)
        # FNCC treats the flags of confident anchors (its gate); eliminate and attract treat every flag
        opens = gate if rule is None or rule.treatment == "fncc" else torch.ones_like(gate)
        calibrated = opens[rows]
        mirrored = torch.zeros_like(calibrated)
        if rule is not None and rule.symmetric:
            rows, cols, log_d, calibrated, mirrored = _add_mirrors(rows, cols, log_d, calibrated, lg, lp, opens,
                                                                   lay.row_offset, distributed)

    t_rows, t_cols = rows[calibrated], cols[calibrated]
    treatment = "fncc" if rule is None else rule.treatment
    if treatment == "eliminate" and t_rows.numel():
        dropped = dropped.index_put((t_rows, t_cols), torch.tensor(-math.inf, device=logits.device))
    if tau_plus is not None:
        log_denominator = _debiased_log_denominator(logits, pos_logit, lay, temperature, tau_plus)
    else:
        log_denominator = torch.logsumexp(dropped, dim=1)
    if treatment == "fncc":
        log_numerator = _calibrated_numerator(logits, pos_logit, t_rows, t_cols, 0.0 if rule is None else rule.alpha)
    elif treatment == "attract":  # mean log-probability over the positive and the flagged (FNC, SupCon style)
        n_pos = torch.ones_like(pos_logit).index_add(0, t_rows, torch.ones_like(t_rows, dtype=pos_logit.dtype))
        log_numerator = pos_logit.index_add(0, t_rows, logits[t_rows, t_cols]) / n_pos
    else:
        log_numerator = pos_logit
    loss = (log_denominator - log_numerator).mean()

    with torch.no_grad():
        info = ContrastiveInfo(
            anchor=rows + lay.row_offset, candidate=cols, distance=torch.exp(log_d.double()).float(),
            cos=lg[rows, cols] * temperature, cos_pos=cos_pos[rows], calibrated=calibrated, mirrored=mirrored,
        )
        info = _finish_info(info, lg, lp, lay, gate, temperature, distributed)
    return loss, info


def _add_mirrors(rows: Tensor, cols: Tensor, log_d: Tensor, calibrated: Tensor, lg: Tensor, lp: Tensor,
                 gate: Tensor, row_offset: int, distributed: bool) -> tuple[Tensor, ...]:
    """symmetric=True: a treated (a, m) whose m is one of my rows adds (m, a) to row m, gated by m's positive
    (FNCC's gate; the other treatments pass an always-open one).

    A mirror that row m flagged by itself already is not added again (its weight *becomes* alpha once).
    """
    m, c = lg.shape
    g_rows, g_cols = rows[calibrated] + row_offset, cols[calibrated]
    if distributed:
        g_rows, g_cols = gather_no_grad(g_rows), gather_no_grad(g_cols)
    mine = (g_cols >= row_offset) & (g_cols < row_offset + m)
    m_rows, m_cols = g_cols[mine] - row_offset, g_rows[mine]
    fresh = ~torch.isin(m_rows * c + m_cols, rows * c + cols)
    m_rows, m_cols = m_rows[fresh], m_cols[fresh]
    log_d_m = _log_distance(lg, lp, m_rows, m_cols)
    n_own = rows.numel()
    mirrored = torch.arange(n_own + m_rows.numel(), device=lg.device) >= n_own
    return (torch.cat([rows, m_rows]), torch.cat([cols, m_cols]), torch.cat([log_d, log_d_m]),
            torch.cat([calibrated, gate[m_rows]]), mirrored)


def _finish_info(info: ContrastiveInfo, lg: Tensor, lp: Tensor, lay: _Layout, gate: Tensor, temperature: float,
                 distributed: bool) -> ContrastiveInfo:
    """Counts and mean cosines (over all ranks); pairs gathered so that every rank holds the full list."""
    m, c = lg.shape
    arange = torch.arange(m, device=lg.device)
    neg_sum = lg.sum() - lp.sum()
    neg_n = torch.tensor(float(m * (c - 1)), device=lg.device)
    if lay.self_col is not None:
        neg_sum = neg_sum - lg[arange, lay.self_col].sum()
        neg_n = neg_n - m
    if lay.excluded is not None:
        neg_sum = neg_sum - (lg * lay.excluded).sum()
        neg_n = neg_n - lay.excluded.sum()
    stats = torch.stack([neg_sum * temperature, neg_n, lp.sum() * temperature, gate.sum().to(lg.dtype),
                         torch.tensor(float(m), device=lg.device)])
    if distributed:
        dist.all_reduce(stats)
        info = ContrastiveInfo(*(gather_no_grad(getattr(info, n)) for n in ContrastiveInfo.PAIR_FIELDS))
    neg_sum, neg_n, pos_sum, above, total = stats.tolist()
    info.num_flagged = int(info.anchor.numel())
    info.num_calibrated = int(info.calibrated.sum().item())
    info.neg_cos_mean = neg_sum / max(neg_n, 1.0)
    info.pos_cos_mean = pos_sum / max(total, 1.0)
    info.frac_above_threshold = above / max(total, 1.0)
    return info


def _mean_support(support: Tensor | None, rows: int, dim: int, temperature: float) -> Tensor | None:
    """(S, m, D) support embeddings -> (m, D) the mean of their unit vectors over temperature: its product with a
    column is the mean support-view logit (one matmul, however many views)."""
    if support is None:
        return None
    if support.ndim != 3 or support.shape[1:] != (rows, dim):
        raise ValueError(f"support must be (S, {rows}, {dim}): S views of each row's image, got {tuple(support.shape)}")
    with torch.autocast(support.device.type, enabled=False):
        return F.normalize(support.float(), dim=2).mean(dim=0) / temperature


def _prepare_simclr(embeddings: Tensor, sample_ids: Tensor, temperature: float, distributed: bool,
                    hints: Hints | None = None) -> tuple[Tensor, _Layout]:
    _check_embeddings(embeddings, sample_ids)
    with torch.autocast(embeddings.device.type, enabled=False):
        z = F.normalize(embeddings.float(), dim=1)
        ids = sample_ids.to(z.device)
        if distributed:
            z_all = gather_with_grad(z)
            ids_all = gather_no_grad(ids)
            row_offset = dist.get_rank() * z.shape[0]
        else:
            z_all, ids_all, row_offset = z, ids, 0
        logits = (z / temperature) @ z_all.T  # scale the (M, D) side, not the (M, M) product
        sup = _mean_support(None if hints is None else hints.support, z.shape[0], z.shape[1], temperature)
        support_logits = None if sup is None else (sup @ z_all.detach().T)
    m = z.shape[0]
    lay = _Layout(pos_col=_positive_columns(ids_all, row_offset, m),
                  self_col=torch.arange(m, device=z.device) + row_offset, excluded=None,
                  row_offset=row_offset, triangle=True, row_ids=ids, col_ids=ids_all, support_logits=support_logits)
    return logits, lay


# ----------------------------------------------------------------------------------------------------------------
# Public losses

def info_nce(embeddings: Tensor, sample_ids: Tensor, temperature: float = 0.5, *,
             distributed: bool | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """NT-Xent / InfoNCE over a batch of views; rows sharing a sample id are positives.

    Args:
        embeddings: (M, D) raw projections (normalised here).
        sample_ids: (M,) image id of each row; every id appears exactly twice.
        temperature: tau > 0.
        distributed: gather across ranks (default: when torch.distributed is initialised with > 1 rank).
    Returns:
        The mean loss over this rank's anchors and a ContrastiveInfo with no flagged pairs.
    Raises:
        ValueError: a bad argument; the message names it.
    """
    _check_common(temperature, 0.0, "global", 1)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist)
    return _contrastive_core(logits, lay, temperature=temperature, rule=None, distributed=use_dist)


def _check_tau_plus(tau_plus: float) -> None:
    if not 0.0 < tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in (0, 1), got {tau_plus}")


def dcl_loss(embeddings: Tensor, sample_ids: Tensor, temperature: float = 0.5, *, tau_plus: float = 0.1,
             distributed: bool | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020) over a batch of views: InfoNCE whose negatives' sum is
    corrected for the share ``tau_plus`` of same-class images it holds (a class prior in (0, 1)); flags nothing."""
    _check_common(temperature, 0.0, "global", 1)
    _check_tau_plus(tau_plus)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist)
    return _contrastive_core(logits, lay, temperature=temperature, rule=None, distributed=use_dist,
                             tau_plus=tau_plus)


def false_loss(embeddings: Tensor, sample_ids: Tensor, *, temperature: float = 0.5, alpha: float = 1.0,
               threshold: float = 0.9, selection: Selection = "global", topk: int = 1, symmetric: bool = False,
               detector: Detector = "fnsd", treatment: Treatment = "fncc", similarity: float | None = None,
               hints: Hints | None = None, distributed: bool | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """False-negative-aware InfoNCE; with the defaults, FALSE: self-determination (FNSD) and calibration (FNCC).

    Args:
        embeddings: (M, D) raw projections of M views (normalised here).
        sample_ids: (M,) image id of each view; every id appears exactly twice, in any order.
        temperature: tau > 0 (paper: 0.5).
        alpha: weight in [0, 1] moved from negative to positive for a calibrated pair (paper: 1.0; ``fncc``).
        threshold: gate T in (0, 1] on the anchor's positive cosine (paper: 0.9); ``math.inf`` never opens it.
        selection: "global" flags the pair(s) with the smallest D in the whole batch among j > i (the reference);
            "per_anchor" lets every anchor flag its own ``topk`` nearest negatives (both triangles). ``fnsd`` only.
        topk: flags per anchor ("per_anchor"; ``nearest`` and ``support`` without ``similarity``).
        symmetric: also treat the mirror pair (m, a) in row m (under ``fncc``, gated by m's own positive).
        detector, treatment, similarity: see :class:`FnRule`.
        hints: what ``support`` (the support views' embeddings) and ``oracle`` (the classes) need.
        distributed: gather embeddings (with gradient) and ids across ranks and reduce the global minimum.
    Returns:
        (loss, info): the mean loss over this rank's anchors and the flagged pairs with diagnostics.
    Raises:
        ValueError: a bad argument; the message names it.
    """
    rule = FnRule(detector, treatment, alpha, threshold, selection, topk, symmetric, similarity)
    rule.check(temperature)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist, hints)
    if topk > logits.shape[1] - 2:
        raise ValueError(f"topk must be at most the number of negatives per anchor ({logits.shape[1] - 2}), got {topk}")
    return _contrastive_core(logits, lay, temperature=temperature, rule=rule, distributed=use_dist, hints=hints)


def false_loss_moco(queries: Tensor, keys: Tensor, queue: Tensor, *, query_ids: Tensor, queue_ids: Tensor,
                    temperature: float = 0.2, alpha: float = 1.0, threshold: float = 0.9,
                    selection: Selection = "global", topk: int = 1, symmetric: bool = False,
                    detector: Detector = "fnsd", treatment: Treatment = "fncc", similarity: float | None = None,
                    hints: Hints | None = None, tau_plus: float | None = None, detect: bool = True,
                    distributed: bool | None = None) -> tuple[Tensor, ContrastiveInfo]:
    """MoCo v2 InfoNCE with false-negative handling on the queue (FALSE with the defaults).

    Anchors are the queries, each one's positive is its own momentum key, negatives are the queue entries.
    Queue entries with the query's own dataset id (the same tile seen at an earlier step) and slots that hold no
    key yet (id < 0) are left out of the negatives. With alpha = 0 or ``threshold=math.inf`` this is the plain MoCo
    loss (FNSD's flags still recorded); ``detect=False`` flags nothing, and ``tau_plus`` makes it DCL. Candidate
    indices in the returned info are queue slots; pass ``distributed`` only to reduce the global minimum across
    ranks (queries stay local). ``symmetric`` has no mirror here (queue slots are not anchors) and is ignored.
    """
    rule = FnRule(detector, treatment, alpha, threshold, selection, topk, False, similarity)
    rule.check(temperature)
    if tau_plus is not None:
        _check_tau_plus(tau_plus)
    if queries.shape != keys.shape or queries.ndim != 2:
        raise ValueError(f"queries and keys must both be (N, D), got {tuple(queries.shape)} and {tuple(keys.shape)}")
    if queue.ndim != 2 or queue.shape[1] != queries.shape[1]:
        raise ValueError(f"queue must be (K, {queries.shape[1]}), got {tuple(queue.shape)}")
    if query_ids.shape != (queries.shape[0],) or queue_ids.shape != (queue.shape[0],):
        raise ValueError("query_ids must be (N,) and queue_ids (K,) to match queries and queue")
    use_dist = use_distributed(distributed)
    n = queries.shape[0]
    with torch.autocast(queries.device.type, enabled=False):
        q = F.normalize(queries.float(), dim=1)
        k = F.normalize(keys.float(), dim=1)
        bank = F.normalize(queue.float(), dim=1)
        qs = q / temperature
        logits = torch.cat([(qs * k).sum(dim=1, keepdim=True), qs @ bank.T], dim=1)
        sup = _mean_support(None if hints is None else hints.support, n, q.shape[1], temperature)
        support_logits = None if sup is None else torch.cat([(sup * k).sum(dim=1, keepdim=True), sup @ bank.T], 1)
    if topk > queue.shape[0]:
        raise ValueError(f"topk must be at most the queue size ({queue.shape[0]}), got {topk}")
    excluded = torch.zeros_like(logits, dtype=torch.bool)
    qids = queue_ids.to(q.device)
    # the query's own tile, and slots never filled (id < 0: the random initial queue), are not negatives
    own = query_ids.to(q.device)
    excluded[:, 1:] = (own[:, None] == qids[None, :]) | (qids < 0)[None, :]
    lay = _Layout(pos_col=torch.zeros(n, dtype=torch.long, device=q.device), self_col=None, excluded=excluded,
                  row_offset=dist.get_rank() * n if use_dist else 0, triangle=False, row_ids=own,
                  col_ids=torch.cat([own[:1].new_full((1,), -1), qids]), support_logits=support_logits)
    loss, info = _contrastive_core(logits, lay, temperature=temperature, rule=rule if detect else None,
                                   distributed=use_dist, hints=hints, tau_plus=tau_plus)
    info.candidate = info.candidate - 1  # column 0 is the positive; report queue slots
    return loss, info
