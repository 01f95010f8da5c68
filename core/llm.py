"""The backend seam: one async method that turns messages into n completions.

Accounting rule for a call that returns n completions (every backend follows it, so that
summing over the list always gives the call's exact totals):

- The prompt is billed once per call, so the call's input tokens, and the input part of its
  cost, are put on the FIRST completion; the others carry 0 input tokens.
- Each completion carries its own output tokens and their cost. When a provider reports only
  the call's total output tokens, the total is split evenly (the first completions take the
  remainder), so the sum is still exact.
- `latency_s` is the wall time of the whole call, the same on every completion of it; add
  latencies per call, never per completion.
- A stream whose upstream sends no usage is still billed, from an estimate rather than an error
  (the client already has the text): input tokens are `estimate_tokens` of the message contents
  together, output tokens the larger of the number of text pieces received (a server that streams
  token by token sends one piece per token) and `estimate_tokens` of the text (one that batches
  tokens sends fewer pieces), and at least 1. The backend logs a warning when it estimates. (No
  tokenizer: LiteLLM's token_counter fetches some from the Hugging Face hub. LiteLLM fills a missing
  stream usage with that count itself before its backend sees the stream; docs/backends.md.)

Prices: a `TokenPrice` is the one resolved price of a tier, computed by the policy
(policies/pricing.py) and handed to its backend unchanged. A backend that measures how long the
model was busy (the local one) bills `gpu_hour_usd` for that time when it is set; every other
backend bills the per-million prices, which for an hourly price are its per-token estimate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, get_args, runtime_checkable

from core.errors import ConfigError

ReasoningEffort = Literal["minimal", "low", "medium", "high"]
REASONING_EFFORTS: tuple[str, ...] = get_args(ReasoningEffort)


class Message(TypedDict):
    """One chat message: `content` is its text, which is what the router reads (classifier, strategies).

    `wire`, when present, is the message exactly as the client sent it (content parts, images,
    `tool_calls` with `content: null`, `tool_call_id`...); backends that speak OpenAI's format send
    it instead of role and text, so nothing the client wrote is lost on the way upstream.
    """

    role: str
    content: str
    wire: NotRequired[Mapping[str, Any]]


def wire_message(message: Message) -> dict[str, Any]:
    """The message as an OpenAI-format backend sends it: the client's own form when there is one."""
    sent = message.get("wire")
    if sent is None:
        return {"role": message["role"], "content": message["content"]}
    return dict(sent)


def with_text_appended(message: Message, text: str) -> Message:
    """A copy of `message` with `text` appended to its text, in its wire form too (a new text part for parts)."""
    copied = Message(role=message["role"], content=f"{message['content'].rstrip()}\n\n{text}")
    sent = message.get("wire")
    if sent is not None:
        content = sent.get("content")
        if isinstance(content, list):
            wire_content: Any = [*content, {"type": "text", "text": text}]
        elif isinstance(content, str) and content.strip():
            wire_content = f"{content.rstrip()}\n\n{text}"
        else:
            wire_content = text
        copied["wire"] = {**sent, "content": wire_content}
    return copied


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """What one backend call should produce; validated on construction."""

    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    reasoning_effort: ReasoningEffort | None = None
    thinking_budget_tokens: int | None = None
    logprobs: bool = False
    timeout_s: float = 60.0
    # Client fields sent upstream verbatim (tools, response_format, seed, user...): the router does
    # not read them, and they win over what a backend would build from the fields above.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Pass-through: send the upstream only `extra` (what the client sent), none of the defaults above.
    verbatim: bool = False
    # HTTP headers of the upstream call, from the client: W3C trace context (traceparent, tracestate).
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"generation.n: must be an integer >= 1 (got {self.n!r}).")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ConfigError(f"generation.max_tokens: must be an integer >= 1 (got {self.max_tokens!r}).")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"generation.temperature: must be between 0 and 2 (got {self.temperature!r}).")
        if not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"generation.top_p: must be in [0, 1] (got {self.top_p!r}).")
        if not self.timeout_s > 0:
            raise ConfigError(f"generation.timeout_s: must be > 0 seconds (got {self.timeout_s!r}).")
        if isinstance(self.stop, str) or any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("generation.stop: must be a tuple of non-empty strings, e.g. ('\\n\\n',).")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ConfigError(
                f"generation.reasoning_effort: must be one of {', '.join(REASONING_EFFORTS)} "
                f"(got {self.reasoning_effort!r})."
            )
        if self.thinking_budget_tokens is not None:
            if self.reasoning_effort is not None:
                raise ConfigError(
                    "generation: set either reasoning_effort or thinking_budget_tokens, not both."
                )
            if isinstance(self.thinking_budget_tokens, bool) or self.thinking_budget_tokens < 1:
                raise ConfigError(
                    "generation.thinking_budget_tokens: must be an integer >= 1 "
                    f"(got {self.thinking_budget_tokens!r})."
                )

    def replace(self, **changes: object) -> GenerationParams:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts; see the module docstring for how a call's tokens are shared."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True, slots=True)
class Relayed:
    """What of an upstream answer the router does not read but the client gets as the upstream sent it."""

    # Reply message fields beside content and tool_calls: audio, function_call (legacy), refusal, annotations.
    message: Mapping[str, Any] = field(default_factory=dict)
    logprobs: Mapping[str, Any] | None = None  # the choice's logprobs object, when the client asked for them


NOTHING_RELAYED = Relayed()


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated answer with its share of the call's tokens and cost."""

    text: str
    finish_reason: str
    usage: Usage
    cost_usd: float
    latency_s: float
    mean_logprob: float | None
    model: str
    # OpenAI's `tool_calls` of the answer (finish_reason "tool_calls"); None when it called no tool.
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    relayed: Relayed = NOTHING_RELAYED


PriceSource = Literal["explicit", "config", "gpu_hour", "litellm", "free"]


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """A tier's price: USD per million input and output tokens, where it came from, and an hourly machine price.

    `source` is "explicit" (built in code), "config" (router.yaml's per-million prices), "gpu_hour"
    (router.yaml's hourly price, turned into per-token estimates through the throughput),
    "litellm" (LiteLLM's price map) or "free" (a local tier, or an own server, with no price).
    """

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    source: PriceSource = "explicit"
    gpu_hour_usd: float | None = None

    def __post_init__(self) -> None:
        if min(self.input_per_million, self.output_per_million, self.gpu_hour_usd or 0.0) < 0:
            raise ConfigError(
                "price: prices must be >= 0; use 0 for a machine you do not pay by use "
                f"(got input={self.input_per_million}, output={self.output_per_million}, "
                f"gpu_hour_usd={self.gpu_hour_usd})."
            )

    @property
    def input_per_token(self) -> float:
        """USD per input token."""
        return self.input_per_million / 1e6

    @property
    def output_per_token(self) -> float:
        """USD per output token."""
        return self.output_per_million / 1e6

    def input_cost(self, tokens: int) -> float:
        """USD for `tokens` prompt tokens."""
        return tokens * self.input_per_million / 1e6

    def output_cost(self, tokens: int) -> float:
        """USD for `tokens` generated tokens."""
        return tokens * self.output_per_million / 1e6

    def cost(self, input_tokens: int, output_tokens: int, busy_s: float | None = None) -> float:
        """USD for one call: its measured busy time at `gpu_hour_usd` when both are known, else its tokens."""
        if busy_s is not None and self.gpu_hour_usd is not None:
            return self.gpu_hour_usd * busy_s / 3600.0
        return self.input_cost(input_tokens) + self.output_cost(output_tokens)


@runtime_checkable
class Backend(Protocol):
    """Anything that can generate completions; the one seam between strategies and models."""

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        """Return up to `params.n` completions for `messages` (fewer only if the upstream gave fewer)."""
        ...


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that can also stream one completion: text deltas, then the whole Completion."""

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Yield text pieces as they come, then exactly one Completion with usage and cost."""
        ...


CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Tokens in `text` without a tokenizer: about 4 characters per token, rounded up."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_stream_usage(messages: Sequence[Message], pieces: Sequence[str]) -> Usage:
    """The usage of a stream that reported none (the module docstring's rule)."""
    prompt = estimate_tokens("".join(message["content"] for message in messages))
    output = max(sum(1 for piece in pieces if piece), estimate_tokens("".join(pieces)), 1)
    return Usage(prompt, output)


def split_evenly(total: int, parts: int) -> list[int]:
    """Split an integer total into `parts` integers that differ by at most one and sum to it."""
    if parts < 1:
        return []
    base, remainder = divmod(total, parts)
    return [base + (1 if i < remainder else 0) for i in range(parts)]


def validate_messages(messages: Sequence[Message]) -> None:
    """Raise ConfigError unless `messages` is a non-empty list of {role, content} string pairs."""
    if isinstance(messages, str | bytes) or len(messages) == 0:
        raise ConfigError("messages: must be a non-empty list of {'role': ..., 'content': ...} objects.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ConfigError(f"messages[{index}]: must be an object with 'role' and 'content'.")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            raise ConfigError(f"messages[{index}].role: must be a non-empty string such as 'user'.")
        if not isinstance(content, str):
            raise ConfigError(f"messages[{index}].content: must be a string.")
