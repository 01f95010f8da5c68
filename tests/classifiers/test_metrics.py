"""Routing metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.metrics import (
    apgr,
    cpt,
    expected_calibration_error,
    pgr_curve,
    routed_accuracy,
    routing_metrics,
    safe_auc,
)


def test_routed_accuracy_sends_top_scores_to_strong() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.3])
    weak = np.array([0.0, 1.0, 1.0, 0.0])
    strong = np.array([1.0, 1.0, 1.0, 1.0])
    # f=0: weak only = 2/4; f=0.25: row 0 to strong -> 3/4; f=0.5: rows 0,2 -> 3/4; f=0.75: rows 0,2,3 -> 4/4.
    got = routed_accuracy(scores, weak, strong, np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert got.tolist() == [0.5, 0.75, 0.75, 1.0, 1.0]


def test_ties_count_as_random_order() -> None:
    weak = np.array([0.0, 1.0])
    strong = np.array([1.0, 1.0])
    # Both tied: sending one of two to strong gains 0.5 in expectation -> accuracy 0.75.
    got = routed_accuracy(np.zeros(2), weak, strong, np.array([0.5]))
    assert got[0] == pytest.approx(0.75)


def test_constant_score_has_apgr_one_half_and_perfect_score_beats_it() -> None:
    rng = np.random.default_rng(1)
    weak = (rng.random(500) < 0.6).astype(float)
    strong = np.maximum(weak, (rng.random(500) < 0.5).astype(float))
    assert apgr(np.zeros(500), weak, strong) == pytest.approx(0.5, abs=1e-9)
    perfect = strong - weak
    assert apgr(perfect, weak, strong) > 0.85  # PGR climbs to 1 over the first ~20% (the gain rows)
    assert apgr(-perfect, weak, strong) < 0.15  # the mirror image: gains come last


def test_cpt_is_smallest_share_reaching_target() -> None:
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 1.0])
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    # PGR rises 0 -> 0.5 at f=0.25 -> 1.0 at f=0.5.
    curve = pgr_curve(scores, weak, strong)
    assert curve[25] == pytest.approx(0.5)
    assert cpt(scores, weak, strong, 0.5) == pytest.approx(0.25)
    assert cpt(scores, weak, strong, 0.8) == pytest.approx(0.5)  # the first f that routes 2 of 4


def test_expected_calibration_error_by_hand() -> None:
    predicted = np.array([0.05, 0.05, 0.95, 0.95])
    outcome = np.array([0.0, 1.0, 1.0, 1.0])
    # Bin 0: mean pred 0.05, observed 0.5 -> 0.45 * 0.5; bin 9: 0.95 vs 1.0 -> 0.05 * 0.5.
    assert expected_calibration_error(predicted, outcome) == pytest.approx(0.25)


def test_undefined_metrics_are_nan() -> None:
    assert np.isnan(safe_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))
    same = np.array([1.0, 0.0, 1.0])
    metrics = routing_metrics(np.array([0.2, 0.5, 0.7]), same, same)
    assert np.isnan(metrics.apgr) and np.isnan(metrics.cpt50)


def test_routing_score_and_difficulty_rankings_are_both_reported() -> None:
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.array([0.0, 1.0, 1.0, 1.0])
    difficulty = np.array([0.9, 0.8, 0.2, 0.1])  # row 0 is hardest, but strong fails it too
    gain = np.array([0.0, 0.7, 0.0, 0.0])  # only row 1 gains from escalation
    metrics = routing_metrics(difficulty, weak, strong, gain)
    assert metrics.cpt50 == pytest.approx(0.25)  # by gain: row 1 first
    assert metrics.cpt50_difficulty == pytest.approx(0.5)  # by difficulty: rows 0 then 1
    assert metrics.apgr > metrics.apgr_difficulty
