"""Flagged pairs held at a fixed size, and what the treatments do with them, so a training step never waits on the
host to learn how many pairs there are (issue 28).

Two forms, by detector:

- a **padded list** where the detector's count has a bound (FNSD per anchor, nearest and support top-k): ``m * k``
  slots, ``valid`` marking the real ones. Treatments run over the list in its order, so their sums are today's bit
  for bit (an invalid slot adds exactly 0, or -inf to a maximum);
- a **dense (m, C) mask** where it has none (FNSD's global minimum with its ties, a similarity threshold, the oracle).
  Treatments run on the mask; the list, for the records only, is ``nonzero_static`` of it up to ``cap`` slots
  (``count`` keeps the true number).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

LogDistance = Callable[[Tensor, Tensor], Tensor]  # (rows, cols) -> log D of those pairs


@dataclass
class Flags:
    rows: Tensor                 # (K,) long; an invalid slot holds row 0
    cols: Tensor                 # (K,) long; an invalid slot holds column 0
    valid: Tensor                # (K,) bool
    log_d: Tensor                # (K,) log D of each slot (meaningless where invalid)
    count: Tensor                # () how many pairs are flagged (may exceed the list's slots in the dense form)
    dense: Tensor | None = None  # (m, C) bool: every flag, for the detectors without a bound

    @classmethod
    def from_list(cls, rows: Tensor, cols: Tensor, valid: Tensor, log_d: LogDistance) -> "Flags":
        rows, cols = torch.where(valid, rows, 0), torch.where(valid, cols, 0)
        return cls(rows, cols, valid, log_d(rows, cols), valid.sum())

    @classmethod
    def from_mask(cls, mask: Tensor, cap: int, log_d: LogDistance) -> "Flags":
        rows, cols, valid = padded_pairs(mask, cap)
        return cls(rows, cols, valid, log_d(rows, cols), mask.sum(), dense=mask)

    def treated(self, opens: Tensor) -> Tensor:
        """Which flags the treatment applies to: those of rows whose gate ``opens`` (list slots or the mask)."""
        if self.dense is not None:
            return self.dense & opens[:, None]
        return self.valid & opens[self.rows]


def padded_pairs(mask: Tensor, cap: int) -> tuple[Tensor, Tensor, Tensor]:
    """The True entries of a (m, C) mask in row-major order, as ``cap`` slots: (rows, cols, valid)."""
    cap = max(1, cap)
    found = torch.nonzero_static(mask, size=cap, fill_value=0)
    valid = torch.arange(cap, device=mask.device) < mask.sum()
    return found[:, 0], found[:, 1], valid


def record_capacity(m: int, c: int) -> int:
    """List slots for the records of a dense mask: FNSD's global minimum flags one pair of a batch bar exact ties,
    so 4 m is far more than a real batch flags; the similarity and oracle detectors get every entry."""
    return min(m * c, max(4 * m, 64))


# ----------------------------------------------------------------------------------------------------------------
# Treatments: each takes the treated flags (``cal``) in the form of ``flags``

def fncc_numerator(logits: Tensor, pos_logit: Tensor, flags: Flags, cal: Tensor, alpha: float) -> Tensor:
    """log( exp(l_pos) + alpha * sum over treated flags exp(l_rc) ) per row, stable, differentiable."""
    if alpha == 0.0:
        return pos_logit
    ninf = torch.full((), -math.inf, device=logits.device, dtype=logits.dtype)
    if flags.dense is None:
        rows = flags.rows
        cand = logits[rows, flags.cols]
        row_max = pos_logit.detach().clone().scatter_reduce(0, rows, torch.where(cal, cand.detach(), ninf),
                                                            reduce="amax")
        shift = row_max[rows]
        # exp of the untreated slots is exp(0): no overflow whose zero gradient would turn into NaN
        term = alpha * torch.exp(torch.where(cal, cand, shift) - shift)
        terms = torch.zeros_like(pos_logit).index_add(0, rows, torch.where(cal, term, 0.0))
    else:
        row_max = torch.maximum(pos_logit.detach(), logits.detach().masked_fill(~cal, -math.inf).amax(dim=1))
        shift = row_max[:, None]
        term = alpha * torch.exp(torch.where(cal, logits, shift) - shift)
        terms = torch.where(cal, term, 0.0).sum(dim=1)
    return row_max + torch.log(torch.exp(pos_logit - row_max) + terms)


def attract_numerator(logits: Tensor, pos_logit: Tensor, flags: Flags, cal: Tensor) -> Tensor:
    """The mean log-probability numerator over the positive and the treated flags (FNC, SupCon style)."""
    if flags.dense is None:
        rows = flags.rows
        n_pos = torch.ones_like(pos_logit).index_add(0, rows, cal.to(pos_logit.dtype))
        return pos_logit.index_add(0, rows, torch.where(cal, logits[rows, flags.cols], 0.0)) / n_pos
    n_pos = 1.0 + cal.sum(dim=1).to(pos_logit.dtype)
    return (pos_logit + torch.where(cal, logits, 0.0).sum(dim=1)) / n_pos


def eliminated(dropped: Tensor, flags: Flags, cal: Tensor) -> Tensor:
    """The logits with the treated flags out of the denominator (-inf)."""
    if flags.dense is not None:
        return dropped.masked_fill(cal, -math.inf)
    m, c = dropped.shape
    mask = torch.zeros(m, c + 1, dtype=torch.bool, device=dropped.device)  # column c: where untreated slots go
    mask.index_put_((flags.rows, torch.where(cal, flags.cols, c)), torch.ones_like(cal))
    return dropped.masked_fill(mask[:, :c], -math.inf)


# ----------------------------------------------------------------------------------------------------------------
# symmetric=True: a treated (a, m) whose m is one of my rows adds (m, a) to row m

@dataclass
class Mirrors:
    flags: Flags
    cal: Tensor  # the mirrors' treated part, in the form of ``flags``


def mirrors(flags: Flags, cal: Tensor, opens: Tensor, row_offset: int, m: int, c: int,
            gather: Callable[[Tensor], Tensor] | None, log_d: LogDistance) -> Mirrors:
    """The mirror pairs of the treated flags of every rank that fall in my rows, gated by their row's ``opens``; a
    mirror that row m flagged by itself already is not added again (its weight *becomes* alpha once)."""
    if flags.dense is not None:
        every = gather(cal) if gather is not None else cal           # (rows of every rank, C)
        mask = every[:, row_offset:row_offset + m].T & ~flags.dense   # mirror[r, a] = treated (a, offset + r)
        rows, cols, valid = padded_pairs(mask.T, record_capacity(m, c))  # the records keep today's (a, m) order
        rows, cols = cols, rows
        out = Flags(rows, cols, valid, log_d(rows, cols), mask.sum(), dense=mask)
        return Mirrors(out, out.treated(opens))
    g_rows = torch.where(cal, flags.rows + row_offset, -1)
    g_cols = torch.where(cal, flags.cols, -1)
    if gather is not None:
        g_rows, g_cols = gather(g_rows), gather(g_cols)
    mine = (g_cols >= row_offset) & (g_cols < row_offset + m)
    m_rows, m_cols = torch.where(mine, g_cols - row_offset, 0), torch.where(mine, g_rows, 0)
    own = torch.where(flags.valid, flags.rows * c + flags.cols, -1)
    # a broadcast compare, not torch.isin: its sorting path can read sizes back on a GPU
    valid = mine & ~((m_rows * c + m_cols)[:, None] == own[None, :]).any(dim=1)
    out = Flags.from_list(m_rows, m_cols, valid, log_d)
    return Mirrors(out, out.treated(opens))


__all__ = ["Flags", "padded_pairs", "record_capacity", "fncc_numerator", "attract_numerator", "eliminated",
           "Mirrors", "mirrors"]
