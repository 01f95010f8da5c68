"""LedgerEntry.from_execution: one way to account a request, answered or failed, for the proxy and `router eval`."""

from __future__ import annotations

import math
import time

import pytest

from core.errors import BackendTimeout
from policies import parse_policy
from router.execution import ExecutionResult
from router.ledger import LedgerEntry
from strategies import CallRecord

POLICY = """
tiers:
  - name: fast
    backend: litellm
    model: openai/fast
    price: {input_per_million: 1.0, output_per_million: 2.0}
  - name: deep
    backend: litellm
    model: openai/deep
    price: {input_per_million: 10.0, output_per_million: 20.0}
rules:
  - name: easy
    when: {difficulty: {max: 0.5}}
    tier: fast
  - name: hard
    when: {difficulty: {min: 0.5}}
    tier: deep
  - name: default
    tier: fast
fallbacks:
  deep: [fast]
"""

DEEP = CallRecord("deep-model", 2, 2, input_tokens=7, output_tokens=4, cost_usd=0.0002, latency_s=0.1)
FAST = CallRecord("fast-model", 1, 1, input_tokens=7, output_tokens=3, cost_usd=0.00001, latency_s=0.1)


def _hard_decision():  # type: ignore[no-untyped-def]
    return parse_policy(POLICY).decide("Prove it.", 0.9)


def test_an_answer_is_accounted_with_every_call_and_how_it_got_there() -> None:
    decision = _hard_decision()
    result = ExecutionResult("42", "stop", "fast", "direct", (DEEP, FAST), confidence=0.5, failed=("deep",))
    entry = LedgerEntry.from_execution(
        "req-1", decision, result, status="ok", latency_s=1.5, timestamp=100.0, key_tag="k", app="tutor",
        prompt="Prove it.", extra={"requested_model": "router"},
    )
    assert (entry.tier, entry.strategy, entry.rule, entry.difficulty) == ("fast", "direct", "hard", 0.9)
    assert (entry.policy_version, entry.timestamp, entry.latency_s, entry.status) == (decision.policy_version, 100.0, 1.5, "ok")
    assert entry.models == ("deep-model", "fast-model")
    assert (entry.input_tokens, entry.output_tokens) == (14, 7)
    assert entry.cost_usd == pytest.approx(0.00021)
    assert entry.extra == {"requested_model": "router", "decided_tier": "deep", "failed_tiers": ["deep"], "confidence": 0.5}
    assert (entry.key_tag, entry.app, entry.prompt) == ("k", "tutor", "Prove it.")


def test_a_failure_costs_the_calls_paid_before_it() -> None:
    error = BackendTimeout("deep timed out")
    error.spent_calls = (DEEP,)
    entry = LedgerEntry.from_execution("req-2", _hard_decision(), error, status="upstream_timeout", latency_s=30.0)
    assert (entry.tier, entry.strategy, entry.status, entry.models) == ("deep", "direct", "upstream_timeout", ("deep-model",))
    assert (entry.input_tokens, entry.output_tokens, entry.cost_usd) == (7, 4, 0.0002)
    assert entry.extra == {}
    assert abs(entry.timestamp - time.time()) < 60  # stamped now when not given


def test_nothing_spent_is_an_empty_entry_of_the_decided_tier() -> None:
    forced = parse_policy(POLICY).forced("deep", "hi")
    assert math.isnan(forced.difficulty)
    for outcome in (None, BackendTimeout("no call was made")):
        entry = LedgerEntry.from_execution("req-3", forced, outcome, status="client_disconnected", latency_s=0.2)
        assert (entry.tier, entry.rule, entry.difficulty, entry.models) == ("deep", "forced", None, ())
        assert (entry.input_tokens, entry.output_tokens, entry.cost_usd) == (0, 0, 0.0)
