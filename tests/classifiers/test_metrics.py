"""A classifier's routing metrics: which scores they rank by, and what is undefined."""

from __future__ import annotations

import json

import numpy as np

from classifiers.metrics import routing_metrics, safe_auc


def test_undefined_metrics_are_none() -> None:
    assert safe_auc(np.ones(3), np.array([0.1, 0.2, 0.3])) is None
    same = np.array([1.0, 0.0, 1.0])
    metrics = routing_metrics(np.array([0.2, 0.5, 0.7]), same, same)
    assert metrics.apgr is None and metrics.cpt50 is None and metrics.auc is not None
    assert "NaN" not in json.dumps(metrics.as_dict())  # undefined is null: the JSON stays valid


def test_routing_score_and_difficulty_rankings_are_both_reported() -> None:
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.array([0.0, 1.0, 1.0, 1.0])
    difficulty = np.array([0.9, 0.8, 0.2, 0.1])  # row 0 is hardest, but strong fails it too
    gain = np.array([0.0, 0.7, 0.0, 0.0])  # only row 1 gains from escalation
    metrics = routing_metrics(difficulty, weak, strong, gain)
    assert metrics.cpt50 == 0.25  # by gain: row 1 first
    assert metrics.cpt50_difficulty == 0.5  # by difficulty: rows 0 then 1
    assert (metrics.apgr or 0.0) > (metrics.apgr_difficulty or 1.0)
    assert (metrics.weak_accuracy, metrics.strong_accuracy) == (0.5, 0.75)
