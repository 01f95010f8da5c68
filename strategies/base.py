"""What every strategy returns, the protocol they share, and the bookkeeping they have in common."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.llm import Backend, Completion, GenerationParams, Message
from core.errors import BackendBadResponse, BackendError
from strategies.extraction import AnswerType, extract_answer


@dataclass(frozen=True, slots=True)
class Sample:
    """One completion with its extracted answer."""

    text: str
    answer: str | None
    mean_logprob: float | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One backend call: what was asked, what came back, and what it cost."""

    model: str
    n_requested: int
    n_returned: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    stage: str = ""

    @classmethod
    def from_completions(cls, completions: Sequence[Completion], n_requested: int, stage: str = "") -> CallRecord:
        """Sum a call's completions (the backend put each token and cent on exactly one of them)."""
        return cls(
            model=completions[0].model if completions else "",
            n_requested=n_requested,
            n_returned=len(completions),
            input_tokens=sum(c.usage.input_tokens for c in completions),
            output_tokens=sum(c.usage.output_tokens for c in completions),
            cost_usd=sum(c.cost_usd for c in completions),
            latency_s=max((c.latency_s for c in completions), default=0.0),
            stage=stage,
        )


class CallTotals:
    """Token and cost totals over a result's `calls`, shared by strategy and execution results."""

    __slots__ = ()
    calls: tuple[CallRecord, ...]

    @property
    def input_tokens(self) -> int:
        """Input tokens over all calls."""
        return sum(call.input_tokens for call in self.calls)

    @property
    def output_tokens(self) -> int:
        """Output tokens over all calls."""
        return sum(call.output_tokens for call in self.calls)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens over all calls."""
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        """USD over all calls."""
        return sum(call.cost_usd for call in self.calls)


@dataclass(frozen=True, slots=True)
class StrategyResult(CallTotals):
    """The final answer of a strategy and every sub-call that produced it."""

    strategy: str
    text: str
    answer: str | None
    confidence: float | None
    samples_used: int
    samples: tuple[Sample, ...]
    calls: tuple[CallRecord, ...]
    latency_s: float
    stop_reason: str = "done"
    stages: tuple[str, ...] = ()


@runtime_checkable
class Strategy(Protocol):
    """Spends a compute budget on one backend to answer one conversation."""

    name: str

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Answer `messages`; `params` are the tier's base settings (max_tokens, timeout...)."""
        ...


@runtime_checkable
class Extendable(Protocol):
    """A sampling strategy that can draw more samples and vote again over all of them."""

    async def extend(
        self,
        backend: Backend,
        messages: Sequence[Message],
        params: GenerationParams,
        previous: StrategyResult,
        extra: int,
    ) -> StrategyResult:
        """Draw `extra` more samples and return a result over the old and new ones together."""
        ...


def with_instruction(messages: Sequence[Message], instruction: str) -> list[Message]:
    """Copy `messages`, appending `instruction` to the last user message (or adding one)."""
    copied: list[Message] = [Message(role=m["role"], content=m["content"]) for m in messages]
    for message in reversed(copied):
        if message["role"] == "user":
            message["content"] = f"{message['content'].rstrip()}\n\n{instruction}"
            return copied
    copied.append(Message(role="user", content=instruction))
    return copied


class Recorder:
    """Collects calls and samples while a strategy runs, and times it."""

    def __init__(self, answer_type: AnswerType, stage: str = "") -> None:
        self.answer_type = answer_type
        self.stage = stage
        self.calls: list[CallRecord] = []
        self.samples: list[Sample] = []
        self.started = time.perf_counter()

    async def draw(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> list[Sample]:
        """One backend call; records its cost and returns its samples with extracted answers."""
        try:
            completions = await backend.generate(messages, params)
        except BackendError as error:
            error.spent_calls = (*self.calls, *error.spent_calls)  # earlier rounds were paid for
            raise
        if not completions:
            raise BackendBadResponse("the backend returned no completions; the upstream answer is unusable.")
        self.calls.append(CallRecord.from_completions(completions, params.n, self.stage))
        drawn = [
            Sample(c.text, extract_answer(c.text, self.answer_type), c.mean_logprob, c.finish_reason)
            for c in completions
        ]
        self.samples.extend(drawn)
        return drawn

    @classmethod
    def continuing(cls, answer_type: AnswerType, previous: StrategyResult) -> Recorder:
        """A recorder that already holds `previous`'s samples and calls, to draw more and vote again."""
        recorder = cls(answer_type)
        recorder.samples.extend(previous.samples)
        recorder.calls.extend(previous.calls)
        return recorder

    def elapsed(self) -> float:
        """Seconds since the recorder was made."""
        return time.perf_counter() - self.started
