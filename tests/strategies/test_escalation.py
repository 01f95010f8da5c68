"""Escalation: stay cheap when confident, add samples, then move up; every stage's calls summed."""

from __future__ import annotations

import asyncio

import pytest

from router.backends import FakeBackend, GenerationParams, TokenPrice
from core.errors import ConfigError
from strategies import (
    Direct,
    Escalation,
    EscalationConfig,
    EscalationStage,
    SelfConsistency,
    SelfConsistencyConfig,
)

QUESTION = [{"role": "user", "content": "What is 9 + 10?"}]  # 5 words
PARAMS = GenerationParams(max_tokens=16)
SC3 = SelfConsistency(SelfConsistencyConfig(n=3, answer_type="number"))


def stages(cheap: FakeBackend, strong: FakeBackend) -> list[EscalationStage]:
    return [
        EscalationStage("cheap", cheap, SC3, PARAMS),
        EscalationStage("strong", strong, Direct(), PARAMS),
    ]


def test_a_confident_cheap_answer_stays_cheap() -> None:
    cheap, strong = FakeBackend(["19", "19", "21"]), FakeBackend(["19"])
    result = asyncio.run(Escalation(stages(cheap, strong), EscalationConfig(threshold=0.6)).run(QUESTION))
    assert (result.answer, result.stages, result.stop_reason) == ("19", ("cheap",), "confident")
    assert strong.calls == []
    assert result.strategy == "escalation" and result.samples_used == 3


def test_low_agreement_moves_to_the_strong_stage_and_sums_both() -> None:
    cheap = FakeBackend(["19", "21", "18"], price=TokenPrice(1.0, 1.0))
    strong = FakeBackend(["The answer is 19"], price=TokenPrice(10.0, 10.0))
    result = asyncio.run(Escalation(stages(cheap, strong), EscalationConfig(threshold=0.6)).run(QUESTION))
    assert result.stages == ("cheap", "strong")
    assert (result.answer, result.text, result.confidence) == ("19", "The answer is 19", None)
    assert [call.stage for call in result.calls] == ["cheap", "strong"]
    assert result.samples_used == 3 + 1
    assert result.input_tokens == 5 + 5 and result.output_tokens == 3 + 4
    assert result.cost_usd == pytest.approx((5 + 3) * 1e-6 + (5 + 4) * 10e-6)


def test_extra_samples_on_the_same_stage_can_settle_it() -> None:
    cheap, strong = FakeBackend(["19", "21", "18", "19", "19", "19"]), FakeBackend(["19"])
    config = EscalationConfig(threshold=0.6, extra_samples=3)
    result = asyncio.run(Escalation(stages(cheap, strong), config).run(QUESTION))
    assert result.stages == ("cheap", "cheap+extra")
    assert (result.answer, result.confidence, result.samples_used) == ("19", pytest.approx(4 / 6), 6)
    assert [call.stage for call in result.calls] == ["cheap", "cheap+extra"]
    assert strong.calls == []


def test_extra_samples_that_do_not_settle_it_escalate() -> None:
    cheap, strong = FakeBackend(["1", "2", "3"]), FakeBackend(["19"])
    config = EscalationConfig(threshold=0.6, extra_samples=3)
    result = asyncio.run(Escalation(stages(cheap, strong), config).run(QUESTION))
    assert result.stages == ("cheap", "cheap+extra", "strong")
    assert result.samples_used == 6 + 1 and len(result.calls) == 3
    assert (result.answer, result.text, result.stop_reason) == ("19", "19", "confident")


def test_the_last_stage_keeps_its_answer_whatever_its_confidence() -> None:
    cheap, strong = FakeBackend(["1", "2", "3"]), FakeBackend(["4", "5", "6"])
    two_sc = [EscalationStage("cheap", cheap, SC3, PARAMS), EscalationStage("strong", strong, SC3, PARAMS)]
    result = asyncio.run(Escalation(two_sc, EscalationConfig(threshold=0.9)).run(QUESTION))
    assert (result.answer, result.stop_reason, result.stages) == ("4", "last_stage", ("cheap", "strong"))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: Escalation([]), "at least one stage"),
        (lambda b: Escalation([EscalationStage("a", b, SC3, PARAMS)] * 2), "unique"),
        (
            lambda b: Escalation([EscalationStage("a", b, Direct(), PARAMS)], EscalationConfig(extra_samples=2)),
            "cannot draw more samples",
        ),
        (lambda b: EscalationConfig(threshold=0), "escalation.threshold"),
        (lambda b: EscalationConfig(extra_samples=-1), "escalation.extra_samples"),
    ],
)
def test_construction_errors(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build(FakeBackend())
