"""The kNN monitor read in words: its interval, the majority class and the untrained encoder, each a verdict only
where the interval allows one."""
from __future__ import annotations

from core.analysis.knn_reading import knn_reading


def _rows(start: float, last: float, base: float, n: int | None = 200) -> list[dict]:
    extra = {"knn_queries": n} if n else {}
    return [{"step": 0, "knn_acc": start, "knn_baseline": base, **extra}, {"step": 40, "loss": 3.1},
            {"step": 80, "knn_acc": last, "knn_baseline": base, **extra}]


def test_below_the_majority_and_within_noise_of_the_untrained_encoder_are_said() -> None:
    said = knn_reading(_rows(0.16, 0.20, 0.5))  # the review's DeepGlobe run: 15-20 % under a 50 % line
    assert said.startswith("Step 80: kNN accuracy 20.0 % (95 % 15.0-26.1 %, 200 query tiles), below the majority "
                           "class (50.0 %)")
    assert "within noise of the untrained encoder's 16.0 % at step 0 (+4.0 points, 95 % -3.6 to +11.5" in said


def test_above_both_is_said_only_where_the_intervals_clear_them() -> None:
    said = knn_reading(_rows(0.40, 0.62, 0.30, 256))
    assert ", above the majority class (30.0 %); above the untrained encoder's 40.0 %" in said
    assert "level with the majority class (50.0 %) within noise" in knn_reading(_rows(0.5, 0.52, 0.5))


def test_without_a_query_count_no_verdict_and_without_records_nothing() -> None:
    said = knn_reading(_rows(0.30, 0.31, 0.30, None))
    assert said == "Step 80: kNN accuracy 31.0 %; the majority class scores 30.0 %."  # no "above" from 1 point
    assert knn_reading([{"step": 3, "loss": 2.0}]) is None and knn_reading([]) is None
