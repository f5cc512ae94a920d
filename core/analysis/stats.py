"""Paired differences with honest intervals, for comparisons over seeds; Wilson intervals for proportions (flags).

Why: a mean gain of +0.3 mIoU points printed beside a seed spread of 0.5 says nothing by itself. Two methods run
with the same seeds are paired (same data order, same split, same head start), so the question is whether the
mean of the per-seed differences is away from zero: a Student-t interval over the independent units (pretraining
seeds; fine-tuning seeds of one pretraining seed are averaged first, they are not independent of it).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class PairedDifference:
    """Mean of paired differences (b - a per unit) with a t interval and a plain verdict."""

    mean: float
    low: float
    high: float
    sd: float
    n: int
    level: float = LEVEL

    @property
    def verdict(self) -> str:
        if self.n < 2 or math.isnan(self.low):
            return "no interval (one unit)"
        if self.sd == 0 and self.mean == 0:
            return "identical"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"

    @property
    def half_width(self) -> float:
        """Half the interval: a true effect of this size is told from zero by this design (these units, this spread)
        about half the time, smaller ones less often."""
        return (self.high - self.low) / 2

    def to_json(self) -> dict[str, float | int | str]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "half_width": self.half_width, "sd": self.sd,
                "n": self.n, "level": self.level, "verdict": self.verdict}


def paired_difference(a: list[float], b: list[float], level: float = LEVEL) -> PairedDifference:
    """Interval of mean(b - a) over paired units; NaN bounds for fewer than two units."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same units: {len(a)} vs {len(b)}")
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        raise ValueError("no paired units")
    mean = statistics.fmean(d)
    if n < 2:
        return PairedDifference(mean, float("nan"), float("nan"), float("nan"), n, level)
    from scipy import stats as _st  # 1.5 s of imports: here, not in every process that reads this module

    sd = statistics.stdev(d)
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return PairedDifference(mean, mean - half, mean + half, sd, n, level)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation; NaN for the sd of a single value (it has none: a printed "± 0.00" and a
    zero error bar read as a measured spread)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def wilson_interval(correct: np.ndarray, total: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of a proportion: honest for the handful of flags a short run makes per bin."""
    correct, total = np.asarray(correct, float), np.asarray(total, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = correct / total
        denom = 1 + z * z / total
        centre = (p + z * z / (2 * total)) / denom
        half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # inside [0, 1]: at 0 or n hits the float sum left -2.8e-17 ("-0.000", "-0 %") and 1.0000000000000002
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def shares_difference(p1: float, n1: int, p2: float, n2: int) -> tuple[float, float, float]:
    """p1 - p2 of two shares of n1 and n2 items (kNN accuracies of two encoders) with Newcombe's interval. Why not
    the normal approximation: it claimed 4/4 against 2/4 (+0.50 ± 0.49) and gave 3/3 against 0/3 no width at all."""
    (l1,), (u1,) = wilson_interval(np.array([p1 * n1]), np.array([n1]))
    (l2,), (u2,) = wilson_interval(np.array([p2 * n2]), np.array([n2]))
    return proportion_difference(p1, (float(l1), float(u1)), p2, (float(l2), float(u2)))


def proportion_difference(p1: float, ci1: tuple[float, float], p2: float,
                          ci2: tuple[float, float]) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's (1998, method 10) 95 % interval, built from the two Wilson intervals.

    Why: two intervals that overlap at their tips do not make two shares level (35 % [22, 50] and 65 % [50, 78]
    differ by 30 points, and their difference's interval, -48 to -8, excludes 0). It treats the samples as
    independent; the reference selectors pick in the same batches as the flags, so for them it errs on the wide side;
    an exact expectation (random, the oracle) is given as a zero-width interval, a fixed value."""
    (l1, u1), (l2, u2) = ci1, ci2
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def paired_shares_difference(a: Sequence[int], b: Sequence[int]) -> tuple[float, float, float]:
    """mean(a) - mean(b) for right (1) / wrong (0) answers of two encoders on the same items, with Newcombe's (1998)
    paired square-and-add 95 % interval: the two Wilson intervals joined through the answers' correlation (phi, with
    his continuity correction). Why: two maps of the same tiles were compared as if unpaired, far wider than their
    answers allow; the earlier interval from the disagreeing items alone ignored how many there were by chance (too
    narrow for a handful) and had none when they agreed everywhere."""
    x, y = np.asarray(a, int), np.asarray(b, int)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"paired answers need the same items: {len(x)} vs {len(y)}")
    n = len(x)
    both, only_a = int(((x == 1) & (y == 1)).sum()), int(((x == 1) & (y == 0)).sum())
    only_b, neither = int(((x == 0) & (y == 1)).sum()), int(((x == 0) & (y == 0)).sum())
    right_a, right_b = both + only_a, both + only_b
    (l1, l2), (u1, u2) = wilson_interval(np.array([right_a, right_b]), np.array([n, n]))
    p1, p2 = right_a / n, right_b / n
    margins = right_a * (n - right_a) * right_b * (n - right_b)
    cross = both * neither - only_a * only_b
    # phi of the 2x2 table; a positive one is pulled n/2 toward 0 (Newcombe's correction), none where a margin is 0
    phi = 0.0 if margins == 0 else (max(cross - n / 2, 0.0) if cross >= 0 else cross) / math.sqrt(margins)
    below = math.sqrt(max((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2), 0.0))
    above = math.sqrt(max((u1 - p1) ** 2 + (p2 - l2) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2), 0.0))
    return p1 - p2, p1 - p2 - below, p1 - p2 + above


def signed_points(share: float) -> str:
    """A difference of shares in whole points with its sign, and a plain 0 for one that rounds to none ("-0" read
    as a loss on the False negatives page)."""
    points = round(share * 100)
    return f"{points:+d}" if points else "0"


def share_relation(p: float, ci: Sequence[float], other: float, other_ci: Sequence[float], what: str) -> str:
    """'N points above/below WHAT (its share; the difference's interval)', or 'level with' only when that interval
    holds 0: the words a page prints beside two shares."""
    d, low, high = proportion_difference(p, (ci[0], ci[1]), other, (other_ci[0], other_ci[1]))
    if low > 0 or high < 0:
        side = "above" if low > 0 else "below"
        span = f"{signed_points(low)} to {signed_points(high)}"
        return f"{abs(d) * 100:.0f} points {side} {what} ({other:.0%}; difference {span})"
    return f"level with {what} ({other:.0%}; difference {signed_points(d)} points, within noise)"
