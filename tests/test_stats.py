"""The interval code: Wilson intervals of proportions, paired t intervals and their verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.analysis.fn_quality import Proportion
from core.analysis.stats import proportion_difference, share_relation, wilson_interval
from core.analysis.stats import mean_sd, paired_difference


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = wilson_interval(np.array([8]), np.array([10]))
    assert (lo[0], hi[0]) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Newcombe (1998), 8 of 10
    lo, hi = wilson_interval(np.array([0]), np.array([20]))
    assert lo[0] == pytest.approx(0.0, abs=1e-12) and hi[0] == pytest.approx(0.1611, abs=1e-4)
    p = Proportion(8, 10)
    assert p.value == 0.8 and p.ci == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert math.isnan(Proportion(0, 0).value) and Proportion(0, 0).to_json()["precision"] is None


def _ci(k: int, n: int) -> tuple[float, float]:
    lo, hi = wilson_interval(np.array([k]), np.array([n]))
    return float(lo[0]), float(hi[0])


def test_the_difference_of_two_shares_has_newcombes_interval() -> None:
    d, lo, hi = proportion_difference(56 / 70, _ci(56, 70), 48 / 80, _ci(48, 80))  # Newcombe (1998), method 10
    assert (d, lo, hi) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    assert proportion_difference(0.3, _ci(3, 10), 0.9, _ci(9, 10))[1:] == pytest.approx((-0.8090, -0.1705), abs=1e-4)


def test_shares_whose_intervals_touch_are_not_called_level() -> None:
    """The False negatives page once read 35 % [22, 50] 'level with' 65 % [50, 78] because the intervals touched."""
    text = share_relation(14 / 40, _ci(14, 40), 26 / 40, _ci(26, 40), "the colour selector")
    assert text.startswith("30 points below the colour selector (65%") and "level" not in text
    assert share_relation(26 / 40, _ci(26, 40), 14 / 40, _ci(14, 40), "x").startswith("30 points above x")
    level = share_relation(14 / 40, _ci(14, 40), 17 / 40, _ci(17, 40), "a random negative")
    assert level.startswith("level with a random negative (42%") and "within noise" in level
    same = share_relation(100 / 280, _ci(100, 280), 101 / 280, _ci(101, 280), "a random negative")  # -0.4 points
    assert "difference 0 points, within noise" in same and "-0" not in same  # a review read "-0" as a loss


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
    mean, sd = mean_sd([5.0])
    assert mean == 5.0 and math.isnan(sd)  # one value has no spread to print as "± 0.00"


def test_a_paired_difference_of_shares_is_newcombes_square_and_add_interval() -> None:
    """Newcombe (1998), method 10, on the table of Fagerland, Lydersen and Laake's "Statistical analysis of
    contingency tables" (2017), chapter 8 (Cavo et al. 2012: 59 both, 6 and 16 one only, 80 neither): -0.0621
    (-0.1186 to -0.0046). The earlier interval, from the disagreeing items alone, had none for identical answers."""
    from core.analysis.stats import paired_shares_difference

    a = [1] * 59 + [1] * 6 + [0] * 16 + [0] * 80
    b = [1] * 59 + [0] * 6 + [1] * 16 + [0] * 80
    assert paired_shares_difference(a, b) == pytest.approx((-0.0621, -0.1186, -0.0046), abs=5e-5)
    d, low, high = paired_shares_difference(b, a)  # the other way round: the same interval, mirrored
    assert (d, low, high) == pytest.approx((0.0621, 0.0046, 0.1186), abs=5e-5)
    # 8 against 2 disagreements of 100 (McNemar's exact p = 0.11): within noise
    a, b = [1] * 60 + [1] * 8 + [0] * 2 + [0] * 30, [1] * 60 + [0] * 8 + [1] * 2 + [0] * 30
    d, low, high = paired_shares_difference(a, b)
    assert d == pytest.approx(0.06) and low < 0 < high
    # identical answers: a difference of 0 with an interval that is wide for 3 items and narrow for 300
    _, low3, high3 = paired_shares_difference([1, 0, 1], [1, 0, 1])
    _, low300, high300 = paired_shares_difference([1, 0, 1] * 100, [1, 0, 1] * 100)
    assert low3 < low300 < 0 < high300 < high3 and high3 - low3 > 0.5 and high300 - low300 < 0.05
    with pytest.raises(ValueError):
        paired_shares_difference([1], [1, 0])
