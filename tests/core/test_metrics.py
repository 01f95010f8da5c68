"""core.metrics against hand-computed values, and what each returns when it has nothing to measure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.metrics import (
    accuracy,
    apgr,
    calibration_bins,
    calibration_error,
    cost_per_correct,
    cpt,
    expected_calibration_error,
    pgr_curve,
    ratio,
    routed_accuracy,
)


def test_cost_per_correct_divides_spend_by_right_answers() -> None:
    assert cost_per_correct(0.03, 3) == pytest.approx(0.01)
    assert cost_per_correct(0.03, 1.5) == pytest.approx(0.02)  # graded scores count their fraction


def test_no_correct_answer_leaves_cost_per_correct_undefined_not_infinite() -> None:
    assert cost_per_correct(0.05, 0) is None
    assert cost_per_correct(0.0, 0.0) is None
    assert json.dumps({"cost_per_correct": cost_per_correct(0.05, 0)}) == '{"cost_per_correct": null}'


def test_all_correct_costs_the_mean_spend_and_scores_one() -> None:
    assert accuracy(4, 4) == 1.0
    assert cost_per_correct(0.02, 4) == pytest.approx(0.005)


def test_nothing_graded_has_no_accuracy() -> None:
    assert accuracy(0, 0) is None
    assert accuracy(0, 3) == 0.0  # graded but all wrong is a real zero
    assert ratio(1.0, -1.0) is None


def test_calibration_bins_by_hand() -> None:
    predicted = np.array([0.05, 0.05, 0.95, 0.95, 1.0])
    outcome = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    first, last = calibration_bins(predicted, outcome)
    assert (first.lo, first.hi, first.n, first.predicted, first.observed) == (0.0, 0.1, 2, 0.05, 0.5)
    assert (last.lo, last.n, last.observed) == (0.9, 3, 1.0)  # 1.0 falls in the last bin
    assert last.predicted == pytest.approx((0.95 + 0.95 + 1.0) / 3)


def test_expected_calibration_error_by_hand() -> None:
    predicted = np.array([0.05, 0.05, 0.95, 0.95])
    outcome = np.array([0.0, 1.0, 1.0, 1.0])
    # Bin 0: mean pred 0.05, observed 0.5 -> 0.45 * 0.5; bin 9: 0.95 vs 1.0 -> 0.05 * 0.5.
    assert expected_calibration_error(predicted, outcome) == pytest.approx(0.25)


def test_calibration_clips_predictions_and_checks_lengths() -> None:
    (only,) = calibration_bins([-0.5, 1.5], [0.0, 1.0], bins=1)
    assert (only.n, only.predicted) == (2, 0.5)
    with pytest.raises(ValueError, match="one outcome per prediction"):
        calibration_bins([0.1, 0.2], [1.0])


def test_calibration_of_nothing_is_undefined() -> None:
    assert calibration_bins([], []) == []
    assert calibration_error([]) is None
    assert expected_calibration_error(np.array([]), np.array([])) is None


def test_perfect_calibration_has_zero_error() -> None:
    assert expected_calibration_error([0.0, 0.0, 1.0], [0.0, 0.0, 1.0]) == 0.0


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
    assert (apgr(perfect, weak, strong) or 0.0) > 0.85  # PGR climbs to 1 over the first ~20% (the gain rows)
    assert (apgr(-perfect, weak, strong) or 1.0) < 0.15  # the mirror image: gains come last


def test_cpt_is_smallest_share_reaching_target() -> None:
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 1.0])
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    # PGR rises 0 -> 0.5 at f=0.25 -> 1.0 at f=0.5.
    curve = pgr_curve(scores, weak, strong)
    assert curve is not None and curve[25] == pytest.approx(0.5)
    assert cpt(scores, weak, strong, 0.5) == pytest.approx(0.25)
    assert cpt(scores, weak, strong, 0.8) == pytest.approx(0.5)  # the first f that routes 2 of 4


def test_routing_curve_is_undefined_without_a_gap_or_rows() -> None:
    same = np.array([1.0, 0.0, 1.0])
    assert pgr_curve(np.array([0.2, 0.5, 0.7]), same, same) is None
    assert apgr(np.array([0.2, 0.5, 0.7]), same, same) is None
    assert cpt(np.array([0.2, 0.5, 0.7]), same, same, 0.5) is None
    empty = np.array([])
    assert apgr(empty, empty, empty) is None


def test_cpt_of_a_target_no_share_reaches_is_undefined() -> None:
    weak, strong = np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0])
    scores = np.array([0.0, 1.0, 1.0])  # the one row that gains is ranked last
    assert cpt(scores, weak, strong, 1.0) == 1.0  # reached only when everything goes to strong
    assert cpt(scores, weak, strong, 1.5) is None  # PGR never exceeds 1
