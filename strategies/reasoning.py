"""`reasoning`: let the provider think, at a reasoning effort or within a thinking-token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.llm import (
    REASONING_EFFORTS,
    Backend,
    GenerationParams,
    Message,
    ReasoningEffort,
)
from core.errors import ConfigError
from strategies.base import StrategyResult
from strategies.direct import single_sample
from strategies.extraction import AnswerType, check_answer_type


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """Settings of `reasoning`: exactly one of `effort` or `thinking_budget_tokens`."""

    effort: ReasoningEffort | None = None
    thinking_budget_tokens: int | None = None
    answer_type: AnswerType = "text"

    def __post_init__(self) -> None:
        check_answer_type(self.answer_type)
        if (self.effort is None) == (self.thinking_budget_tokens is None):
            raise ConfigError(
                "reasoning: set exactly one of effort (low/medium/high) or thinking_budget_tokens."
            )
        if self.effort is not None and self.effort not in REASONING_EFFORTS:
            raise ConfigError(f"reasoning.effort: must be one of {', '.join(REASONING_EFFORTS)} (got {self.effort!r}).")
        if self.thinking_budget_tokens is not None and self.thinking_budget_tokens < 1:
            raise ConfigError(
                f"reasoning.thinking_budget_tokens: must be >= 1 (got {self.thinking_budget_tokens})."
            )


class Reasoning:
    """One call with the provider's reasoning control set; the backend passes it through."""

    name = "reasoning"

    def __init__(self, config: ReasoningConfig) -> None:
        self.config = config

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """One call with n = 1 and the effort or thinking budget applied."""
        asked = params.replace(
            n=1,
            reasoning_effort=self.config.effort,
            thinking_budget_tokens=self.config.thinking_budget_tokens,
        )
        return await single_sample(self.name, backend, messages, asked, self.config.answer_type)
