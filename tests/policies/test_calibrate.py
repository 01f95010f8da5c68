"""Calibration on records whose trade-off curve is worked out by hand, and --write's edits.

Two tiers, the five records of support.FIVE; a threshold t sends difficulty >= t to strong:

    t        weak       strong     accuracy  cost    cost per 1k
    0.1      -          a b c d e  0.6       0.050   10.0
    0.3      a          b c d e    0.6       0.041    8.2
    0.6      a b        c d e      0.8       0.032    6.4
    0.8      a b c      d e        0.6       0.023    4.6
    0.9      a b c d    e          0.4       0.014    2.8
    0.9001   all        -          0.4       0.005    1.0

Always-strongest is right 3 times in 5 (0.6), so 95% quality needs accuracy >= 0.57.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers.records import OutcomeRecord, TierOutcome
from policies import load_policy, parse_policy
from policies.calibrate import calibrate, candidate_thresholds, format_threshold, write_thresholds
from core.errors import ConfigError
from tests.policies.support import DIFFICULTIES, THREE_TIERS, TWO_TIERS, records

MAPPING = {"weak": "weak", "strong": "strong"}


def test_candidates_are_score_quantiles_plus_nothing_above() -> None:
    assert candidate_thresholds(DIFFICULTIES) == [0.1, 0.3, 0.6, 0.8, 0.9, 0.9001]
    # Kept strictly inside (0, 1) so that every band stays non-empty.
    assert candidate_thresholds(np.array([0.0, 1.0])) == [0.0001, 0.9999]


def test_target_quality_picks_the_cheapest_thresholds_that_meet_it() -> None:
    result = calibrate(
        records(), DIFFICULTIES, parse_policy(TWO_TIERS), MAPPING, target_quality=0.95
    )
    assert result.band_rules == ("easy", "hard")
    assert result.strongest_accuracy == pytest.approx(0.6)
    assert [
        (p.thresholds, round(p.accuracy, 9), round(p.cost_per_1k_usd, 9)) for p in result.curve
    ] == [
        ((0.9001,), 0.4, 1.0),
        ((0.9,), 0.4, 2.8),
        ((0.8,), 0.6, 4.6),
        ((0.6,), 0.8, 6.4),
        ((0.3,), 0.6, 8.2),
        ((0.1,), 0.6, 10.0),
    ]
    chosen = result.chosen
    assert chosen.thresholds == (0.8,)
    assert chosen.accuracy == pytest.approx(0.6)
    assert chosen.quality == pytest.approx(1.0)
    assert chosen.strong_share == pytest.approx(0.4)
    assert chosen.total_cost_usd == pytest.approx(0.023)
    assert chosen.cost_per_correct_usd == pytest.approx(0.023 / 3)
    assert result.current.thresholds == (0.5,)
    assert result.current.accuracy == pytest.approx(0.8)
    # The trade-off frontier: no cheaper candidate is as accurate.
    assert [p.thresholds for p in result.frontier()] == [(0.9001,), (0.8,), (0.6,)]


def test_higher_target_costs_more() -> None:
    result = calibrate(
        records(), DIFFICULTIES, parse_policy(TWO_TIERS), MAPPING, target_quality=1.2
    )
    assert result.chosen.thresholds == (0.6,)  # 0.8 >= 1.2 * 0.6 = 0.72


def test_cost_cap_picks_the_most_accurate_thresholds_under_it() -> None:
    policy = parse_policy(TWO_TIERS)
    assert calibrate(
        records(), DIFFICULTIES, policy, MAPPING, max_cost_per_1k=7.0
    ).chosen.thresholds == (0.6,)
    assert calibrate(
        records(), DIFFICULTIES, policy, MAPPING, max_cost_per_1k=6.0
    ).chosen.thresholds == (0.8,)
    assert calibrate(
        records(), DIFFICULTIES, policy, MAPPING, max_cost_per_1k=2.0
    ).chosen.thresholds == (0.9001,)


def test_unreachable_targets_say_what_is_possible() -> None:
    policy = parse_policy(TWO_TIERS)
    with pytest.raises(ConfigError, match=r"No thresholds reach 150.0% .* the best reaches 133.3%"):
        calibrate(records(), DIFFICULTIES, policy, MAPPING, target_quality=1.5)
    with pytest.raises(ConfigError, match=r"the cheapest costs \$1.0000. Raise --max-cost-per-1k"):
        calibrate(records(), DIFFICULTIES, policy, MAPPING, max_cost_per_1k=0.5)


def test_exactly_one_target() -> None:
    policy = parse_policy(TWO_TIERS)
    with pytest.raises(ConfigError, match="exactly one"):
        calibrate(records(), DIFFICULTIES, policy, MAPPING)
    with pytest.raises(ConfigError, match="exactly one"):
        calibrate(records(), DIFFICULTIES, policy, MAPPING, target_quality=0.9, max_cost_per_1k=1.0)
    with pytest.raises(ConfigError, match="must be > 0"):
        calibrate(records(), DIFFICULTIES, policy, MAPPING, target_quality=0.0)


def test_a_policy_without_bands_cannot_be_calibrated() -> None:
    text = TWO_TIERS.replace(
        "when: {difficulty: {max: 0.50}}   # keep this comment", "when: {model: x}"
    ).replace("    when:\n      difficulty:\n        min: 0.50\n", "    when: {model: y}\n")
    with pytest.raises(ConfigError, match="fewer than two difficulty-only rules"):
        calibrate(records(), DIFFICULTIES, parse_policy(text), MAPPING, target_quality=0.9)


def test_three_tiers_sweep_both_edges() -> None:
    # cheap right only on r1; mid on r1, r2; dear on all. Costs 1, 2 and 4 thousandths.
    rows = [
        OutcomeRecord(
            id=f"r{i}",
            source="t",
            prompt=f"q{i}",
            outcomes={
                "cheap": TierOutcome(correct=float(i == 1), cost_usd=0.001),
                "mid": TierOutcome(correct=float(i <= 2), cost_usd=0.002),
                "dear": TierOutcome(correct=1.0, cost_usd=0.004),
            },
        )
        for i in (1, 2, 3)
    ]
    difficulties = np.array([0.2, 0.5, 0.8])
    policy = parse_policy(THREE_TIERS)
    mapping = {"cheap": "cheap", "mid": "mid", "dear": "dear"}
    result = calibrate(rows, difficulties, policy, mapping, target_quality=1.0)
    # r1 -> cheap, r2 -> mid, r3 -> dear: all right, for 1 + 2 + 4 thousandths.
    assert result.chosen.thresholds == (0.5, 0.8)
    assert result.chosen.accuracy == 1.0
    assert result.chosen.cost_per_1k_usd == pytest.approx(7 / 3)
    assert result.chosen.strong_share == pytest.approx(1 / 3)
    # Every ascending pair of the candidates 0.2, 0.5, 0.8, 0.8001 was tried.
    assert len(result.curve) == 6


def test_write_changes_only_the_threshold_numbers(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_bytes(TWO_TIERS.encode())
    new = write_thresholds(path, [0.8])
    written = path.read_text()
    assert written == TWO_TIERS.replace("max: 0.50}", "max: 0.8}").replace("min: 0.50", "min: 0.8")
    assert "# keep this comment" in written and written.startswith("# test policy\n")
    assert new.thresholds == (0.8,)
    assert load_policy(path).version == new.version


def test_write_moves_both_edges_of_a_middle_band(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(THREE_TIERS)
    write_thresholds(path, [0.25, 0.655])
    assert path.read_text() == (
        THREE_TIERS.replace("{min: 0.0, max: 0.3}", "{min: 0.0, max: 0.25}")
        .replace("{min: 0.3, max: 0.7}", "{min: 0.25, max: 0.655}")
        .replace("{min: 0.7, max: 1.0}", "{min: 0.655, max: 1.0}")
    )


def test_write_keeps_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_bytes(TWO_TIERS.replace("\n", "\r\n").encode())
    write_thresholds(path, [0.6])
    assert path.read_bytes() == TWO_TIERS.replace("0.50", "0.6").replace("\n", "\r\n").encode()


def test_write_refuses_a_wrong_count(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(TWO_TIERS)
    with pytest.raises(ConfigError, match="has 1 thresholds, not 2"):
        write_thresholds(path, [0.3, 0.6])
    assert path.read_text() == TWO_TIERS


def test_threshold_format() -> None:
    assert [format_threshold(v) for v in (0.5, 0.4321, 0.9001, 0.12345)] == [
        "0.5",
        "0.4321",
        "0.9001",
        "0.1235",
    ]
