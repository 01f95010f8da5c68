"""Policy.decide: bands, conditions, expected cost, reasons, and the public surface."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest

import policies
from policies import Decision, Policy, parse_policy
from policies.policy import estimate_tokens
from strategies import Direct, SelfConsistency
from tests.policies.support import THREE_TIERS, TWO_TIERS


@pytest.fixture(scope="module")
def three() -> Policy:
    return parse_policy(THREE_TIERS)


def test_public_surface_is_exactly_all() -> None:
    public = {name for name in dir(policies) if not name.startswith("_")}
    modules = {"calibrate", "checks", "loader", "policy", "pricing", "reload", "schema", "simulate"}
    assert public - modules == set(policies.__all__)


@pytest.mark.parametrize(
    ("difficulty", "rule", "tier"),
    [
        (0.0, "low", "cheap"),
        (0.2999, "low", "cheap"),
        (0.3, "middle", "mid"),
        (0.6999, "middle", "mid"),
        (0.7, "high", "dear"),
        (1.0, "high", "dear"),  # the top band includes 1
    ],
)
def test_difficulty_bands_are_half_open(
    three: Policy, difficulty: float, rule: str, tier: str
) -> None:
    decision = three.decide("What is 2 + 2?", difficulty)
    assert (decision.rule, decision.tier) == (rule, tier)
    assert decision.difficulty == difficulty


def test_conditions_are_tried_in_order(three: Policy) -> None:
    assert three.decide("q", 0.9, {"app": "vip", "plan": "pro"}).rule == "vip"
    # Every metadata pair must match.
    assert three.decide("q", 0.1, {"app": "vip"}).rule == "low"
    assert three.decide("q", 0.1, {"app": "vip", "plan": "free"}).rule == "low"
    assert three.decide("q", 0.9, requested_model="mini").rule == "asked-mini"
    assert three.decide("q", 0.9, requested_model="gpt-4o").rule == "high"
    long_query = "x" * 4000  # 1000 tokens at 4 characters each
    assert three.decide(long_query, 0.1).rule == "long"
    assert three.decide(long_query[:-4], 0.1).rule == "low"


@pytest.mark.parametrize("difficulty", [math.nan, -0.1, 1.5])
def test_unusable_difficulty_falls_to_the_default_rule(three: Policy, difficulty: float) -> None:
    decision = three.decide("q", difficulty)
    assert (decision.rule, decision.tier) == ("default", "mid")
    assert "is not in [0, 1], so rules on difficulty were skipped" in decision.reasons[0]
    # Conditions other than difficulty still apply.
    assert three.decide("q", difficulty, requested_model="mini").rule == "asked-mini"


def test_expected_cost_counts_prompt_output_and_samples(three: Policy) -> None:
    query = "x" * 41  # 11 tokens: 41 characters at about 4 per token, rounded up
    assert estimate_tokens(query) == 11
    cheap = three.decide(query, 0.1)
    assert cheap.prompt_tokens == 11
    assert cheap.expected_cost_usd == pytest.approx(11 * 1e-6 + 100 * 1e-6, rel=1e-12)
    mid = three.decide(query, 0.5)
    assert mid.expected_cost_usd == pytest.approx(11 * 2e-6 + 100 * 4e-6, rel=1e-12)
    # self_consistency n=5: five samples, each priced as its own call.
    dear = three.decide(query, 0.9)
    assert dear.expected_cost_usd == pytest.approx(5 * (11 * 10e-6 + 100 * 20e-6), rel=1e-12)


def test_reasoning_budget_adds_to_the_output() -> None:
    text = TWO_TIERS.replace(
        "    expected_output_tokens: 100\nrules",
        "    expected_output_tokens: 100\n    max_tokens: 8192\n"
        "    strategy: {type: reasoning, thinking_budget_tokens: 2000}\nrules",
    )
    policy = parse_policy(text)
    decision = policy.decide("x" * 8, 0.9)
    assert decision.expected_cost_usd == pytest.approx(2 * 10e-6 + (100 + 2000) * 30e-6, rel=1e-12)
    effort = parse_policy(text.replace("thinking_budget_tokens: 2000", "effort: low"))
    assert effort.decide("x" * 8, 0.9).expected_cost_usd == pytest.approx(
        2 * 10e-6 + (100 + 1024) * 30e-6, rel=1e-12
    )


def test_gpu_hour_price_becomes_a_per_token_price() -> None:
    text = TWO_TIERS.replace(
        "{input_per_million: 1.0, output_per_million: 2.0}",
        "{gpu_hour_usd: 3.6, tokens_per_second: 100}",
    )
    policy = parse_policy(text)
    # $3.60 an hour is $0.001 a second; at 100 tokens a second, $0.00001 a token, prompt included.
    assert policy.price("weak").output_per_token == pytest.approx(1e-5)
    assert policy.price("weak").input_per_token == pytest.approx(1e-5)
    faster_prefill = parse_policy(
        text.replace(
            "tokens_per_second: 100}", "tokens_per_second: 100, prompt_tokens_per_second: 1000}"
        )
    )
    assert faster_prefill.price("weak").input_per_token == pytest.approx(1e-6)


def test_local_tier_without_price_is_free() -> None:
    text = THREE_TIERS.replace(
        "    price: {input_per_million: 1.0, output_per_million: 1.0}\n", "", 1
    )
    policy = parse_policy(text)
    assert policy.decide("q", 0.1).expected_cost_usd == 0.0
    assert policy.tiers_by_cost == ("cheap", "mid", "dear")


def test_decision_carries_strategy_reasons_fallbacks_escalation(three: Policy) -> None:
    decision = three.decide("What is 2 + 2?", 0.75)
    assert isinstance(decision.strategy, SelfConsistency) and decision.strategy.n == 5
    assert decision.fallbacks == ("mid", "cheap")
    assert [step.then.more_samples for step in decision.escalation] == [3]
    assert decision.reasons[0] == "difficulty 0.750; rule 'high': difficulty in [0.7, 1]"
    assert (
        decision.reasons[1]
        == "tier 'dear' (litellm test/dear): self_consistency n=5, chain of thought"
    )
    assert decision.reasons[2].startswith("expected cost $")
    assert isinstance(three.decide("q", 0.1).strategy, Direct)
    assert three.decide("q", 0.1).fallbacks == ()


def test_decisions_are_frozen_and_pure(three: Policy) -> None:
    first = three.decide("q", 0.5, {"app": "x"})
    assert first == three.decide("q", 0.5, {"app": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.tier = "dear"  # type: ignore[misc]
    assert isinstance(first, Decision)


def test_version_is_the_content_hash() -> None:
    policy = parse_policy(TWO_TIERS)
    assert policy.version == hashlib.sha256(TWO_TIERS.encode()).hexdigest()[:12]
    assert policy.decide("q", 0.1).policy_version == policy.version
    assert parse_policy(TWO_TIERS + "\n").version != policy.version


def test_policy_has_no_writable_state(three: Policy) -> None:
    with pytest.raises(AttributeError):
        three.extra = 1  # type: ignore[attr-defined]


def test_with_thresholds_moves_only_the_band_edges(three: Policy) -> None:
    moved = three.with_thresholds([0.5, 0.9])
    assert moved.thresholds == (0.5, 0.9)
    assert moved.decide("q", 0.4).rule == "low"
    assert moved.decide("q", 0.8).rule == "middle"
    assert moved.decide("q", 0.9, {"app": "vip", "plan": "pro"}).rule == "vip"
    assert three.thresholds == (0.3, 0.7)
    with pytest.raises(ValueError, match="ascend"):
        three.with_thresholds([0.6, 0.4])


def test_a_single_requested_model_and_integer_numbers_are_accepted() -> None:
    text = TWO_TIERS.replace(
        "rules:\n", "rules:\n  - name: m\n    when: {model: mini}\n    tier: strong\n"
    )
    policy = parse_policy(
        text.replace(
            "expected_output_tokens: 100", "expected_output_tokens: 100\n    timeout_s: 5", 1
        )
    )
    assert policy.decide("q", 0.1, requested_model="mini").rule == "m"
    assert policy.decide("q", 0.1, requested_model="maxi").rule == "easy"
    assert policy.tier("weak").timeout_s == 5.0
