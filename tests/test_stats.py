"""The interval code: Wilson intervals of proportions, paired t intervals and their verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.fn_quality import Proportion
from core.analysis.stats import wilson_interval
from core.analysis.stats import mean_sd, paired_difference


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson_interval(np.array([8]), np.array([10]))
    assert (lo[0], hi[0]) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Newcombe (1998), 8 of 10
    lo, hi = wilson_interval(np.array([0]), np.array([20]))
    assert lo[0] == pytest.approx(0.0, abs=1e-12) and hi[0] == pytest.approx(0.1611, abs=1e-4)
    p = Proportion(8, 10)
    assert p.value == 0.8 and p.ci == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert math.isnan(Proportion(0, 0).value) and Proportion(0, 0).to_json()["precision"] is None


def test_paired_difference_uses_the_t_distribution() -> None:
    d = paired_difference([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # differences 1, 2, 3
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd = 1
    assert (d.mean, d.sd, d.n) == (2.0, 1.0, 3)
    assert (d.low, d.high) == pytest.approx((2 - half, 2 + half))
    assert d.verdict == "within noise"


@pytest.mark.parametrize("a, b, verdict", [
    ([0.40, 0.42, 0.41], [0.45, 0.46, 0.455], "better"),
    ([0.40, 0.42, 0.41], [0.35, 0.37, 0.36], "worse"),
    ([0.40, 0.42, 0.41], [0.41, 0.41, 0.41], "within noise"),
    ([0.40], [0.45], "no interval (one unit)"),
])
def test_verdicts(a: list[float], b: list[float], verdict: str) -> None:
    d = paired_difference(a, b)
    assert d.verdict == verdict
    assert d.to_json()["verdict"] == verdict


def test_bad_pairs_and_mean_sd() -> None:
    with pytest.raises(ValueError, match="same units"):
        paired_difference([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no paired units"):
        paired_difference([], [])
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_sd([5.0]) == (5.0, 0.0)
