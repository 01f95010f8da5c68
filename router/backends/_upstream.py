"""What the HTTP backends (openai_http, litellm_backend) share: retries, error texts, reading a chat completion.

Error mapping (the proxy turns these into status codes in one place):

- no answer within `timeout_s`                         -> BackendTimeout (not retried: it already cost that long)
- 429 on every attempt                                 -> BackendRateLimited
- 5xx or a connection failure on every attempt         -> BackendUnavailable
- another 4xx (bad key, unknown model, bad request)    -> BackendUnavailable (not retried)
- a body that is not a usable chat completion          -> BackendBadResponse (not retried)

Retries wait `min(backoff_max_s, backoff_base_s * 2**k)` with equal jitter (half fixed, half
random), or the upstream's Retry-After when that is longer (still capped). Streams are retried only
until they open. A hand-written loop rather than tenacity: it is a dozen lines, needs no new
dependency, and reading Retry-After from the failure is simpler here than in a tenacity wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import (
    BackendBadResponse,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
)
from core.llm import (
    NOTHING_RELAYED, Completion, GenerationParams, Message, Relayed, Usage, estimate_stream_usage, split_evenly,
)
from strategies import CallRecord

logger = logging.getLogger("router.backends")

T = TypeVar("T")
CallCost = Callable[[int, int], tuple[float, float]]


class Retry(Exception):
    """An attempt failed in a way worth another try; `final` is raised when no attempt is left."""

    def __init__(self, final: BackendError, retry_after: str | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


def check_retry_settings(prefix: str, max_attempts: int, backoff_base_s: float, backoff_max_s: float) -> None:
    """Raise ConfigError naming the field unless the retry settings make sense."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"{prefix}.max_attempts: must be >= 1 (got {max_attempts!r}).")
    if backoff_base_s < 0 or backoff_max_s < backoff_base_s:
        raise ConfigError(
            f"{prefix}.backoff_base_s/backoff_max_s: need 0 <= backoff_base_s <= backoff_max_s "
            f"(got {backoff_base_s}, {backoff_max_s})."
        )


@dataclass(frozen=True, slots=True)
class Upstream:
    """How a backend calls one upstream model: the retry loop, and our error for each way a call fails."""

    model: str
    api_base: str | None
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    rng: random.Random

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it returns, raises one of our errors, or raises `Retry` on the last attempt."""
        for number in range(1, self.max_attempts + 1):
            try:
                return await attempt()
            except Retry as failure:
                if number >= self.max_attempts:
                    raise failure.final from failure.__cause__
                delay = self.backoff(number, failure.retry_after)
                logger.warning(
                    "%s failed (attempt %d of %d): %s; retrying in %.2f s.",
                    self.model, number, self.max_attempts, failure.final, delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover

    def backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), self.backoff_max_s))
            except ValueError:
                pass  # an HTTP-date Retry-After; the exponential delay is a fine substitute
        return delay

    def timed_out(self, timeout_s: float) -> BackendTimeout:
        """The error for no answer within `timeout_s`."""
        return BackendTimeout(
            f"{self.model} did not answer within {timeout_s:g} s; raise the tier's timeout_s or try again later."
        )

    def unreachable(self, detail: str) -> Retry:
        """A connection failure: retried, then BackendUnavailable."""
        where = f" at {self.api_base}" if self.api_base else ""
        return Retry(
            BackendUnavailable(
                f"cannot reach {self.model}{where} after {self.max_attempts} attempts; check api_base "
                f"and that the server is up. Detail: {detail}"
            )
        )

    def broke_off(
        self, detail: str, messages: Sequence[Message], pieces: Sequence[str], cost: CallCost, latency_s: float
    ) -> BackendUnavailable:
        """A stream that failed after it opened (not retried: the client may have part of the text).

        The pieces already sent were paid for: the error carries them as a spent call, counted by
        core.llm's stream rule (the upstream never sent its usage), so the ledger records them.
        """
        error = BackendUnavailable(f"{self.model} broke off its stream; try again. Detail: {detail}")
        if pieces:
            usage = estimate_stream_usage(messages, pieces)
            spent = sum(cost(usage.input_tokens, usage.output_tokens))
            error.spent_calls = (
                CallRecord(self.model, 1, 1, usage.input_tokens, usage.output_tokens, spent, latency_s),
            )
        return error

    def status(self, status: int | None, detail: str, retry_after: str | None = None) -> Retry | BackendError:
        """What to raise for an HTTP error status: a `Retry` (429, 5xx) or our error at once (other 4xx)."""
        if status == 429:
            return Retry(
                BackendRateLimited(
                    f"{self.model} is rate-limiting requests (HTTP 429) after {self.max_attempts} attempts; "
                    f"slow down or raise the provider quota. Upstream said: {detail}"
                ),
                retry_after,
            )
        if status is not None and status >= 500:
            return Retry(
                BackendUnavailable(
                    f"{self.model} failed with HTTP {status} after {self.max_attempts} attempts; try again "
                    f"later or route to a fallback tier. Upstream said: {detail}"
                ),
                retry_after,
            )
        return BackendUnavailable(
            f"{self.model} refused the request (HTTP {status}); check the model name, API key and "
            f"request parameters. Upstream said: {detail}"
        )

    def bad_response(self, what: str) -> BackendBadResponse:
        """The error for an answer that cannot be used; `what` says what was wrong with it."""
        return BackendBadResponse(
            f"{self.model} {what}; check that api_base points at an OpenAI-compatible server that reports token usage."
        )

    def completions(self, body: Any, cost: CallCost, latency_s: float) -> list[Completion]:
        """The n completions of one chat-completion body (a dict, or LiteLLM's objects), shared out per core.llm.

        `cost(input_tokens, output_tokens)` prices the call's totals as (input part, output part);
        the output part is shared in proportion to each completion's tokens.
        """
        choices = field(body, "choices")
        usage = field(body, "usage")
        input_tokens, output_tokens = field(usage, "prompt_tokens"), field(usage, "completion_tokens")
        if not isinstance(choices, list) or not choices:
            raise self.bad_response("returned no choices")
        if not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
            raise self.bad_response("returned no token usage, so its cost cannot be accounted")
        texts = []
        for index, choice in enumerate(choices):
            text = field(field(choice, "message"), "content")
            if text is not None and not isinstance(text, str):
                raise self.bad_response(f"returned choices[{index}].message.content of type {type(text).__name__}, not text")
            texts.append(text or "")
        call_input, call_output = cost(input_tokens, output_tokens)
        model = str(field(body, "model") or self.model)
        return [
            Completion(
                text=text,
                finish_reason=str(field(choice, "finish_reason") or "stop"),
                usage=Usage(input_tokens if index == 0 else 0, share),
                cost_usd=(call_input if index == 0 else 0.0) + (call_output * share / output_tokens if output_tokens else 0.0),
                latency_s=latency_s,
                mean_logprob=mean_logprob(choice),
                model=model,
                tool_calls=tool_calls_of(field(choice, "message")),
                relayed=relayed_of(choice),
            )
            for index, (choice, text, share) in enumerate(
                zip(choices, texts, split_evenly(output_tokens, len(choices)), strict=True)
            )
        ]

    def stream_usage(
        self, input_tokens: object, output_tokens: object, messages: Sequence[Message], pieces: Sequence[str]
    ) -> Usage:
        """The upstream's counts for a stream when it sent them, else core.llm's estimate (logged)."""
        if isinstance(input_tokens, int) and isinstance(output_tokens, int):
            return Usage(input_tokens, output_tokens)
        usage = estimate_stream_usage(messages, pieces)
        logger.warning(
            "%s streamed no token usage; billing an estimate of %d input and %d output tokens "
            "(enable stream_options.include_usage on the upstream for exact counts).",
            self.model, usage.input_tokens, usage.output_tokens,
        )
        return usage


def field(value: Any, name: str) -> Any:
    """`value[name]` of a JSON object or `value.name` of a LiteLLM object; None when absent."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def mean_logprob(choice: Any) -> float | None:
    """Mean token log-probability of a choice, when the provider returned logprobs."""
    content = field(field(choice, "logprobs"), "content")
    if not content:
        return None
    values = [field(token, "logprob") for token in content]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def tool_calls_of(message: Any) -> tuple[dict[str, Any], ...] | None:
    """The `tool_calls` of a reply message as plain JSON objects (LiteLLM's are pydantic models); None if none."""
    calls = field(message, "tool_calls")
    if not calls:
        return None
    return tuple(_plain(call) for call in calls)


# Reply message fields the client gets as the upstream sent them (content and tool_calls are read).
RELAYED_MESSAGE_FIELDS = ("audio", "function_call", "refusal", "annotations")


def relayed_of(choice: Any) -> Relayed:
    """The parts of a choice the router passes on unread: the message's audio, function_call... and the logprobs."""
    message = field(choice, "message")
    fields = {name: _plain(value) for name in RELAYED_MESSAGE_FIELDS if (value := field(message, name))}
    logprobs = field(choice, "logprobs")
    if not fields and not logprobs:
        return NOTHING_RELAYED
    return Relayed(fields, _plain(logprobs) if logprobs else None)


def _plain(value: Any) -> Any:
    """A JSON value from a JSON value or one of LiteLLM's pydantic objects."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


class StreamedReply:
    """Reassembles what a stream's choice carries beside its text: tool-call deltas (by `index`: id and
    name once, arguments in pieces), a legacy `function_call`, `audio`, a `refusal`, and `logprobs`."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._function: dict[str, str] = {}
        self._audio: dict[str, Any] = {}
        self._refusal: list[str] = []
        self._logprobs: list[Any] = []

    def add(self, choice: Any) -> None:
        """Fold one chunk's choice in (JSON objects or LiteLLM's models)."""
        delta = field(choice, "delta")
        self._add_calls(field(delta, "tool_calls"))
        _join_pieces(self._function, field(delta, "function_call"), ("name", "arguments"))
        audio = field(delta, "audio")
        _join_pieces(self._audio, audio, ("data", "transcript"))
        for key in ("id", "expires_at"):
            if field(audio, key) is not None:
                self._audio[key] = field(audio, key)
        refusal = field(delta, "refusal")
        if isinstance(refusal, str):
            self._refusal.append(refusal)
        tokens = field(field(choice, "logprobs"), "content")
        if tokens:
            self._logprobs.extend(_plain(token) for token in tokens)

    def _add_calls(self, deltas: Any) -> None:
        for delta in deltas or ():
            index = field(delta, "index")
            call = self._calls.setdefault(
                index if isinstance(index, int) else len(self._calls),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] = field(delta, "id") or call["id"]
            call["type"] = field(delta, "type") or call["type"]
            _join_pieces(call["function"], field(delta, "function"), ("name", "arguments"))

    def tool_calls(self) -> tuple[dict[str, Any], ...] | None:
        """The whole calls in index order, or None when none came."""
        return tuple(self._calls[index] for index in sorted(self._calls)) or None

    def relayed(self) -> Relayed:
        """The rest, as a whole answer would carry it."""
        message = {
            name: value
            for name, value in (
                ("function_call", self._function), ("audio", self._audio), ("refusal", "".join(self._refusal)),
            )
            if value
        }
        if not message and not self._logprobs:
            return NOTHING_RELAYED
        return Relayed(message, {"content": self._logprobs} if self._logprobs else None)


def _join_pieces(whole: dict[str, Any], piece: Any, keys: tuple[str, ...]) -> None:
    """Append the string `keys` of a streamed `piece` to `whole`'s."""
    for key in keys:
        value = field(piece, key)
        if isinstance(value, str):
            whole[key] = whole.get(key, "") + value


def openai_sampling(params: GenerationParams) -> dict[str, Any]:
    """The router's own OpenAI request fields of a call beside max_tokens and sampling temperatures:
    n, stop, logprobs, reasoning_effort (pass-through sends the client's fields instead)."""
    fields: dict[str, Any] = {}
    if params.n != 1:
        fields["n"] = params.n
    if params.stop:
        fields["stop"] = list(params.stop)
    if params.logprobs:
        fields["logprobs"] = True
    if params.reasoning_effort is not None:
        fields["reasoning_effort"] = params.reasoning_effort
    return fields
