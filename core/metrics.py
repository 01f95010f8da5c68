"""The figures several layers compute: ratios that reports print, calibration error, and RouteLLM's
routing curve (APGR, CPT). Classifier evaluation, policy simulation, `router eval` and
`router report` all take them from here, so a definition changes in one place.

Undefined is None. A figure with nothing to measure (accuracy with nothing graded, cost per
correct answer with no correct answer, calibration error of no predictions, APGR when the two
tiers are equally accurate) is None: it prints as "-" and is `null` in JSON. It is never 0,
which reads as a real figure, nor infinity or NaN, which are not JSON and poison sums.

Routing metrics follow RouteLLM: sort queries by the score (higher = more need of the strong
model), send the top share f to strong and the rest to weak, for f = 0, 0.01, ..., 1.
PGR(f) = (accuracy(f) - acc_weak) / (acc_strong - acc_weak); APGR is the area under PGR(f);
CPT(x) is the smallest f with PGR(f) >= x. Tied scores are treated as a random order (their
expected accuracy), so a coarse scorer is not flattered or punished by sort order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FRACTIONS = np.linspace(0.0, 1.0, 101)
CALIBRATION_BINS = 10

__all__ = [
    "CALIBRATION_BINS",
    "FRACTIONS",
    "CalibrationBin",
    "accuracy",
    "apgr",
    "calibration_bins",
    "calibration_error",
    "cost_per_correct",
    "cpt",
    "expected_calibration_error",
    "pgr_curve",
    "ratio",
    "routed_accuracy",
]


def ratio(part: float, whole: float) -> float | None:
    """`part / whole`, or None when `whole` is not positive (a mean of nothing is undefined)."""
    return part / whole if whole > 0 else None


def accuracy(correct: float, graded: float) -> float | None:
    """Correct answers among graded ones (a verdict may be a fraction); None when nothing is graded."""
    return ratio(correct, graded)


def cost_per_correct(cost_usd: float, correct: float) -> float | None:
    """What one right answer cost: the spend on the graded answers / the correct among them.

    None when no answer was correct. The figure is then undefined, not infinite: None is what a
    table shows as "-" and JSON as null, and it cannot be mistaken for a price or added into a total.
    """
    return ratio(cost_usd, correct)


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """One bin of a reliability diagram: [lo, hi) of the prediction, its count and two means."""

    lo: float
    hi: float
    n: int
    predicted: float  # mean prediction in the bin
    observed: float  # mean outcome in the bin

    def as_dict(self, digits: int = 6) -> dict[str, float | int]:
        """JSON-ready bin, means rounded."""
        return {"lo": self.lo, "hi": self.hi, "n": self.n,
                "predicted": round(self.predicted, digits), "observed": round(self.observed, digits)}


def calibration_bins(predicted: ArrayLike, outcome: ArrayLike, bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
    """Predicted probability against the observed rate in equal-width bins (empty bins left out).

    Predictions are clipped to [0, 1]; a prediction of exactly 1 falls in the last bin.
    """
    p = np.clip(np.asarray(predicted, dtype=float), 0.0, 1.0)
    y = np.asarray(outcome, dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"calibration needs one outcome per prediction; got {p.shape} and {y.shape}")
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    predicted_sums = np.bincount(which, weights=p, minlength=bins)
    observed_sums = np.bincount(which, weights=y, minlength=bins)
    return [
        CalibrationBin(b / bins, (b + 1) / bins, int(counts[b]), predicted_sums[b] / counts[b], observed_sums[b] / counts[b])
        for b in range(bins)
        if counts[b]
    ]


def calibration_error(table: Sequence[CalibrationBin]) -> float | None:
    """ECE of a reliability table: mean |predicted - observed| over bins, weighted by size; None if empty."""
    total = sum(b.n for b in table)
    return ratio(sum(b.n * abs(b.predicted - b.observed) for b in table), total)


def expected_calibration_error(predicted: ArrayLike, outcome: ArrayLike, bins: int = CALIBRATION_BINS) -> float | None:
    """ECE of predictions against outcomes in equal-width bins; None when there are no predictions."""
    return calibration_error(calibration_bins(predicted, outcome, bins))


def routed_accuracy(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike, fractions: ArrayLike) -> NDArray[np.float64]:
    """Expected accuracy when the top `f` share by score goes to strong, for each f."""
    scores, weak, strong = (np.asarray(a, dtype=float) for a in (scores, weak, strong))
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    gain = (strong - weak)[order]
    # Replace each gain by its tie-group mean: the expectation under random tie-breaking.
    _, group_start, group_size = np.unique(-scores[order], return_index=True, return_counts=True)
    smoothed = np.repeat(np.add.reduceat(gain, group_start) / group_size, group_size)
    cumulative = np.concatenate([[0.0], np.cumsum(smoothed)])
    taken = np.floor(np.asarray(fractions, dtype=float) * n + 1e-9).astype(int)
    return np.asarray((weak.sum() + cumulative[taken]) / n, dtype=float)


def pgr_curve(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> NDArray[np.float64] | None:
    """PGR at each of the 101 fractions; None when there is no gap to recover (equal accuracy, or no rows)."""
    weak, strong = np.asarray(weak, dtype=float), np.asarray(strong, dtype=float)
    if len(weak) == 0 or np.isclose(strong.mean(), weak.mean()):
        return None
    weak_accuracy = float(weak.mean())
    gap = float(strong.mean()) - weak_accuracy
    return (routed_accuracy(scores, weak, strong, FRACTIONS) - weak_accuracy) / gap


def apgr(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> float | None:
    """Average performance gap recovered: area under PGR over the strong share f in [0, 1]."""
    curve = pgr_curve(scores, weak, strong)
    return None if curve is None else float(np.trapezoid(curve, FRACTIONS))


def cpt(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike, target: float) -> float | None:
    """Call-performance threshold: the smallest strong share whose PGR reaches `target` (None if none does)."""
    curve = pgr_curve(scores, weak, strong)
    if curve is None:
        return None
    reached = np.nonzero(curve >= target - 1e-12)[0]
    return float(FRACTIONS[reached[0]]) if len(reached) else None
