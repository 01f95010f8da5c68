"""What every strategy is and returns: options that are also router.yaml's schema, one `run`, and
the bookkeeping they share.

A strategy is a frozen pydantic model: its fields are the options a tier's `strategy:` section
takes, validated when router.yaml loads, and its methods answer every question the rest of the
router asks about it (how many samples, how many extra output tokens, whether it can stream, what
to call it), so no other layer needs to know the concrete strategies. `strategies.registry` lists
them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.errors import BackendBadResponse, BackendError
from core.llm import NOTHING_RELAYED, Backend, Completion, GenerationParams, Message, Relayed, with_text_appended
from strategies.extraction import AnswerType, extract_answer
from strategies.structured import StructuredForm, canonical_json, canonical_tool_calls, structured_form

# A problem found in a strategy's options: the path below `strategy` and what to do about it.
StrategyProblem = tuple[tuple[str, ...], str]


@dataclass(frozen=True, slots=True)
class Sample:
    """One completion with its extracted answer."""

    text: str
    answer: str | None
    mean_logprob: float | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    relayed: Relayed = NOTHING_RELAYED


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One backend call: what was asked, what came back, what it cost, and which stage made it."""

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

    @property
    def chosen(self) -> Sample | None:
        """The sample the client gets: the first with the chosen text and answer (tool-call answers share text "")."""
        return next((s for s in self.samples if s.text == self.text and s.answer == self.answer), None)

    @property
    def finish_reason(self) -> str:
        """The finish reason of the chosen sample."""
        chosen = self.chosen
        return chosen.finish_reason if chosen is not None else "stop"

    @property
    def tool_calls(self) -> tuple[Mapping[str, Any], ...] | None:
        """The tool calls of the chosen sample, as that sample made them (ids included)."""
        chosen = self.chosen
        return chosen.tool_calls if chosen is not None else None

    @property
    def relayed(self) -> Relayed:
        """What the chosen sample's upstream answer holds for the client unread (audio, logprobs...)."""
        chosen = self.chosen
        return chosen.relayed if chosen is not None else NOTHING_RELAYED


@dataclass(frozen=True, slots=True)
class OneCall:
    """The single backend call a one-call strategy makes, so the executor can stream it."""

    messages: Sequence[Message]
    params: GenerationParams


def with_instruction(messages: Sequence[Message], instruction: str) -> list[Message]:
    """Copy `messages`, appending `instruction` to the last user message (or adding one)."""
    copied = list(messages)
    for index in range(len(copied) - 1, -1, -1):
        if copied[index]["role"] == "user":
            copied[index] = with_text_appended(copied[index], instruction)
            return copied
    copied.append(Message(role="user", content=instruction))
    return copied


class Recorder:
    """Collects calls and samples while a strategy runs, and times it.

    Each sample's answer is what a vote counts: the tier's `answer_type` read from the text, or, when
    the call asks for tool calls or JSON (`form`, from the call's client fields), the canonical
    structured answer (strategies.structured).
    """

    def __init__(self, answer_type: AnswerType, form: StructuredForm | None = None) -> None:
        self.answer_type = answer_type
        self.form = form
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
        except asyncio.CancelledError as cancelled:  # the client left: earlier rounds were paid for all the same
            cancelled.spent_calls = (*self.calls, *getattr(cancelled, "spent_calls", ()))  # type: ignore[attr-defined]
            raise
        if not completions:
            raise BackendBadResponse("the backend returned no completions; the upstream answer is unusable.")
        self.calls.append(CallRecord.from_completions(completions, params.n))
        drawn = [
            Sample(c.text, self.answer_of(c), c.mean_logprob, c.finish_reason, c.tool_calls, c.relayed)
            for c in completions
        ]
        self.samples.extend(drawn)
        return drawn

    def answer_of(self, completion: Completion) -> str | None:
        """The answer a vote counts for `completion`."""
        legacy = completion.relayed.message.get("function_call")  # the deprecated form of one tool call
        calls = completion.tool_calls or ((({"function": legacy}),) if isinstance(legacy, Mapping) else None)
        if self.form == "tool_calls" and calls:
            return canonical_tool_calls(calls)
        if self.form is not None:
            structured = canonical_json(completion.text)
            if structured is not None or self.form == "json":
                return structured
        return extract_answer(completion.text, self.answer_type)

    @classmethod
    def for_call(cls, answer_type: AnswerType, params: GenerationParams) -> Recorder:
        """A recorder for calls made with `params`: its answers are structured when the client's fields ask for it."""
        return cls(answer_type, structured_form(params.extra))

    @classmethod
    def continuing(cls, answer_type: AnswerType, params: GenerationParams, previous: StrategyResult) -> Recorder:
        """A recorder that already holds `previous`'s samples and calls, to draw more and vote again."""
        recorder = cls.for_call(answer_type, params)
        recorder.samples.extend(previous.samples)
        recorder.calls.extend(previous.calls)
        return recorder

    def elapsed(self) -> float:
        """Seconds since the recorder was made."""
        return time.perf_counter() - self.started

    def single(self, name: str, sample: Sample, confidence: float | None = None) -> StrategyResult:
        """The result of a strategy whose answer is `sample`, with every call recorded so far."""
        return StrategyResult(
            strategy=name,
            text=sample.text,
            answer=sample.answer,
            confidence=confidence,
            samples_used=len(self.samples),
            samples=(sample,),
            calls=tuple(self.calls),
            latency_s=self.elapsed(),
        )


class Strategy(BaseModel):
    """A compute strategy: its fields are its router.yaml options; `run` spends them on one backend.

    Subclasses declare `type: Literal["name"] = "name"` and override what differs from a plain
    single call. Options are strict and frozen: a YAML string never becomes a number, and a
    strategy can be shared by every request of a policy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: str
    answer_type: AnswerType = "text"

    def measures_confidence(self) -> bool:
        """Whether a run's confidence says anything, so that escalation can act on it."""
        return False

    def handles_structured_answers(self) -> bool:
        """Whether a run still means what it says when answers are tool calls or JSON (else one direct call answers)."""
        return True

    def max_samples(self) -> int:
        """Completions one run asks for at most (cost estimates price each as a call)."""
        return 1

    def extra_output_tokens(self) -> int:
        """Output tokens a run is expected to spend beyond the answer itself (thinking)."""
        return 0

    def describe(self) -> str:
        """A short human description, e.g. 'self_consistency n=5, chain of thought'."""
        return self.type

    def problems(self, *, backend: str, max_tokens: int) -> Iterator[StrategyProblem]:
        """Checks that need the tier (its backend kind and max_tokens); none by default."""
        return iter(())

    def prepare(self, params: GenerationParams, *, tier_max_tokens: int) -> GenerationParams:
        """The base call settings this strategy needs, from what the client and tier allow."""
        return params

    def one_call(self, messages: Sequence[Message], params: GenerationParams) -> OneCall | None:
        """The one call this strategy makes, or None when it makes several (then it cannot stream)."""
        return OneCall(messages, params.replace(n=1))

    async def run(self, backend: Backend, messages: Sequence[Message], params: GenerationParams) -> StrategyResult:
        """Answer `messages`; `params` are the tier's base settings (max_tokens, timeout...)."""
        call = self.one_call(messages, params)
        if call is None:  # pragma: no cover - multi-call strategies override run
            raise NotImplementedError(f"{type(self).__name__} makes several calls and must define run()")
        recorder = Recorder.for_call(self.answer_type, call.params)
        sample = (await recorder.draw(backend, call.messages, call.params))[0]
        return recorder.single(self.type, sample)

    async def answers(
        self, backend: Backend, messages: Sequence[Message], params: GenerationParams, n: int
    ) -> tuple[StrategyResult, ...]:
        """`n` independent answers (a client's `n`), each this strategy's, every call accounted once.

        A one-call strategy asks its call for n completions (the prompt is paid once); any other
        runs n times side by side. The first result carries the calls of the one-call case.
        """
        call = self.one_call(messages, params)
        if n == 1 or call is None:
            runs = await asyncio.gather(*(self.run(backend, messages, params) for _ in range(n)), return_exceptions=True)
            failures = [run for run in runs if isinstance(run, BaseException)]
            if failures:
                error = failures[0]
                if isinstance(error, BackendError):  # the runs that finished were paid for
                    done = [call for run in runs if isinstance(run, StrategyResult) for call in run.calls]
                    error.spent_calls = (*done, *error.spent_calls)
                raise error
            return tuple(run for run in runs if isinstance(run, StrategyResult))
        recorder = Recorder.for_call(self.answer_type, call.params)
        samples = await recorder.draw(backend, call.messages, call.params.replace(n=n))
        first = recorder.single(self.type, samples[0])
        rest = (dataclasses.replace(first, text=s.text, answer=s.answer, samples=(s,), calls=()) for s in samples[1:])
        return (first, *rest)
