"""What the sampling strategies share: n samples at a temperature, optional chain of thought, a vote,
and `extend` to draw more and vote again over all of them (what escalation's more_samples uses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field, model_validator

from core.llm import Backend, GenerationParams, Message
from strategies.base import OneCall, Recorder, Strategy, StrategyResult, with_instruction
from strategies.chain_of_thought import STEP_BY_STEP
from strategies.structured import structured_form
from strategies.voting import Vote


class Sampling(Strategy):
    """n sampled answers at `temperature`; confidence is the chosen answer's agreement."""

    n: int = Field(ge=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    chain_of_thought: bool = False

    @model_validator(mode="after")
    def _samples_can_differ(self) -> Sampling:
        if self.n > 1 and self.temperature == 0:
            raise ValueError(
                f"temperature 0 makes all {self.n} samples identical; set a temperature such as 0.7, or n: 1"
            )
        return self

    def measures_confidence(self) -> bool:
        """True: the chosen answer's agreement."""
        return True

    def max_samples(self) -> int:
        """n."""
        return self.n

    def describe(self) -> str:
        """e.g. 'self_consistency n=5, chain of thought'."""
        cot = ", chain of thought" if self.chain_of_thought else ""
        return f"{self.type} n={self.n}{cot}"

    def one_call(self, messages: Sequence[Message], params: GenerationParams) -> OneCall | None:
        """None: a vote needs every sample before it can answer."""
        return None

    def prompt(self, messages: Sequence[Message], params: GenerationParams) -> list[Message]:
        """The messages each sample is drawn from: no written-out reasoning when the answer must be a
        tool call or JSON (it would be the answer's text, and the vote is over the calls or the JSON)."""
        structured = structured_form(params.extra) is not None
        return with_instruction(messages, STEP_BY_STEP) if self.chain_of_thought and not structured else list(messages)

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Draw up to n samples and choose."""
        draw = Draw(backend, self.prompt(messages, params), params.replace(temperature=self.temperature))
        return await self.sample(draw, Recorder.for_call(self.answer_type, params), self.n, 0.0)

    async def extend(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: GenerationParams,
        previous: StrategyResult,
        extra: int,
    ) -> StrategyResult:
        """Draw up to `extra` more samples (same rules) and choose again over old and new together."""
        recorder = Recorder.continuing(self.answer_type, params, previous)
        draw = Draw(backend, self.prompt(messages, params), params.replace(temperature=self.temperature))
        return await self.sample(draw, recorder, len(previous.samples) + extra, previous.latency_s)

    async def sample(self, draw: Draw, recorder: Recorder, target: int, earlier_latency_s: float) -> StrategyResult:
        """Draw until `recorder` holds `target` samples (or the strategy stops early), then choose."""
        raise NotImplementedError  # pragma: no cover - each sampling strategy defines it


@dataclass(frozen=True, slots=True)
class Draw:
    """Where a sampling strategy draws from: the backend, the prompt its samples answer, the sampling settings."""

    backend: Backend
    prompt: list[Message]
    params: GenerationParams

    async def into(self, recorder: Recorder, n: int, **changes: object) -> None:
        """One call for `n` samples, recorded."""
        await recorder.draw(self.backend, self.prompt, self.params.replace(n=n, **changes))


def voted_result(
    name: str, recorder: Recorder, vote: Vote, stop_reason: str, extra_latency_s: float = 0.0
) -> StrategyResult:
    """Wrap a vote as a result: the text (and tool calls) are the first sample that gave the winning answer."""
    samples = tuple(recorder.samples)
    chosen = next((s for s in samples if vote.answer is not None and s.answer == vote.answer), samples[0])
    return StrategyResult(
        strategy=name,
        text=chosen.text,
        answer=vote.answer,
        confidence=vote.agreement,
        samples_used=len(samples),
        samples=samples,
        calls=tuple(recorder.calls),
        latency_s=recorder.elapsed() + extra_latency_s,
        stop_reason=stop_reason,
    )
