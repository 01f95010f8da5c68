"""`chain_of_thought`: ask the model to reason step by step, then extract the final answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.llm import Backend, GenerationParams, Message
from core.errors import ConfigError
from strategies.base import StrategyResult, with_instruction
from strategies.direct import single_sample
from strategies.extraction import AnswerType, check_answer_type

STEP_BY_STEP = (
    "Think step by step. Then give the final answer on its own line, written as 'Answer: <answer>'."
)


@dataclass(frozen=True, slots=True)
class ChainOfThoughtConfig:
    """Settings of `chain_of_thought`: how to read the answer and the instruction appended."""

    answer_type: AnswerType = "text"
    instruction: str = STEP_BY_STEP

    def __post_init__(self) -> None:
        check_answer_type(self.answer_type)
        if not self.instruction.strip():
            raise ConfigError("chain_of_thought.instruction: must not be empty; omit it for the default.")


class ChainOfThought:
    """One call with a step-by-step instruction appended to the last user message."""

    name = "chain_of_thought"

    def __init__(self, config: ChainOfThoughtConfig | None = None) -> None:
        self.config = config or ChainOfThoughtConfig()

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """One call with n = 1; the answer is extracted from the reasoning's last line."""
        prompt = with_instruction(messages, self.config.instruction)
        return await single_sample(self.name, backend, prompt, params.replace(n=1), self.config.answer_type)
