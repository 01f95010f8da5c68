"""Simulation on five records whose results are worked out by hand (see support.FIVE).

    id  difficulty  weak  strong      policy (edge 0.5)   oracle
    a   0.1         1     1           weak   -> 1         weak
    b   0.3         1     0           weak   -> 1         weak
    c   0.6         0     1           strong -> 1         strong
    d   0.8         0     1           strong -> 1         strong
    e   0.9         0     0           strong -> 0         weak (nobody is right: cheapest)

Each call costs $0.001 on weak and $0.010 on strong (the rows carry cost_usd).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers.records import OutcomeRecord, TierOutcome
from policies import parse_policy
from policies.simulate import (
    build_matrix,
    compare,
    load_scores,
    outcome_columns,
    resolve_mapping,
    simulate,
)
from core.errors import ConfigError, DataError
from tests.policies.support import (
    DIFFICULTIES,
    THREE_TIERS,
    TWO_TIERS,
    five_scores,
    records,
    write_jsonl,
)


def test_policy_and_baselines_match_the_hand_computed_figures() -> None:
    policy = parse_policy(TWO_TIERS)
    report = simulate(records(), DIFFICULTIES, policy, {"weak": "weak", "strong": "strong"})
    assert report.tiers == ("weak", "strong")
    assert report.records == 5
    expected = {
        # name: accuracy, total cost, cost per correct, share weak, share strong
        "policy": (0.8, 0.032, 0.032 / 4, 0.4, 0.6),
        "always-cheapest": (0.4, 0.005, 0.005 / 2, 1.0, 0.0),
        "always-strongest": (0.6, 0.050, 0.050 / 3, 0.0, 1.0),
        # random at the policy's shares: 0.4 * 0.4 + 0.6 * 0.6 correct, 0.4 * 0.005 + 0.6 * 0.05 spent
        "random": (0.52, 0.032, 0.032 / 2.6, 0.4, 0.6),
        "oracle": (0.8, 0.023, 0.023 / 4, 0.6, 0.4),
    }
    assert [r.name for r in report.results] == list(expected)
    for name, (accuracy, total, per_correct, weak, strong) in expected.items():
        result = report.result(name)
        assert result.accuracy == pytest.approx(accuracy, abs=1e-12), name
        assert result.total_cost_usd == pytest.approx(total, abs=1e-12), name
        assert result.cost_per_1k_usd == pytest.approx(total / 5 * 1000, abs=1e-9), name
        assert result.cost_per_correct_usd == pytest.approx(per_correct, abs=1e-12), name
        assert result.quality == pytest.approx(accuracy / 0.6, abs=1e-12), name
        assert result.shares == pytest.approx({"weak": weak, "strong": strong}, abs=1e-12), name


def test_cost_per_correct_is_none_when_nothing_is_right() -> None:
    wrong = [
        OutcomeRecord(
            id=r.id,
            source=r.source,
            prompt=r.prompt,
            outcomes={k: TierOutcome(correct=0.0, cost_usd=0.001) for k in r.outcomes},
        )
        for r in records()
    ]
    report = simulate(
        wrong, DIFFICULTIES, parse_policy(TWO_TIERS), {"weak": "weak", "strong": "strong"}
    )
    assert report.result("policy").cost_per_correct_usd is None
    assert report.result("policy").quality is None


def test_compare_is_other_minus_base() -> None:
    base = simulate(
        records(), DIFFICULTIES, parse_policy(TWO_TIERS), {"weak": "weak", "strong": "strong"}
    )
    edited = parse_policy(TWO_TIERS.replace("0.50", "0.85"))  # only e goes to strong
    other = simulate(records(), DIFFICULTIES, edited, {"weak": "weak", "strong": "strong"})
    assert other.result("policy").accuracy == pytest.approx(0.4)
    diff = compare(base, other)
    assert diff["accuracy"] == pytest.approx(0.4 - 0.8)
    assert diff["total_cost_usd"] == pytest.approx(0.014 - 0.032)
    assert diff["cost_per_1k_usd"] == pytest.approx((0.014 - 0.032) / 5 * 1000)
    assert diff["cost_per_correct_usd"] == pytest.approx(0.014 / 2 - 0.032 / 4)


def test_costs_from_tokens_else_from_the_tiers_estimate() -> None:
    policy = parse_policy(TWO_TIERS)  # weak: $1 / $2 per million tokens, 100 expected output tokens
    prompt = "x" * 40  # 10 prompt tokens
    outcomes = {
        "priced": TierOutcome(correct=1.0, cost_usd=0.5),
        "tokens": TierOutcome(correct=1.0, input_tokens=1000, output_tokens=500),
        "output-only": TierOutcome(correct=1.0, output_tokens=500),
        "nothing": TierOutcome(correct=1.0),
    }
    rows = [OutcomeRecord(id=key, source="t", prompt=prompt, outcomes={"weak": o}) for key, o in outcomes.items()]
    matrix = build_matrix(rows, policy, {"weak": "weak"})
    assert matrix.tiers == ("weak",)
    assert matrix.costs[0].tolist() == pytest.approx(
        [0.5, 1000e-6 + 1000e-6, 10e-6 + 1000e-6, 10e-6 + 200e-6]
    )


def test_mapping_by_name_explicit_and_cost_order() -> None:
    two = parse_policy(TWO_TIERS)
    assert resolve_mapping(two, ["weak", "strong"]) == (
        {"weak": "weak", "strong": "strong"},
        "by name",
    )
    assert resolve_mapping(two, ["small", "large"], {"weak": "small", "strong": "large"}) == (
        {"weak": "small", "strong": "large"},
        "explicit",
    )
    # No names match: tiers by cost (weak is cheaper) onto the data's columns in order.
    assert resolve_mapping(two, ["mixtral", "gpt4"]) == (
        {"weak": "mixtral", "strong": "gpt4"},
        "by cost order",
    )
    # Listing the dear tier first in the file changes nothing: cost decides.
    start = TWO_TIERS.index("  - name: weak")
    middle = TWO_TIERS.index("  - name: strong")
    end = TWO_TIERS.index("rules:")
    swapped = parse_policy(
        TWO_TIERS[:start] + TWO_TIERS[middle:end] + TWO_TIERS[start:middle] + TWO_TIERS[end:]
    )
    assert resolve_mapping(swapped, ["mixtral", "gpt4"]) == (
        {"weak": "mixtral", "strong": "gpt4"},
        "by cost order",
    )


def test_mapping_errors_say_what_to_do() -> None:
    two = parse_policy(TWO_TIERS)
    with pytest.raises(
        ConfigError, match="--map names tier 'medium', which the policy does not have"
    ):
        resolve_mapping(two, ["weak", "strong"], {"medium": "weak"})
    with pytest.raises(ConfigError, match="--map names outcome column 'gpt5'"):
        resolve_mapping(two, ["weak", "strong"], {"weak": "gpt5"})
    with pytest.raises(ConfigError, match="The policy's tiers strong have no outcome column"):
        resolve_mapping(two, ["weak", "other"])
    three = parse_policy(THREE_TIERS)
    with pytest.raises(ConfigError, match="map each with --map TIER=COLUMN"):
        resolve_mapping(three, ["a", "b"])


def test_outcome_columns_keep_data_order() -> None:
    assert outcome_columns(records()) == ["weak", "strong"]


def test_load_scores_in_record_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "scores.jsonl", list(reversed(five_scores())))
    assert load_scores(path, records()).tolist() == DIFFICULTIES.tolist()


def test_load_scores_errors(tmp_path: Path) -> None:
    partial = write_jsonl(tmp_path / "partial.jsonl", five_scores()[:3])
    with pytest.raises(DataError, match=r"has no difficulty for 2 of 5 records \(first: d, e\)"):
        load_scores(partial, records())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "difficulty": 0.1}\nnot json\n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl line 2: expected a JSON object with 'id' and 'difficulty'"
    ):
        load_scores(bad, records())
    out_of_range = write_jsonl(tmp_path / "range.jsonl", [{"id": "a", "difficulty": 1.5}])
    with pytest.raises(
        DataError, match=r"line 1: difficulty must be a number in \[0, 1\], got 1.5"
    ):
        load_scores(out_of_range, records())
    with pytest.raises(DataError, match="cannot be read"):
        load_scores(tmp_path / "absent.jsonl", records())


def test_wrong_number_of_scores_is_an_error() -> None:
    with pytest.raises(DataError, match="Got 4 difficulty scores for 5 records"):
        simulate(
            records(),
            DIFFICULTIES[:4],
            parse_policy(TWO_TIERS),
            {"weak": "weak", "strong": "strong"},
        )


def test_no_records_is_an_error() -> None:
    with pytest.raises(DataError, match="no records"):
        simulate([], np.array([]), parse_policy(TWO_TIERS), {"weak": "weak", "strong": "strong"})
