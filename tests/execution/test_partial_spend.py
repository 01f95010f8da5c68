"""Calls made before a tier fails are paid for: they stay in the result's accounting (and the error's)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from policies import parse_policy
from router.backends import Completion, FakeBackend, GenerationParams, Message, TokenPrice
from core.errors import BackendUnavailable
from router.execution import Executor, RequestOptions, spent_calls
from tests.server.support import FakeBackends

POLICY = """
tiers:
  - name: fast
    backend: litellm
    model: openai/fast
    price: {input_per_million: 1.0, output_per_million: 2.0}
    strategy: {type: direct}
  - name: deep
    backend: litellm
    model: openai/deep
    price: {input_per_million: 10.0, output_per_million: 20.0}
    strategy: {type: self_consistency, n: 4, round_size: 2, answer_type: number, chain_of_thought: false}
rules:
  - name: default
    tier: deep
fallbacks:
  deep: [fast]
"""


class FailsOnSecondCall:
    """Answers one round (two different numbers, so voting needs another round), then the upstream dies."""

    def __init__(self) -> None:
        self.inner = FakeBackend(["Answer: 1", "Answer: 2"], model="deep", price=TokenPrice(10.0, 20.0))
        self.calls = 0

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        self.calls += 1
        if self.calls > 1:
            raise BackendUnavailable("deep went away mid-vote")
        return await self.inner.generate(messages, params)


def _run(policy_text: str) -> object:
    policy = parse_policy(policy_text)
    tiers = {"deep": FailsOnSecondCall(), "fast": FakeBackend(["Answer: 3"], model="fast", price=TokenPrice(1.0, 2.0))}
    decision = policy.decide("What is 1 + 2?", 0.5)
    messages: list[Message] = [{"role": "user", "content": "What is 1 + 2?"}]
    return asyncio.run(Executor(FakeBackends(tiers)).run(policy, decision, messages, RequestOptions()))


def test_fallback_answer_includes_the_failed_tiers_paid_calls() -> None:
    result = _run(POLICY)
    assert result.tier == "fast" and result.failed == ("deep",)  # type: ignore[attr-defined]
    models = [call.model for call in result.calls]  # type: ignore[attr-defined]
    assert models == ["deep", "fast"]
    # FakeBackend counts words. deep's round: the 5-word prompt once, 2 answers of 2 words; fast: 5 + 2.
    assert (result.input_tokens, result.output_tokens) == (10, 6)  # type: ignore[attr-defined]
    assert result.cost_usd == pytest.approx((5 * 10 + 4 * 20 + 5 * 1 + 2 * 2) / 1e6)  # type: ignore[attr-defined]


def test_without_fallback_the_error_carries_what_was_spent() -> None:
    with pytest.raises(BackendUnavailable, match="mid-vote") as caught:
        _run(POLICY.replace("fallbacks:\n  deep: [fast]\n", ""))
    paid = spent_calls(caught.value)
    assert [call.model for call in paid] == ["deep"]
    assert paid[0].output_tokens == 4 and paid[0].cost_usd == pytest.approx((5 * 10 + 4 * 20) / 1e6)
