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

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ..distributed import gather_equal, gather_with_grad, use_distributed
from .contrastive_info import ContrastiveInfo
from .detectors import (DETECTORS, TREATMENTS, Detector, FnRule, Hints, Selection, Treatment, _check_common,  # noqa: F401
                        _check_threshold, _detect, _Layout, _log_distance, _not_negative)
from .flags import Flags, attract_numerator, eliminated, fncc_numerator, mirrors

# ----------------------------------------------------------------------------------------------------------------
# Argument checks

def _check_embeddings(embeddings: Tensor, sample_ids: Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (M, D), got shape {tuple(embeddings.shape)}")
    if sample_ids.ndim != 1 or sample_ids.shape[0] != embeddings.shape[0]:
        raise ValueError(f"sample_ids must be (M,) with M = {embeddings.shape[0]}, got {tuple(sample_ids.shape)}")


def _positive_columns(ids_all: Tensor, row_offset: int, m: int, check: bool = True) -> Tensor:
    """For each local row, the global column of the other view with the same sample id (sort, no M x M work).
    ``check=False`` skips the two reads that prove every id appears twice (the trainer's batches are built so)."""
    order = torch.argsort(ids_all, stable=True)
    first, second = order[0::2], order[1::2]
    sorted_ids = ids_all[order]
    ok = ids_all.numel() % 2 == 0 and (not check or bool((ids_all[first] == ids_all[second]).all()) and bool(
        (sorted_ids[2::2] != sorted_ids[1:-1:2]).all()))
    if not ok:
        raise ValueError("sample_ids: every sample id must appear exactly twice (two views per image)")
    partner = torch.empty_like(order)
    partner[first] = second
    partner[second] = first
    return partner[row_offset: row_offset + m]


# ----------------------------------------------------------------------------------------------------------------
# The shared core: rows are anchors, columns are candidates

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
    denominator (eliminate) of the flagged pairs it applies to. Every shape is fixed: nothing here reads the device."""
    m, c = logits.shape
    arange = torch.arange(m, device=logits.device)
    pos_logit = logits[arange, lay.pos_col]
    dropped = logits
    if lay.self_col is not None:
        dropped = dropped.index_put((arange, lay.self_col), torch.full((), -math.inf, device=logits.device))
    if lay.excluded is not None:
        dropped = dropped.masked_fill(lay.excluded, -math.inf)

    threshold = math.inf if rule is None else rule.threshold
    with torch.no_grad():
        lg, lp = logits.detach(), pos_logit.detach()
        cos_pos = lp * temperature
        gate = cos_pos >= threshold
        flags = mirror = None
        if rule is not None:
            flags = _detect(lg, lp, lay, rule, temperature, hints or Hints(), distributed)
            # FNCC treats the flags of confident anchors (its gate); eliminate and attract treat every flag
            opens = gate if rule.treatment == "fncc" else torch.ones_like(gate)
            cal = flags.treated(opens)
            if rule.symmetric:
                mirror = mirrors(flags, cal, opens, lay.row_offset, m, c, gather_equal if distributed else None,
                                 lambda r, k: _log_distance(lg, lp, r, k))

    if tau_plus is not None:
        log_denominator = _debiased_log_denominator(logits, pos_logit, lay, temperature, tau_plus)
    else:
        treated = dropped
        if rule is not None and rule.treatment == "eliminate":
            treated = eliminated(dropped, flags, cal)
            if mirror is not None:
                treated = eliminated(treated, mirror.flags, mirror.cal)
        log_denominator = torch.logsumexp(treated, dim=1)
    if rule is None:
        log_numerator = pos_logit
    elif rule.treatment == "fncc":
        log_numerator = _numerator(fncc_numerator, logits, pos_logit, flags, cal, mirror, rule.alpha)
    elif rule.treatment == "attract":
        log_numerator = _numerator(attract_numerator, logits, pos_logit, flags, cal, mirror)
    else:
        log_numerator = pos_logit
    loss = (log_denominator - log_numerator).mean()

    with torch.no_grad():
        info = _info(flags, cal if flags is not None else None, mirror, lg, lp, lay, gate, temperature, distributed)
    return loss, info


def _numerator(fn, logits: Tensor, pos_logit: Tensor, flags: Flags, cal: Tensor, mirror, *args) -> Tensor:
    """A treatment's numerator over the own flags and their mirrors together (one list, or one mask)."""
    if mirror is not None:
        both = _joined(flags, mirror.flags)
        return fn(logits, pos_logit, both, torch.cat([cal, mirror.cal]) if both.dense is None
                  else cal | mirror.cal, *args)
    return fn(logits, pos_logit, flags, cal, *args)


def _joined(a: Flags, b: Flags) -> Flags:
    """Two sets of flags as one: lists concatenated (own first: today's order), masks or-ed."""
    dense = None if a.dense is None else a.dense | b.dense
    return Flags(torch.cat([a.rows, b.rows]), torch.cat([a.cols, b.cols]), torch.cat([a.valid, b.valid]),
                 torch.cat([a.log_d, b.log_d]), a.count + b.count, dense)


def _info(flags: Flags | None, cal: Tensor | None, mirror, lg: Tensor, lp: Tensor, lay: _Layout, gate: Tensor,
          temperature: float, distributed: bool) -> ContrastiveInfo:
    """The pairs (every rank's, so that each holds the full list) and the batch's statistics, on the device."""
    m, c = lg.shape
    arange = torch.arange(m, device=lg.device)
    neg_sum = lg.sum() - lp.sum()
    neg_n = torch.full((), float(m * (c - 1)), device=lg.device)
    if lay.self_col is not None:
        neg_sum = neg_sum - lg[arange, lay.self_col].sum()
        neg_n = neg_n - m
    if lay.excluded is not None:
        neg_sum = neg_sum - (lg * lay.excluded).sum()
        neg_n = neg_n - lay.excluded.sum()
    zero = torch.zeros((), device=lg.device)
    flagged = calibrated = zero
    if flags is not None:
        flagged, calibrated = flags.count, cal.sum()
        if mirror is not None:
            flagged, calibrated = flagged + mirror.flags.count, calibrated + mirror.cal.sum()
    stats = torch.stack([neg_sum * temperature, neg_n, lp.sum() * temperature, gate.sum().to(lg.dtype),
                         torch.full((), float(m), device=lg.device), flagged.to(lg.dtype),
                         calibrated.to(lg.dtype)])
    if distributed:
        dist.all_reduce(stats)
    if flags is None:
        return ContrastiveInfo.empty(stats)
    parts = [(flags, cal if flags.dense is None else cal[flags.rows, flags.cols], False)]
    if mirror is not None:
        m_cal = mirror.cal if mirror.flags.dense is None else mirror.cal[mirror.flags.rows, mirror.flags.cols]
        parts.append((mirror.flags, m_cal, True))
    rows = torch.cat([f.rows for f, _, _ in parts])
    cols = torch.cat([f.cols for f, _, _ in parts])
    pairs = {"anchor": rows + lay.row_offset, "candidate": cols,
             "distance": torch.exp(torch.cat([f.log_d for f, _, _ in parts]).double()).float(),
             "cos": lg[rows, cols] * temperature, "cos_pos": (lp * temperature)[rows],
             "calibrated": torch.cat([k for _, k, _ in parts]),
             "mirrored": torch.cat([torch.full_like(f.valid, mir) for f, _, mir in parts])}
    valid = torch.cat([f.valid for f, _, _ in parts])
    if distributed:
        pairs = {k: gather_equal(v) for k, v in pairs.items()}
        valid = gather_equal(valid)
    return ContrastiveInfo(pairs, valid, stats)


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
                    hints: Hints | None = None, check_ids: bool = True) -> tuple[Tensor, _Layout]:
    _check_embeddings(embeddings, sample_ids)
    with torch.autocast(embeddings.device.type, enabled=False):
        z = F.normalize(embeddings.float(), dim=1)
        ids = sample_ids.to(z.device)
        if distributed:
            z_all = gather_with_grad(z)
            ids_all = gather_equal(ids)
            row_offset = dist.get_rank() * z.shape[0]
        else:
            z_all, ids_all, row_offset = z, ids, 0
        logits = (z / temperature) @ z_all.T  # scale the (M, D) side, not the (M, M) product
        sup = _mean_support(None if hints is None else hints.support, z.shape[0], z.shape[1], temperature)
        support_logits = None if sup is None else (sup @ z_all.detach().T)
    m = z.shape[0]
    lay = _Layout(pos_col=_positive_columns(ids_all, row_offset, m, check_ids),
                  self_col=torch.arange(m, device=z.device) + row_offset, excluded=None,
                  row_offset=row_offset, triangle=True, row_ids=ids, col_ids=ids_all, support_logits=support_logits)
    return logits, lay


# ----------------------------------------------------------------------------------------------------------------
# Public losses

def info_nce(embeddings: Tensor, sample_ids: Tensor, temperature: float = 0.5, *,
             distributed: bool | None = None, check_ids: bool = True) -> tuple[Tensor, ContrastiveInfo]:
    """NT-Xent / InfoNCE over a batch of views; rows sharing a sample id are positives.

    Args:
        embeddings: (M, D) raw projections (normalised here).
        sample_ids: (M,) image id of each row; every id appears exactly twice.
        temperature: tau > 0.
        distributed: gather across ranks (default: when torch.distributed is initialised with > 1 rank).
        check_ids: prove every id appears twice (two host reads; the trainer, whose batches are so, skips them).
    Returns:
        The mean loss over this rank's anchors and a ContrastiveInfo with no flagged pairs.
    Raises:
        ValueError: a bad argument; the message names it.
    """
    _check_common(temperature, 0.0, "global", 1)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist, check_ids=check_ids)
    return _contrastive_core(logits, lay, temperature=temperature, rule=None, distributed=use_dist)


def _check_tau_plus(tau_plus: float) -> None:
    if not 0.0 < tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in (0, 1), got {tau_plus}")


def dcl_loss(embeddings: Tensor, sample_ids: Tensor, temperature: float = 0.5, *, tau_plus: float = 0.1,
             distributed: bool | None = None, check_ids: bool = True) -> tuple[Tensor, ContrastiveInfo]:
    """Debiased contrastive loss (Chuang et al., NeurIPS 2020) over a batch of views: InfoNCE whose negatives' sum is
    corrected for the share ``tau_plus`` of same-class images it holds (a class prior in (0, 1)); flags nothing."""
    _check_common(temperature, 0.0, "global", 1)
    _check_tau_plus(tau_plus)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist, check_ids=check_ids)
    return _contrastive_core(logits, lay, temperature=temperature, rule=None, distributed=use_dist,
                             tau_plus=tau_plus)


def false_loss(embeddings: Tensor, sample_ids: Tensor, *, temperature: float = 0.5, alpha: float = 1.0,
               threshold: float = 0.9, selection: Selection = "global", topk: int = 1, symmetric: bool = False,
               detector: Detector = "fnsd", treatment: Treatment = "fncc", similarity: float | None = None,
               hints: Hints | None = None, distributed: bool | None = None,
               check_ids: bool = True) -> tuple[Tensor, ContrastiveInfo]:
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
        check_ids: as in :func:`info_nce`.
    Returns:
        (loss, info): the mean loss over this rank's anchors and the flagged pairs with diagnostics.
    Raises:
        ValueError: a bad argument; the message names it.
    """
    rule = FnRule(detector, treatment, alpha, threshold, selection, topk, symmetric, similarity)
    rule.check(temperature)
    use_dist = use_distributed(distributed)
    logits, lay = _prepare_simclr(embeddings, sample_ids, temperature, use_dist, hints, check_ids)
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
    info.shift_candidates(-1)  # column 0 is the positive; report queue slots
    return loss, info
