"""Shares of picks that were right, with honest 95 % intervals: what the flag reports count and print.

Why a module of its own: the same tile pair is often flagged (or picked by a reference selector) at many steps, and
whether two tiles share a class is one fact about them, however often it is counted. The precision weighs every
pick; its interval uses Kish's effective sample size over the distinct pairs, (sum of counts)^2 / (sum of squared
counts): n for pairs seen once each, the number of pairs for pairs seen equally often, and close to 1 when one pair
makes most of the picks (a pair flagged at 30 steps beside 10 flagged once is worth 1.8 pairs, not 11). Random and
the oracle are expectations for the anchors, computed exactly: no interval of their own.
"""
from __future__ import annotations

import math

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .stats import proportion_difference, signed_points, wilson_interval

EXPECTED = ("random", "oracle")  # exact expectations for the anchors: no sampling interval of their own


def pair_key(a: int, c: int) -> tuple[int, int]:
    """A tile pair, whichever tile picked the other."""
    return (a, c) if a < c else (c, a)


def effective_n(counts: Iterable[int]) -> float:
    """Kish's effective sample size of units counted ``counts`` times each (0 for none)."""
    c = np.fromiter(counts, dtype=float)
    return float(c.sum() ** 2 / (c * c).sum()) if c.size and c.sum() else 0.0


def share_interval(value: float, n: float) -> tuple[float, float]:
    """The 95 % Wilson interval of a share ``value`` over ``n`` (possibly effective, fractional) units."""
    if not n:
        return float("nan"), float("nan")
    lo, hi = wilson_interval(np.array([value * n]), np.array([n]))
    return float(lo[0]), float(hi[0])


@dataclass(frozen=True)
class Proportion:
    """``hits`` of ``total`` picks were correct, with a 95 % Wilson interval over ``effective`` units (the picks
    themselves when None); an ``expected`` count (random, the oracle) is exact and has none (its bounds are its
    value)."""

    hits: float
    total: int
    expected: bool = False
    distinct: int | None = None  # distinct tile pairs among the picks
    effective: float | None = None  # Kish's effective number of them: the interval's sample size

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        if not self.total:
            return float("nan"), float("nan")
        if self.expected:
            return self.value, self.value
        n = self.effective if self.effective is not None and self.effective < self.total else self.total
        return share_interval(self.value, n)

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.ci
        out = {"precision": _num(self.value), "ci": [_num(lo), _num(hi)], "pairs": self.total,
               "hits": round(float(self.hits), 4)}
        if self.distinct is not None:
            out |= {"distinct": self.distinct, "effective": round(float(self.effective or 0.0), 2)}
        return out

    def text(self) -> str:
        if not self.total:
            return "n/a (no pairs)"
        lo, hi = self.ci
        if self.expected:
            return f"{self.value:.3f} (expected) of {self.total}"
        return f"{self.value:.3f} [{lo:.3f}, {hi:.3f}] of {self.total}{repeat_words(self.to_json())}"


def repeat_words(entry: dict[str, Any]) -> str:
    """" (10 distinct tile pairs, effective n 1.8)" where picks repeat a pair; "" otherwise (a review read "worth
    1.8" as unexplained: it is the sample size the interval stands on)."""
    distinct, total = entry.get("distinct"), entry.get("pairs")
    if distinct is None or not total or distinct >= total:
        return ""
    worth = entry.get("effective")
    return f" ({distinct} distinct tile pairs" + (f", effective n {worth:.1f}" if worth is not None else "") + ")"


def _num(x: float) -> float | None:
    # NaN -> null in JSON; 6 decimals: a bound stored at 4 and printed at 3 rounded twice (0.26348 -> 0.2635 -> 0.264,
    # where the page, from the counts, said 0.263)
    return None if x != x else round(float(x), 6)


def entry_ci(name: str, entry: dict[str, Any]) -> tuple[float, float]:
    """A report entry's 95 % interval; an expected selector's is its value (reports scored before this rule kept
    Wilson bounds for it)."""
    if name in EXPECTED:
        return entry["precision"], entry["precision"]
    lo, hi = entry["ci"]
    return lo, hi


def entry_text(name: str, entry: dict[str, Any] | None, gap: str = " ") -> str:
    """"0.420 [0.310, 0.540] n=40"; an expected selector's "0.450 (expected) n=40"; "n/a" without picks."""
    if not entry or not entry.get("pairs"):
        return "n/a"
    if name in EXPECTED:
        return f"{entry['precision']:.3f}{gap}(expected){gap}n={entry['pairs']}"
    lo, hi = entry_ci(name, entry)
    return f"{entry['precision']:.3f}{gap}[{lo:.3f}, {hi:.3f}]{gap}n={entry['pairs']}{repeat_words(entry)}"


def recall_text(report: dict[str, Any]) -> str:
    """A run's recall as a percentage with three significant digits ("0.123 %"), or "n/a": it is often a tenth of a
    percent, which four decimals of a fraction ("0.0012") hid behind the leading zeros."""
    recall = report.get("recall")
    if recall is None:
        return "n/a"
    pct = recall * 100
    if pct == 0 or pct >= 100:
        return f"{pct:.0f} %"
    decimals = min(8, max(0, 2 - math.floor(math.log10(pct))))  # fixed digits: "3e-05 %" read as no number
    return f"{pct:.{decimals}f}".rstrip("0").rstrip(".") + " %"


class Tally:
    """Hits and totals of one selector, overall and for cross-scene pairs, with how often each tile pair came."""

    def __init__(self, expected: bool = False) -> None:
        self.hits = self.total = 0.0
        self.x_hits = self.x_total = 0.0
        self.expected = expected
        self.pairs: Counter[tuple[int, int]] = Counter()  # picks per tile pair (sampled tallies), overall and cross
        self.x_pairs: Counter[tuple[int, int]] = Counter()

    def add(self, hits: float, total: float, x_hits: float = 0.0, x_total: float = 0.0) -> None:
        self.hits += hits
        self.total += total
        self.x_hits += x_hits
        self.x_total += x_total

    def add_pick(self, a: int, c: int, hit: float, part: str = "both", cross: bool = False) -> None:
        """One pick of tile ``c`` for tile ``a``, counted overall, across scenes, or both (cross only if ``cross``)."""
        key = pair_key(a, c)
        if part in ("both", "overall"):
            self.add(hit, 1.0)
            self.pairs[key] += 1
        if part == "cross" or part == "both" and cross:
            self.add(0.0, 0.0, hit, 1.0)
            self.x_pairs[key] += 1

    def _of(self, hits: float, total: float, pairs: Counter) -> Proportion:
        if self.expected:
            return Proportion(hits, int(round(total)), True)
        return Proportion(hits, int(round(total)), False, len(pairs), effective_n(pairs.values()))

    def overall(self) -> Proportion:
        return self._of(self.hits, self.total, self.pairs)

    def cross(self) -> Proportion:
        return self._of(self.x_hits, self.x_total, self.x_pairs)


def margin(report: dict[str, Any], selector: str) -> tuple[float, float, float] | None:
    """The flags' precision less a reference selector's (both on the run's own batches) with the 95 % interval of
    that difference (random's exact expectation taken as a fixed value), or None."""
    mine, other = report["selectors"].get("flags"), report["selectors"].get(selector)
    if not mine or not other or not mine.get("pairs") or not other.get("pairs"):
        return None
    return proportion_difference(float(mine["precision"]), entry_ci("flags", mine), float(other["precision"]),
                                 entry_ci(selector, other))


def margin_text(span: tuple[float, float, float]) -> str:
    """A table cell: "+12 points (difference +2 to +22: flags better)", "within noise" said when the interval holds
    0 (a walkthrough saw a -20 to -3 margin carry no word beside cells that said theirs)."""
    d, low, high = span
    noise = ": within noise" if low <= 0 <= high else ": flags better" if low > 0 else ": flags worse"
    return f"{signed_points(d)} points (difference {signed_points(low)} to {signed_points(high)}{noise})"


REFERENCES = ("random", "colour", "encoder")  # the selectors a run's flags are read against, in that order


def margins(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The flags' precision less each reference selector's on the same batches, with the 95 % interval of the
    difference (fractions; ``within_noise`` when it holds 0): a single run's report said both precisions and left
    the reader to guess whether they differ (a review)."""
    out = {}
    for name in REFERENCES:
        if (span := margin(report, name)) is not None:
            d, low, high = span
            out[name] = {"difference": d, "low": low, "high": high, "within_noise": low <= 0 <= high}
    return out
