"""Classifier and routing metrics: AUC, calibration error, and RouteLLM's APGR and CPT.

Routing metrics follow RouteLLM: sort queries by the score (higher = more need of the strong
model), send the top share f to strong and the rest to weak, for f = 0, 0.01, ..., 1.
PGR(f) = (accuracy(f) - acc_weak) / (acc_strong - acc_weak); APGR is the area under PGR(f);
CPT(x) is the smallest f with PGR(f) >= x. Tied scores are treated as a random order
(their expected accuracy), so a coarse scorer is not flattered or punished by sort order.

Two rankings are reported: by the routing score (the predicted gain of escalating,
P(strong correct) - P(weak correct)), which is what the router uses, and by difficulty
(P(weak wrong)) alone, the `*_difficulty` fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

FRACTIONS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class RoutingMetrics:
    """One evaluation's numbers; NaN where a metric is undefined (e.g. one class only)."""

    n: int
    weak_accuracy: float
    strong_accuracy: float
    auc: float
    ece: float
    apgr: float
    cpt50: float
    cpt80: float
    apgr_difficulty: float
    cpt50_difficulty: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON output."""
        return asdict(self)


def routed_accuracy(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Expected accuracy when the top `f` share by score goes to strong, for each f."""
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    gain = (strong - weak)[order]
    sorted_scores = scores[order]
    # Replace each gain by its tie-group mean: the expectation under random tie-breaking.
    _, group_start, group_size = np.unique(-sorted_scores, return_index=True, return_counts=True)
    group_mean = np.add.reduceat(gain, group_start) / group_size
    smoothed = np.repeat(group_mean, group_size)
    cumulative = np.concatenate([[0.0], np.cumsum(smoothed)])
    taken = np.floor(fractions * n + 1e-9).astype(int)
    return np.asarray((weak.sum() + cumulative[taken]) / n, dtype=float)


def pgr_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """PGR at each of the 101 fractions; NaN when strong and weak are equally accurate."""
    weak_acc, strong_acc = weak.mean(), strong.mean()
    if np.isclose(strong_acc, weak_acc):
        return np.full(len(FRACTIONS), np.nan)
    gap = float(strong_acc - weak_acc)
    return (routed_accuracy(scores, weak, strong, FRACTIONS) - float(weak_acc)) / gap


def apgr(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    """Average performance gap recovered: area under PGR over the strong share f in [0, 1]."""
    curve = pgr_curve(scores, weak, strong)
    return float(np.trapezoid(curve, FRACTIONS))


def cpt(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, target: float) -> float:
    """Call-performance threshold: the smallest strong share whose PGR reaches `target`."""
    curve = pgr_curve(scores, weak, strong)
    reached = np.nonzero(curve >= target - 1e-12)[0]
    return float(FRACTIONS[reached[0]]) if len(reached) else float("nan")


def expected_calibration_error(predicted: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(predicted, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(predicted[mask].mean() - outcome[mask].mean())
    return float(error)


def safe_auc(outcome: np.ndarray, predicted: np.ndarray) -> float:
    """ROC AUC of `predicted` for the binary `outcome`; NaN when only one class is present."""
    binary = outcome >= 0.5
    if binary.all() or not binary.any():
        return float("nan")
    return float(roc_auc_score(binary, predicted))


def routing_metrics(
    difficulty: np.ndarray, weak: np.ndarray, strong: np.ndarray, routing_score: np.ndarray | None = None
) -> RoutingMetrics:
    """All metrics for one set: `difficulty` = predicted P(weak fails); APGR/CPT rank by `routing_score` (default: difficulty)."""
    difficulty = np.asarray(difficulty, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    score = difficulty if routing_score is None else np.asarray(routing_score, dtype=float)
    weak_fails = 1.0 - weak
    return RoutingMetrics(
        n=len(difficulty),
        weak_accuracy=float(weak.mean()),
        strong_accuracy=float(strong.mean()),
        auc=safe_auc(weak_fails, difficulty),
        ece=expected_calibration_error(difficulty, weak_fails),
        apgr=apgr(score, weak, strong),
        cpt50=cpt(score, weak, strong, 0.5),
        cpt80=cpt(score, weak, strong, 0.8),
        apgr_difficulty=apgr(difficulty, weak, strong),
        cpt50_difficulty=cpt(difficulty, weak, strong, 0.5),
    )
