"""The live run view's pure helpers (workbench.monitor)."""
from __future__ import annotations

from workbench.monitor import percent_ticks


def test_percent_ticks_get_the_decimals_their_spread_needs() -> None:
    assert percent_ticks([0.1, 0.4, 0.7]) == ".0%"  # tens of points apart: whole percents
    assert percent_ticks([0.50, 0.52]) == ".1%"
    assert percent_ticks([0.0887, 0.0889]) == ".3%"  # not "9%" on every tick
    assert percent_ticks([0.3]) == percent_ticks([0.3, 0.3]) == percent_ticks([]) == ".0%"
    assert percent_ticks([0.0, 1e-9]) == ".3%"  # at most three decimals
