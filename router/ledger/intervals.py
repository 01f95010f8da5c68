"""95% confidence intervals for the figures reports compare: accuracy, a mean, cost per correct answer.

- accuracy (k correct of n): Wilson's score interval, which stays inside [0, 1] and behaves with
  few graded answers or accuracies near 0 or 1, where the normal approximation does not;
- a mean (cost per request, or a paired difference): mean ± z·s/√n;
- cost per correct answer, a ratio of sums R = Σcost / Σcorrect: the delta method,
  Var(R) ≈ Var(cost − R·correct) / (n · mean(correct)²), the usual interval for a ratio estimator
  (no resampling, so the same rows always give the same interval). Its lower end is cut at 0.

Verdicts may be fractional (a score in [0, 1]); Wilson then takes their sum as k, which is the
usual approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with its 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self, digits: int = 9) -> dict[str, float]:
        """JSON-ready: value, low, high."""
        return {"value": round(self.value, digits), "low": round(self.low, digits), "high": round(self.high, digits)}


def wilson(correct: float, n: int, z: float = Z95) -> Interval | None:
    """Wilson score interval of an accuracy; None with nothing graded."""
    if n <= 0:
        return None
    p = min(max(correct / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], z: float = Z95) -> Interval | None:
    """Normal interval of a mean; None with no values (a single value has a zero-width interval)."""
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, mean, mean)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half)


def ratio_interval(costs: Sequence[float], correct: Sequence[float], z: float = Z95) -> Interval | None:
    """Cost per correct answer (Σcost / Σcorrect) with its delta-method interval; None when nothing is correct."""
    n = len(costs)
    if n != len(correct):
        raise ValueError(f"ratio_interval: {n} costs but {len(correct)} verdicts")
    total_correct = math.fsum(correct)
    if n == 0 or total_correct <= 0:
        return None
    ratio = math.fsum(costs) / total_correct
    if n == 1:
        return Interval(ratio, ratio, ratio)
    mean_correct = total_correct / n
    residuals = [c - ratio * k for c, k in zip(costs, correct, strict=True)]
    variance = math.fsum(r * r for r in residuals) / (n - 1)  # the residuals' mean is 0 by construction
    half = z * math.sqrt(variance / n) / mean_correct
    return Interval(ratio, max(0.0, ratio - half), ratio + half)
