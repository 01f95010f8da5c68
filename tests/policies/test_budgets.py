"""Policy.apply_budget: allow, downgrade to the dearest cheaper tier that fits, or refuse."""

from __future__ import annotations

import pytest

from policies import Policy, parse_policy
from tests.policies.support import THREE_TIERS, TWO_TIERS

QUERY = "x" * 40  # 10 prompt tokens
# Expected costs of QUERY per tier of THREE_TIERS:
CHEAP = 10 * 1e-6 + 100 * 1e-6  # 0.00011
MID = 10 * 2e-6 + 100 * 4e-6  # 0.00042
DEAR = 5 * (10 * 10e-6 + 100 * 20e-6)  # 0.0105


def policy_with(budgets: str) -> Policy:
    start = THREE_TIERS.index("budgets:")
    end = THREE_TIERS.index("fallbacks:")
    return parse_policy(THREE_TIERS[:start] + budgets + THREE_TIERS[end:])


def test_no_budget_allows_everything() -> None:
    policy = parse_policy(TWO_TIERS)
    decision = policy.decide(QUERY, 0.9)
    verdict = policy.apply_budget(decision, spent_today_usd=1e9)
    assert (verdict.action, verdict.allowed, verdict.decision, verdict.limit_usd) == (
        "allow",
        True,
        decision,
        None,
    )


def test_within_budget_is_allowed() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.02}\n")
    verdict = policy.apply_budget(policy.decide(QUERY, 0.9))
    assert verdict.action == "allow"
    assert verdict.decision.tier == "dear"
    assert verdict.decision.expected_cost_usd == pytest.approx(DEAR)


def test_per_request_limit_downgrades_to_the_dearest_tier_that_fits() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.001}\n")
    decision = policy.decide(QUERY, 0.9)
    verdict = policy.apply_budget(decision)
    assert verdict.action == "downgrade" and verdict.allowed
    assert verdict.decision.tier == "mid"  # fits, and is dearer than cheap
    assert verdict.decision.expected_cost_usd == pytest.approx(MID)
    assert verdict.decision.strategy.type == "chain_of_thought"
    assert verdict.decision.fallbacks == ("cheap",)
    assert verdict.decision.escalation == ()
    assert verdict.decision.rule == "high"
    assert verdict.decision.reasons[-1] == verdict.reason
    assert "downgraded to tier 'mid'" in verdict.reason
    assert verdict.limit_usd == 0.001


def test_downgrade_skips_tiers_that_still_do_not_fit() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.0002}\n")
    verdict = policy.apply_budget(policy.decide(QUERY, 0.9))
    assert (verdict.action, verdict.decision.tier) == ("downgrade", "cheap")
    assert verdict.decision.expected_cost_usd == pytest.approx(CHEAP)


def test_refuse_when_nothing_fits() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.0001}\n")
    decision = policy.decide(QUERY, 0.9)
    verdict = policy.apply_budget(decision)
    assert (verdict.action, verdict.allowed) == ("refuse", False)
    assert verdict.decision == decision
    assert verdict.reason.endswith("and no cheaper tier fits; refused")


def test_refuse_policy_never_downgrades() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.001, on_exceeded: refuse}\n")
    verdict = policy.apply_budget(policy.decide(QUERY, 0.9))
    assert verdict.action == "refuse"
    assert verdict.reason.endswith("refused (on_exceeded: refuse)")


def test_daily_budget_counts_what_the_key_spent_today() -> None:
    policy = policy_with("budgets: {per_key_daily_usd: 1.0}\n")
    decision = policy.decide(QUERY, 0.9)
    assert policy.apply_budget(decision, spent_today_usd=0.5).action == "allow"
    verdict = policy.apply_budget(decision, spent_today_usd=0.9995)  # 0.0005 left
    assert (verdict.action, verdict.decision.tier) == ("downgrade", "mid")
    assert verdict.limit_usd == pytest.approx(0.0005)
    assert policy.apply_budget(decision, spent_today_usd=2.0).action == "refuse"


def test_tightest_limit_wins() -> None:
    policy = policy_with("budgets: {max_cost_per_request_usd: 0.02, per_key_daily_usd: 1.0}\n")
    decision = policy.decide(QUERY, 0.9)
    assert policy.apply_budget(decision, spent_today_usd=0.0).limit_usd == 0.02
    assert policy.apply_budget(decision, spent_today_usd=0.999).decision.tier == "mid"
