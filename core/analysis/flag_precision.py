"""How often a run's flags share their dominant class, per step bin and overall, against chance: the False negatives
page's first figure.

Why apart from ``core.analysis.fn_scoring``: the counting rules of a precision's interval are
``core.analysis.proportions``'s (a tile pair flagged at many steps is one fact, weighed by Kish's effective number of
pairs), and this is their one reader over the run's own records, before any batch is rebuilt.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .fn_scoring import NO_CLASS, base_rate, same_class
from .fn_units import tile_pair_units
from .proportions import effective_n, pair_key, share_interval

BIN_COLUMNS = ["step_start", "step_end", "step_mid", "pairs", "correct", "precision", "ci_low", "ci_high",
               "effective"]


@dataclass(frozen=True)
class PrecisionReport:
    """How often flagged pairs share their dominant class, per step bin and overall, against chance."""

    by_bin: pd.DataFrame  # BIN_COLUMNS
    pairs: int  # scored units (picks or tile pairs), once per step (distinct tiles, both labeled)
    correct: int
    base_rate: float
    n_tiles: int
    distinct: int = 0  # distinct tile pairs among them
    effective: float = 0.0  # Kish's effective number of them: the interval's sample size

    @property
    def precision(self) -> float:
        return self.correct / self.pairs if self.pairs else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return share_interval(self.precision, min(self.effective, self.pairs)) if self.pairs else \
            (float("nan"), float("nan"))

    @property
    def lift(self) -> float:
        """Precision over the base rate: above 1 means FNSD beats picking a random negative."""
        return self.precision / self.base_rate if self.base_rate > 0 else float("nan")


def _pair_counts(anchors: np.ndarray, candidates: np.ndarray) -> Counter[tuple[int, int]]:
    """How often each tile pair was counted (``proportions.pair_key``, as the selector table counts them)."""
    return Counter(pair_key(a, c) for a, c in zip(anchors.tolist(), candidates.tolist()))


def precision_over_training(pairs: pd.DataFrame, dominant: np.ndarray | None, bins: int = 10,
                            ordered: bool = True) -> PrecisionReport | None:
    """Precision of the flags per equal-width step bin, overall, and the base rate; None without labels.

    The unit is counted once per step (:func:`~core.analysis.fn_units.tile_pair_units`: the loss's rows repeat it):
    an anchor tile's pick (``ordered``), else a tile pair. Pairs of a tile with itself are left out (only a foreign
    record): the base rate is for distinct tiles. So are pairs with a tile that has no labeled pixel (no class).
    Each interval is over the effective number of distinct tile pairs in its bin.
    """
    if dominant is None:
        return None
    scored = tile_pair_units(pairs, ordered)
    same_class(scored, dominant)  # range check: the data set must be the run's
    idx = scored[["anchor_index", "candidate_index"]].to_numpy()
    scored = scored[(dominant[idx[:, 0]] != NO_CLASS) & (dominant[idx[:, 1]] != NO_CLASS)] if len(idx) else scored
    rate = base_rate(dominant)
    if scored.empty:
        return PrecisionReport(pd.DataFrame(columns=BIN_COLUMNS), 0, 0, rate, len(dominant))
    correct = same_class(scored, dominant).to_numpy()
    anchors, candidates = scored["anchor_index"].to_numpy(), scored["candidate_index"].to_numpy()
    steps = scored["step"].to_numpy()
    lo, hi = int(steps.min()), int(steps.max())
    n_bins = max(1, min(bins, hi - lo + 1))
    edges = np.linspace(lo, hi + 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, n_bins - 1)
    total = np.bincount(which, minlength=n_bins)
    hits = np.bincount(which, weights=correct.astype(float), minlength=n_bins).astype(np.int64)
    effective = np.array([effective_n(_pair_counts(anchors[which == b], candidates[which == b]).values())
                          for b in range(n_bins)])
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / total
    bounds = [share_interval(p, n) if t else (float("nan"), float("nan"))
              for p, n, t in zip(precision, effective, total)]
    start = np.ceil(edges[:-1]).astype(np.int64)
    end = np.ceil(edges[1:]).astype(np.int64) - 1
    by_bin = pd.DataFrame({"step_start": start, "step_end": end, "step_mid": (start + end) / 2, "pairs": total,
                           "correct": hits, "precision": precision, "ci_low": [b[0] for b in bounds],
                           "ci_high": [b[1] for b in bounds], "effective": effective})
    by_bin = by_bin[by_bin["pairs"] > 0].reset_index(drop=True)
    counts = _pair_counts(anchors, candidates)
    return PrecisionReport(by_bin, int(total.sum()), int(hits.sum()), rate, len(dominant), len(counts),
                           effective_n(counts.values()))
