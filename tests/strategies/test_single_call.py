"""direct, chain_of_thought and reasoning: one call each, with the right prompt and parameters."""

from __future__ import annotations

import asyncio

import pytest

from router.backends import FakeBackend, GenerationParams
from pydantic import ValidationError
from strategies import (
    STEP_BY_STEP,
    ChainOfThought,
    Direct,
    Reasoning,
    Strategy,
    with_instruction,
)

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6 * 7?"}]


def test_direct_asks_once_even_when_n_is_larger() -> None:
    backend = FakeBackend(["The answer is 42."])
    strategy = Direct(answer_type="number")
    assert isinstance(strategy, Strategy)
    result = asyncio.run(strategy.run(backend, QUESTION, GenerationParams(n=3)))
    assert (result.text, result.answer, result.confidence, result.samples_used) == ("The answer is 42.", "42", None, 1)
    assert backend.calls[0].params.n == 1
    assert (result.input_tokens, result.output_tokens, len(result.calls)) == (2 + 5, 4, 1)


def test_chain_of_thought_appends_the_instruction_to_the_last_user_message() -> None:
    backend = FakeBackend(["6 * 7 = 42.\nAnswer: 42"])
    result = asyncio.run(
        ChainOfThought(answer_type="number").run(backend, QUESTION, GenerationParams())
    )
    sent = backend.calls[0].messages
    assert sent[0] == QUESTION[0]
    assert sent[1]["content"] == f"What is 6 * 7?\n\n{STEP_BY_STEP}"
    assert result.answer == "42" and result.strategy == "chain_of_thought"


def test_with_instruction_adds_a_user_message_when_there_is_none() -> None:
    messages = with_instruction([{"role": "system", "content": "x"}], "Think.")
    assert messages == [{"role": "system", "content": "x"}, {"role": "user", "content": "Think."}]


@pytest.mark.parametrize(
    ("config", "effort", "budget"),
    [(Reasoning(effort="high"), "high", None), (Reasoning(thinking_budget_tokens=2048), None, 2048)],
)
def test_reasoning_passes_the_provider_control(config: Reasoning, effort: str | None, budget: int | None) -> None:
    backend = FakeBackend(["42"])
    result = asyncio.run(config.run(backend, QUESTION, GenerationParams(max_tokens=4096)))
    params = backend.calls[0].params
    assert (params.reasoning_effort, params.thinking_budget_tokens, params.n) == (effort, budget, 1)
    assert result.text == "42" and result.strategy == "reasoning"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one"),
        ({"effort": "high", "thinking_budget_tokens": 1024}, "exactly one"),
        ({"thinking_budget_tokens": 4096}, "must be < max_tokens"),
    ],
)
def test_reasoning_checks_against_the_tier(fields: dict[str, object], message: str) -> None:
    problems = list(Reasoning(**fields).problems(backend="litellm", max_tokens=4096))  # type: ignore[arg-type]
    assert any(message in text for _, text in problems)


def test_reasoning_needs_a_provider_with_reasoning_controls() -> None:
    problems = list(Reasoning(effort="low").problems(backend="local", max_tokens=4096))
    assert problems == [(("type",), problems[0][1])] and "chain_of_thought" in problems[0][1]


def test_option_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="\neffort\n"):
        Reasoning(effort="max")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="\nthinking_budget_tokens\n"):
        Reasoning(thinking_budget_tokens=0)
    with pytest.raises(ValidationError, match="\nanswer_type\n"):
        Direct(answer_type="float")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="\ninstruction\n"):
        ChainOfThought(instruction="")
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        Direct(samples=3)  # type: ignore[call-arg]
