"""A classifier's evaluation on labelled outcomes: AUC, calibration and the routing curve, as one record.

The metrics themselves are core.metrics'; this module picks what a difficulty classifier is
judged by. Two rankings are reported: by the routing score (the predicted gain of escalating,
P(strong correct) - P(weak correct)), which is what the router uses, and by difficulty
(P(weak wrong)) alone, the `*_difficulty` fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from core.metrics import accuracy, apgr, cpt, expected_calibration_error


@dataclass(frozen=True)
class RoutingMetrics:
    """One evaluation's numbers; None where a metric is undefined (e.g. one class only)."""

    n: int
    weak_accuracy: float | None
    strong_accuracy: float | None
    auc: float | None
    ece: float | None
    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    apgr_difficulty: float | None
    cpt50_difficulty: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain dict for JSON output."""
        return asdict(self)


def safe_auc(outcome: ArrayLike, predicted: ArrayLike) -> float | None:
    """ROC AUC of `predicted` for the binary `outcome`; None when only one class is present."""
    binary = np.asarray(outcome, dtype=float) >= 0.5
    if binary.all() or not binary.any():
        return None
    return float(roc_auc_score(binary, np.asarray(predicted, dtype=float)))


def routing_metrics(
    difficulty: ArrayLike, weak: ArrayLike, strong: ArrayLike, routing_score: ArrayLike | None = None
) -> RoutingMetrics:
    """All metrics for one set: `difficulty` = predicted P(weak fails); APGR/CPT rank by `routing_score` (default: difficulty)."""
    difficulty = np.asarray(difficulty, dtype=float)
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    score = difficulty if routing_score is None else np.asarray(routing_score, dtype=float)
    weak_fails = 1.0 - weak
    return RoutingMetrics(
        n=len(difficulty),
        weak_accuracy=accuracy(float(weak.sum()), len(weak)),
        strong_accuracy=accuracy(float(strong.sum()), len(strong)),
        auc=safe_auc(weak_fails, difficulty),
        ece=expected_calibration_error(difficulty, weak_fails),
        apgr=apgr(score, weak, strong),
        cpt50=cpt(score, weak, strong, 0.5),
        cpt80=cpt(score, weak, strong, 0.8),
        apgr_difficulty=apgr(difficulty, weak, strong),
        cpt50_difficulty=cpt(difficulty, weak, strong, 0.5),
    )
