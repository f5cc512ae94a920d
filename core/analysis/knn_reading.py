"""A pretraining run's kNN monitor read in words: its last accuracy with its interval, against the majority class
and the untrained encoder (the run's step-0 record, ``core.ssl.knn_monitor``). No torch here: the pages read it."""
from __future__ import annotations

import numpy as np

from .stats import shares_difference, wilson_interval


def knn_reading(records: list) -> str | None:
    """A run's last kNN accuracy in words, with its interval, against the majority class and the untrained encoder
    (its step-0 record); None without a kNN record. Why: a review watched a DeepGlobe run at 15-20 % under a 50 %
    majority line, with a note saying the gap between them is what the encoder learned, and no word that the gap
    was negative."""
    rows = [m for m in records if isinstance(m, dict) and isinstance(m.get("knn_acc"), (int, float))]
    if not rows:
        return None
    last, n = rows[-1], int(rows[-1].get("knn_queries") or 0)
    acc, base = float(last["knn_acc"]), last.get("knn_baseline")
    said = f"Step {last['step']}: kNN accuracy {100 * acc:.1f} %"
    low = high = acc  # no interval without the query count
    if n:
        (low,), (high,) = wilson_interval(np.array([acc * n]), np.array([n]))
        said += f" (95 % {100 * low:.1f}-{100 * high:.1f} %, {n} query tiles)"
    if isinstance(base, (int, float)) and not n:  # a record from before the query count was kept: no interval
        said += f"; the majority class scores {100 * base:.1f} %"
    elif isinstance(base, (int, float)):
        said += (f", below the majority class ({100 * base:.1f} %): the features sort these tiles worse than always "
                 "answering their most common class" if high < base else
                 f", above the majority class ({100 * base:.1f} %)" if low > base else
                 f", level with the majority class ({100 * base:.1f} %) within noise")
    start = next((m for m in rows if m.get("step") == 0), None)
    if start is not None and start is not last and n:
        diff, d_low, d_high = shares_difference(acc, n, float(start["knn_acc"]), int(start.get("knn_queries") or n))
        verdict = "within noise of" if d_low <= 0 <= d_high else "above" if diff > 0 else "below"
        said += (f"; {verdict} the untrained encoder's {100 * start['knn_acc']:.1f} % at step 0 ({100 * diff:+.1f} "
                 f"points, 95 % {100 * d_low:+.1f} to {100 * d_high:+.1f}, as if unpaired: the cautious side)")
    return said + "."
