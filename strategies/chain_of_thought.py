"""`chain_of_thought`: ask the model to reason step by step, then extract the final answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from core.llm import GenerationParams, Message
from strategies.base import OneCall, Strategy, with_instruction

STEP_BY_STEP = (
    "Think step by step. Then give the final answer on its own line, written as 'Answer: <answer>'."
)


class ChainOfThought(Strategy):
    """One call with a step-by-step instruction appended to the last user message."""

    type: Literal["chain_of_thought"] = "chain_of_thought"
    instruction: str = Field(default=STEP_BY_STEP, min_length=1)

    def one_call(self, messages: Sequence[Message], params: GenerationParams) -> OneCall:
        """The question with the instruction appended, n = 1."""
        return OneCall(with_instruction(messages, self.instruction), params.replace(n=1))
