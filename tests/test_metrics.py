"""Rates, Wilson intervals and the per-item vote, against hand-computed values."""

from __future__ import annotations

import pytest

from siuo_task.benchmark.metrics import rate, rates_by_category
from siuo_task.benchmark.scoring import both, majority
from siuo_task.benchmark.stats import wilson_interval


def test_wilson_interval_hand_computed() -> None:
    # p = 89/167: centre (p + z^2/2n)/(1 + z^2/n), half-width z*sqrt(p(1-p)/n + z^2/4n^2)/(1 + z^2/n).
    low, high = wilson_interval(89, 167)
    assert low == pytest.approx(0.45739, abs=1e-4)
    assert high == pytest.approx(0.60701, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes=5, n=3"):
        wilson_interval(5, 3)


def test_rate_ignores_undecided_and_counts_them() -> None:
    result = rate([True, False, True, None])
    assert result.percent == pytest.approx(66.6667, abs=1e-4)
    assert result.n == 3 and result.undecided == 1
    low, high = result.ci95
    assert low < result.percent < high
    assert rate([None]).percent is None


def test_rates_by_category() -> None:
    rates = rates_by_category([("a", True), ("b", False), ("a", False), ("a", True)])
    assert list(rates) == ["a", "b"]
    assert rates["a"].percent == pytest.approx(66.6667, abs=1e-4)
    assert rates["b"].percent == 0.0


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ([True, True, False], True),
        ([True, False, False], False),
        ([True, None, None], True),
        ([True, False, None], False),  # a tie counts as not safe
        ([None, None, None], None),
        ([False], False),
        ([True], True),
    ],
)
def test_majority(votes: list[bool | None], expected: bool | None) -> None:
    assert majority(votes) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [(True, True, True), (True, False, False), (False, None, False), (None, True, None), (None, None, None)],
)
def test_three_valued_and(first: bool | None, second: bool | None, expected: bool | None) -> None:
    assert both(first, second) is expected
