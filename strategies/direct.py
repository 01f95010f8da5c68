"""`direct`: one completion, as the tier's settings ask; the cheapest strategy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.llm import Backend, GenerationParams, Message
from strategies.base import Recorder, StrategyResult
from strategies.extraction import AnswerType, check_answer_type


@dataclass(frozen=True, slots=True)
class DirectConfig:
    """Settings of `direct`: only how to read the answer."""

    answer_type: AnswerType = "text"

    def __post_init__(self) -> None:
        check_answer_type(self.answer_type)


class Direct:
    """Ask once and return the reply; confidence is unknown (None)."""

    name = "direct"

    def __init__(self, config: DirectConfig | None = None) -> None:
        self.config = config or DirectConfig()

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """One call with n = 1."""
        return await single_sample(self.name, backend, messages, params.replace(n=1), self.config.answer_type)


async def single_sample(
    name: str, backend: Backend, messages: Sequence[Message], params: GenerationParams, answer_type: AnswerType
) -> StrategyResult:
    """Run one call and wrap its first completion as a StrategyResult."""
    recorder = Recorder(answer_type)
    sample = (await recorder.draw(backend, messages, params))[0]
    return StrategyResult(
        strategy=name,
        text=sample.text,
        answer=sample.answer,
        confidence=None,
        samples_used=1,
        samples=(sample,),
        calls=tuple(recorder.calls),
        latency_s=recorder.elapsed(),
    )
