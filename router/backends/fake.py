"""A deterministic Backend for tests and demos: scripted replies, countable tokens, optional faults."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.llm import (
    NOTHING_RELAYED,
    Relayed,
    Completion,
    GenerationParams,
    Message,
    TokenPrice,
    Usage,
    validate_messages,
)
from core.errors import BackendError, ConfigError


@dataclass(frozen=True, slots=True)
class FakeReply:
    """One scripted completion."""

    text: str
    mean_logprob: float | None = None
    finish_reason: str = "stop"
    tool_calls: tuple[Mapping[str, Any], ...] | None = None  # then finish_reason is "tool_calls"
    relayed: Relayed = NOTHING_RELAYED  # what the answer holds beside text (audio, a legacy function_call...)


@dataclass(frozen=True, slots=True)
class FakeCall:
    """What the fake backend was asked, and what it answered, for assertions in tests."""

    messages: tuple[Message, ...]
    params: GenerationParams
    completions: tuple[Completion, ...]


ReplyFunction = Callable[[Sequence[Message], GenerationParams, int], "str | FakeReply"]


def count_words(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


class FakeBackend:
    """Answers from a script, counting one token per word, so tests can check every sum by hand.

    `replies` is either a sequence, consumed in order across all completions of all calls and
    cycled when used up, or a function `(messages, params, index) -> str | FakeReply` where
    `index` counts completions since construction. Input tokens are the words of all message
    contents; output tokens are the words of the reply (at least 1). `failures` are raised, one
    per call, before any reply is given; `delay_s` is slept on every call.
    """

    def __init__(
        self,
        replies: Sequence[str | FakeReply] | ReplyFunction = ("ok",),
        *,
        model: str = "fake",
        price: TokenPrice | None = None,
        delay_s: float = 0.0,
        failures: Sequence[BackendError] = (),
    ) -> None:
        if not callable(replies) and len(replies) == 0:
            raise ConfigError("FakeBackend.replies: give at least one scripted reply.")
        if delay_s < 0:
            raise ConfigError(f"FakeBackend.delay_s: must be >= 0 (got {delay_s}).")
        self.model = model
        self.price = price or TokenPrice()
        self.delay_s = delay_s
        self.calls: list[FakeCall] = []
        self._replies = replies
        self._cycle: Iterator[str | FakeReply] | None = (
            None if callable(replies) else itertools.cycle(replies)
        )
        self._failures = list(failures)
        self._index = 0

    def _next_reply(self, messages: Sequence[Message], params: GenerationParams) -> FakeReply:
        if self._cycle is not None:
            reply = next(self._cycle)
        else:
            function: ReplyFunction = self._replies  # type: ignore[assignment]
            reply = function(messages, params, self._index)
        self._index += 1
        return reply if isinstance(reply, FakeReply) else FakeReply(reply)

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        """Return `params.n` scripted completions, or raise the next scripted failure."""
        validate_messages(messages)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self._failures:
            raise self._failures.pop(0)
        input_tokens = sum(count_words(message["content"]) for message in messages)
        completions: list[Completion] = []
        for index in range(params.n):
            reply = self._next_reply(messages, params)
            words = reply.text.split()[: params.max_tokens]
            text = reply.text if len(reply.text.split()) <= params.max_tokens else " ".join(words)
            finish = reply.finish_reason if len(words) == len(reply.text.split()) else "length"
            if reply.tool_calls:
                finish = "tool_calls"
            usage = Usage(input_tokens if index == 0 else 0, max(1, len(words)))
            completions.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    usage=usage,
                    cost_usd=self.price.input_cost(usage.input_tokens)
                    + self.price.output_cost(usage.output_tokens),
                    latency_s=self.delay_s,
                    mean_logprob=reply.mean_logprob if params.logprobs else None,
                    model=self.model,
                    tool_calls=reply.tool_calls,
                    relayed=reply.relayed,
                )
            )
        self.calls.append(FakeCall(tuple(messages), params, tuple(completions)))
        return completions
