"""`reasoning`: let the provider think, at a reasoning effort or within a thinking-token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from pydantic import Field

from core.llm import GenerationParams, Message, ReasoningEffort
from strategies.base import OneCall, Strategy, StrategyProblem

# Reasoning tokens assumed for cost estimates when a tier gives an effort level, not a budget.
REASONING_EFFORT_TOKENS = {"minimal": 256, "low": 1024, "medium": 4096, "high": 16384}


class Reasoning(Strategy):
    """One call with the provider's reasoning control set: an effort or a thinking budget (exactly one)."""

    type: Literal["reasoning"] = "reasoning"
    effort: ReasoningEffort | None = None
    # Providers with budgets (Anthropic, Gemini) refuse fewer than 1024 thinking tokens.
    thinking_budget_tokens: int | None = Field(default=None, ge=1024)

    def extra_output_tokens(self) -> int:
        """The thinking budget, or the tokens assumed for the effort level."""
        if self.thinking_budget_tokens is not None:
            return self.thinking_budget_tokens
        return REASONING_EFFORT_TOKENS[self.effort or "medium"]

    def describe(self) -> str:
        """'reasoning, effort high' or 'reasoning, thinking budget 2048 tokens'."""
        if self.thinking_budget_tokens is not None:
            return f"reasoning, thinking budget {self.thinking_budget_tokens} tokens"
        return f"reasoning, effort {self.effort}"

    def problems(self, *, backend: str, max_tokens: int) -> Iterator[StrategyProblem]:
        """Exactly one control; a provider with reasoning controls; room for an answer."""
        if (self.effort is None) == (self.thinking_budget_tokens is None):
            yield (), "give exactly one of effort (minimal, low, medium, high) or thinking_budget_tokens"
        if backend != "litellm":
            yield ("type",), (
                "reasoning needs backend: litellm and a provider with reasoning controls; "
                "use chain_of_thought for a local model"
            )
        if self.thinking_budget_tokens is not None and self.thinking_budget_tokens >= max_tokens:
            yield ("thinking_budget_tokens",), (
                f"must be < max_tokens ({max_tokens}): providers count thinking tokens "
                "against max_tokens; raise max_tokens"
            )

    def prepare(self, params: GenerationParams, *, tier_max_tokens: int) -> GenerationParams:
        """A thinking budget needs room for an answer after it: a client limit inside it gives way."""
        budget = self.thinking_budget_tokens
        if budget is not None and params.max_tokens <= budget:
            return params.replace(max_tokens=tier_max_tokens)
        return params

    def one_call(self, messages: Sequence[Message], params: GenerationParams) -> OneCall:
        """The question as asked, with the effort or thinking budget set, n = 1."""
        return OneCall(
            messages,
            params.replace(n=1, reasoning_effort=self.effort, thinking_budget_tokens=self.thinking_budget_tokens),
        )
