"""95% intervals: known values, and coverage on simulated data (a seeded simulation, so it cannot flake)."""

from __future__ import annotations

import random

import pytest

from router.ledger.intervals import mean_interval, ratio_interval, wilson


def test_wilson_known_values_and_edges() -> None:
    interval = wilson(8, 10)
    assert interval is not None
    assert (interval.value, round(interval.low, 4), round(interval.high, 4)) == (0.8, 0.4902, 0.9433)
    zero = wilson(0, 20)
    assert zero is not None and zero.low == 0.0 and 0.0 < zero.high < 0.2  # never a zero-width interval at 0
    assert wilson(0, 0) is None


def test_mean_and_ratio_degenerate_cases() -> None:
    assert mean_interval([]) is None
    one = mean_interval([2.0])
    assert one is not None and (one.low, one.value, one.high) == (2.0, 2.0, 2.0)
    assert ratio_interval([1.0, 2.0], [0.0, 0.0]) is None  # nothing correct: no cost per correct answer
    with pytest.raises(ValueError, match="2 costs but 1 verdicts"):
        ratio_interval([1.0, 2.0], [1.0])
    exact = ratio_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert exact is not None and (exact.low, exact.value, exact.high) == (2.0, 2.0, 2.0)


def test_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials, n, p = 400, 200, 0.7
    mean_cost = {"weak": 1.0, "strong": 3.0}
    covered = {"wilson": 0, "mean": 0, "ratio": 0}
    for _ in range(trials):
        tiers = [rng.choice(("weak", "strong")) for _ in range(n)]
        costs = [rng.expovariate(1 / mean_cost[t]) for t in tiers]
        correct = [float(rng.random() < p) for _ in range(n)]
        acc, cost, ratio = wilson(sum(correct), n), mean_interval(costs), ratio_interval(costs, correct)
        assert acc is not None and cost is not None and ratio is not None
        covered["wilson"] += acc.low <= p <= acc.high
        covered["mean"] += cost.low <= 2.0 <= cost.high
        covered["ratio"] += ratio.low <= 2.0 / p <= ratio.high  # E[cost] / E[correct]
    for name, hits in covered.items():
        assert 0.91 <= hits / trials <= 0.99, (name, hits / trials)
