"""direct, chain_of_thought and reasoning: one call each, with the right prompt and parameters."""

from __future__ import annotations

import asyncio

import pytest

from router.backends import FakeBackend, GenerationParams
from core.errors import ConfigError
from strategies import (
    STEP_BY_STEP,
    ChainOfThought,
    ChainOfThoughtConfig,
    Direct,
    DirectConfig,
    Reasoning,
    ReasoningConfig,
    Strategy,
    with_instruction,
)

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6 * 7?"}]


def test_direct_asks_once_even_when_n_is_larger() -> None:
    backend = FakeBackend(["The answer is 42."])
    strategy = Direct(DirectConfig(answer_type="number"))
    assert isinstance(strategy, Strategy)
    result = asyncio.run(strategy.run(backend, QUESTION, GenerationParams(n=3)))
    assert (result.text, result.answer, result.confidence, result.samples_used) == ("The answer is 42.", "42", None, 1)
    assert backend.calls[0].params.n == 1
    assert (result.input_tokens, result.output_tokens, len(result.calls)) == (2 + 5, 4, 1)


def test_chain_of_thought_appends_the_instruction_to_the_last_user_message() -> None:
    backend = FakeBackend(["6 * 7 = 42.\nAnswer: 42"])
    result = asyncio.run(
        ChainOfThought(ChainOfThoughtConfig(answer_type="number")).run(backend, QUESTION, GenerationParams())
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
    [(ReasoningConfig(effort="high"), "high", None), (ReasoningConfig(thinking_budget_tokens=2048), None, 2048)],
)
def test_reasoning_passes_the_provider_control(config: ReasoningConfig, effort: str | None, budget: int | None) -> None:
    backend = FakeBackend(["42"])
    result = asyncio.run(Reasoning(config).run(backend, QUESTION, GenerationParams(max_tokens=4096)))
    params = backend.calls[0].params
    assert (params.reasoning_effort, params.thinking_budget_tokens, params.n) == (effort, budget, 1)
    assert result.text == "42" and result.strategy == "reasoning"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one"),
        ({"effort": "high", "thinking_budget_tokens": 1024}, "exactly one"),
        ({"effort": "max"}, "reasoning.effort"),
        ({"thinking_budget_tokens": 0}, "reasoning.thinking_budget_tokens"),
    ],
)
def test_reasoning_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReasoningConfig(**fields)  # type: ignore[arg-type]


def test_other_config_errors() -> None:
    with pytest.raises(ConfigError, match="answer_type"):
        DirectConfig(answer_type="float")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="chain_of_thought.instruction"):
        ChainOfThoughtConfig(instruction=" ")
