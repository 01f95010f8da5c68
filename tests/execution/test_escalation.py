"""Escalation, as the executor runs it from a decision: stay when confident, add samples, move up.

Every stage's calls are summed and labelled with their stage; a failed escalation keeps the
answer it had and still accounts what the failed tier spent.
"""

from __future__ import annotations

import asyncio

import pytest

from core.errors import BackendUnavailable
from core.llm import Message, TokenPrice
from policies import Policy, parse_policy
from router.backends import FakeBackend
from router.execution import ExecutionResult, Executor, RequestOptions
from tests.server.support import FakeBackends

QUESTION: list[Message] = [{"role": "user", "content": "What is 9 + 10?"}]  # 5 words

POLICY = """
tiers:
  - name: cheap
    backend: litellm
    model: openai/cheap
    price: {input_per_million: 1.0, output_per_million: 1.0}
    strategy: {type: self_consistency, n: 3, answer_type: number, chain_of_thought: false}
  - name: strong
    backend: litellm
    model: openai/strong
    price: {input_per_million: 10.0, output_per_million: 10.0}
    strategy: {type: direct, answer_type: number}
rules:
  - name: default
    tier: cheap
escalation:
%s
"""
MORE_THEN_UP = """
  - {from_tier: cheap, when: {agreement_below: 0.6}, then: {more_samples: 2}}
  - {from_tier: cheap, when: {agreement_below: 0.6}, then: {to_tier: strong}}
"""


def run(policy: Policy, cheap: FakeBackend, strong: FakeBackend, events: list[tuple[str, str, str]] | None = None) -> ExecutionResult:
    seen = events if events is not None else []
    executor = Executor(FakeBackends({"cheap": cheap, "strong": strong}), on_event=lambda *e: seen.append(e))
    decision = policy.decide("What is 9 + 10?", 0.1)
    assert decision.escalation == policy.escalation("cheap")  # the decision carries the steps it runs
    return asyncio.run(executor.run(policy, decision, QUESTION, RequestOptions(max_tokens=16)))


def test_a_confident_cheap_answer_stays_cheap() -> None:
    cheap, strong = FakeBackend(["19", "19", "21"]), FakeBackend(["19"])
    result = run(parse_policy(POLICY % MORE_THEN_UP), cheap, strong)
    assert (result.text, result.tier, result.stages, result.confidence) == ("19", "cheap", ("cheap",), 2 / 3)
    assert strong.calls == []
    assert [call.stage for call in result.calls] == ["cheap"]


def test_more_samples_first_then_the_strong_tier_and_every_call_is_summed() -> None:
    cheap = FakeBackend(["19", "21", "18", "17", "16"], price=TokenPrice(1.0, 1.0))
    strong = FakeBackend(["The answer is 19"], price=TokenPrice(10.0, 10.0))
    events: list[tuple[str, str, str]] = []
    result = run(parse_policy(POLICY % MORE_THEN_UP), cheap, strong, events)
    assert (result.tier, result.text, result.stages) == ("strong", "The answer is 19", ("cheap", "cheap+2", "strong"))
    assert [call.stage for call in result.calls] == ["cheap", "cheap+2", "strong"]
    assert [call.n_requested for call in result.calls] == [3, 2, 1]
    assert result.input_tokens == 5 + 5 + 5 and result.output_tokens == 3 + 2 + 4
    assert result.cost_usd == pytest.approx((5 + 3 + 5 + 2) * 1e-6 + (5 + 4) * 10e-6)
    assert [kind for kind, _, _ in events] == ["escalation", "escalation"]


def test_more_samples_that_settle_the_vote_stop_there() -> None:
    cheap, strong = FakeBackend(["19", "21", "18", "19", "19"]), FakeBackend(["19"])
    result = run(parse_policy(POLICY % MORE_THEN_UP), cheap, strong)
    assert (result.tier, result.text, result.confidence) == ("cheap", "19", 3 / 5)
    assert strong.calls == []


def test_a_failed_escalation_keeps_the_answer_and_accounts_what_was_spent() -> None:
    cheap = FakeBackend(["19", "21", "18"], price=TokenPrice(1.0, 1.0))
    strong = FakeBackend(["unused"])
    up_only = "  - {from_tier: cheap, when: {agreement_below: 0.6}, then: {to_tier: strong}}\n"
    voting_strong = (POLICY % up_only).replace(
        "{type: direct, answer_type: number}",
        "{type: self_consistency, n: 4, round_size: 2, answer_type: number, chain_of_thought: false}",
    )
    result = run(parse_policy(voting_strong), cheap, _FailsOnSecondCall(strong))  # type: ignore[arg-type]
    assert (result.tier, result.text, result.stages) == ("cheap", "19", ("cheap",))
    # The strong tier's first round (2 samples) was paid for before it failed: it is in the total.
    assert [call.stage for call in result.calls] == ["strong", "cheap"]
    assert result.cost_usd == pytest.approx((5 + 3) * 1e-6 + (5 + 2) * 10e-6)


class _FailsOnSecondCall:
    """Answers one round, then the upstream dies."""

    def __init__(self, inner: FakeBackend) -> None:
        self.inner, self.calls = inner, 0

    async def generate(self, messages, params):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 1:
            raise BackendUnavailable("strong went away mid-vote")
        return await FakeBackend(["19", "20"], price=TokenPrice(10.0, 10.0)).generate(messages, params)


def test_a_verify_no_moves_the_question_up() -> None:
    policy = parse_policy(
        (POLICY % "  - {from_tier: cheap, when: {agreement_below: 0.5}, then: {to_tier: strong}}\n").replace(
            "{type: self_consistency, n: 3, answer_type: number, chain_of_thought: false}", "{type: verify}"
        )
    )
    cheap, strong = FakeBackend(["20", "No."]), FakeBackend(["19"])
    result = run(policy, cheap, strong)
    assert (result.tier, result.text, result.stages) == ("strong", "19", ("cheap", "strong"))
    assert [call.stage for call in result.calls] == ["cheap", "cheap", "strong"]
    checked = cheap.calls[1].messages
    assert checked[-2] == {"role": "assistant", "content": "20"} and "yes" in checked[-1]["content"]
    yes = run(policy, FakeBackend(["19", "Yes"]), FakeBackend(["19"]))
    assert (yes.tier, yes.confidence) == ("cheap", 1.0)
