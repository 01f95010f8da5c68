"""A Backend for every provider LiteLLM speaks to, with retries, timeouts and honest costs.

Retries and the error mapping are router/backends/_upstream.py's, shared with the OpenAI-HTTP
backend; LiteLLM's and the OpenAI SDK's own retries are switched off so that this is the only
retry loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import BackendError, ConfigError
from core.llm import Completion, GenerationParams, Message, TokenPrice, validate_messages, wire_message
from policies.pricing import import_litellm
from router.backends._upstream import Retry, StreamedReply, Upstream, check_retry_settings, openai_sampling


async def close_shared_clients() -> None:
    """Close LiteLLM's cached HTTP clients; call once when the event loop that used them ends."""
    await import_litellm().close_litellm_async_clients()


def _upstream_error_type() -> type[Exception]:
    """The base class of every error LiteLLM raises for an upstream failure (OpenAI's APIError)."""
    import openai

    return openai.APIError


@dataclass(frozen=True, slots=True)
class LiteLLMSettings:
    """Where and how to call one LiteLLM model; the API key is named by env var, never stored.

    `price` None, or a price whose source is LiteLLM's map, means LiteLLM prices each response
    itself (`completion_cost`), which also knows cached-token and tiered rates.
    """

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    price: TokenPrice | None = None
    max_attempts: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("litellm.model: give a LiteLLM model name such as 'openai/gpt-4o-mini'.")
        check_retry_settings("litellm", self.max_attempts, self.backoff_base_s, self.backoff_max_s)


class LiteLLMBackend:
    """Calls `litellm.acompletion`; construction checks the key's env var and that a price is known."""

    def __init__(self, settings: LiteLLMSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._litellm = import_litellm()
        self._upstream = Upstream(
            settings.model, settings.api_base, settings.max_attempts, settings.backoff_base_s,
            settings.backoff_max_s, rng or random.Random(),
        )
        if settings.api_key_env is not None and not os.environ.get(settings.api_key_env):
            raise ConfigError(
                f"litellm.api_key_env: environment variable {settings.api_key_env} is not set; "
                "export it with the provider's API key, or remove api_key_env to use the provider default."
            )
        # A price read from LiteLLM's map is a flat estimate; LiteLLM prices each response better.
        self._price = settings.price if settings.price is not None and settings.price.source != "litellm" else None
        if self._price is None:
            try:
                self._litellm.get_model_info(settings.model)
            except self._litellm.exceptions.ModelNotMappedError:
                raise ConfigError(
                    f"litellm.price: LiteLLM has no price for model {settings.model!r}; give the tier "
                    "an explicit price per million input/output tokens (0 for a free local server)."
                ) from None
        supported = self._litellm.get_supported_openai_params(model=settings.model) or []
        self._native_n = "n" in supported

    def __repr__(self) -> str:
        return f"LiteLLMBackend(model={self.settings.model!r}, api_base={self.settings.api_base!r})"

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        """Return n completions; providers without `n` get n concurrent single calls."""
        validate_messages(messages)
        if params.n == 1 or self._native_n:
            return await self._generate_once(messages, params)
        single = params.replace(n=1)
        tasks = [asyncio.ensure_future(self._generate_once(messages, single)) for _ in range(params.n)]
        try:
            # gather raises the first failure as itself (a TaskGroup would wrap it in an ExceptionGroup).
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones; stops siblings of a failed call
        return [completion for result in results for completion in result]

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """Yield text deltas as the provider sends them, then one Completion with usage and cost (n = 1 only).

        Retries apply until the stream opens; a failure after that ends the stream with our error.
        """
        validate_messages(messages)
        if params.n != 1:
            raise ConfigError("litellm.stream: only n = 1 can be streamed.")
        litellm = self._litellm
        request = {**self._request(messages, params), "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        response = await self._call(request, params)
        parts: list[str] = []
        reply = StreamedReply()
        finish, model = "stop", self.settings.model
        input_tokens = output_tokens = None
        try:
            async with asyncio.timeout(params.timeout_s + 1.0):
                async for chunk in response:
                    model = str(getattr(chunk, "model", None) or model)
                    usage = getattr(chunk, "usage", None)
                    prompt_tokens = getattr(usage, "prompt_tokens", None)
                    if isinstance(prompt_tokens, int) and prompt_tokens > 0:  # the usage chunk, at the end
                        input_tokens, output_tokens = prompt_tokens, getattr(usage, "completion_tokens", None)
                    for choice in getattr(chunk, "choices", None) or ():
                        delta = getattr(choice, "delta", None)
                        text = getattr(delta, "content", None)
                        if isinstance(text, str) and text:
                            parts.append(text)
                            yield text
                        reply.add(choice)
                        if getattr(choice, "finish_reason", None):
                            finish = str(choice.finish_reason)
        except (TimeoutError, litellm.Timeout) as error:
            raise self._upstream.timed_out(params.timeout_s) from error
        except _upstream_error_type() as error:
            if parts:  # text was sent: no retry, and what it cost is accounted
                latency = time.perf_counter() - started
                raise self._upstream.broke_off(str(error), messages, parts, self._token_cost, latency) from error
            failure = self._classify(error)
            raise (failure.final if isinstance(failure, Retry) else failure) from error
        counted = self._upstream.stream_usage(input_tokens, output_tokens, messages, parts)
        cost = sum(self._token_cost(counted.input_tokens, counted.output_tokens))
        yield Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=counted,
            cost_usd=cost,
            latency_s=time.perf_counter() - started,
            mean_logprob=None,
            model=model,
            tool_calls=reply.tool_calls(),
            relayed=reply.relayed(),
        )

    def _request(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [wire_message(message) for message in messages],
            "timeout": params.timeout_s,
            "max_retries": 0,
            "num_retries": 0,
            # Drop what a provider does not take (e.g. temperature on o-series) instead of failing.
            "drop_params": True,
        }
        if not params.verbatim:
            request.update(max_tokens=params.max_tokens, **openai_sampling(params))
            self._thinking_or_sampling(request, params)
        request.update(params.extra)
        if params.headers:
            request["extra_headers"] = dict(params.headers)
        if self.settings.api_base is not None:
            request["api_base"] = self.settings.api_base
        if self.settings.api_key_env is not None:
            request["api_key"] = os.environ.get(self.settings.api_key_env, "")
        return request

    @staticmethod
    def _thinking_or_sampling(request: dict[str, Any], params: GenerationParams) -> None:
        """A thinking budget (Anthropic-style), or the sampling temperatures; never both."""
        if params.thinking_budget_tokens is not None:
            if params.max_tokens <= params.thinking_budget_tokens:
                raise ConfigError(
                    f"max_tokens ({params.max_tokens}) must be larger than thinking_budget_tokens "
                    f"({params.thinking_budget_tokens}); raise the tier's max_tokens."
                )
            request["thinking"] = {"type": "enabled", "budget_tokens": params.thinking_budget_tokens}
        else:
            # Anthropic rejects sampling settings while thinking; everyone else takes them.
            request["temperature"] = params.temperature
            request["top_p"] = params.top_p

    async def _generate_once(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        started = time.perf_counter()
        response = await self._call(self._request(messages, params), params)
        # LiteLLM fills a missing usage block with zeros; a real prompt is never 0 tokens.
        if not getattr(getattr(response, "usage", None), "prompt_tokens", None):
            raise self._upstream.bad_response("returned no token usage, so its cost cannot be accounted")
        cost = functools.partial(self._cost, response)
        return self._upstream.completions(response, cost, time.perf_counter() - started)

    async def _call(self, request: dict[str, Any], params: GenerationParams) -> Any:
        """`litellm.acompletion` with a timeout, the shared retry loop, and our errors."""
        litellm = self._litellm
        upstream_error = _upstream_error_type()

        async def attempt() -> Any:
            try:
                async with asyncio.timeout(params.timeout_s + 1.0):
                    return await litellm.acompletion(**request)
            except (TimeoutError, litellm.Timeout) as error:
                raise self._upstream.timed_out(params.timeout_s) from error
            except upstream_error as error:
                raise self._classify(error) from error

        return await self._upstream.call(attempt)

    def _classify(self, error: Exception) -> Retry | BackendError:
        """What to raise for a LiteLLM failure: a `Retry` (429, 5xx, connection) or our error at once."""
        litellm = self._litellm
        status = getattr(error, "status_code", None)
        detail = str(getattr(error, "message", error)).splitlines()[0][:300]
        headers = getattr(error, "litellm_response_headers", None)
        retry_after: str | None = headers.get("retry-after") if headers is not None else None
        if isinstance(error, litellm.RateLimitError) or status == 429:
            return self._upstream.status(429, detail, retry_after)
        if isinstance(error, litellm.APIConnectionError) or _caused_by_transport_failure(error):
            return self._upstream.unreachable(detail)
        if isinstance(status, int) and status >= 500 and headers is None:
            # LiteLLM reports an unparseable upstream body (and its own failures, such as missing
            # credentials) as a 500 with no upstream headers; a real upstream 5xx has them.
            return self._upstream.bad_response(
                "gave no usable answer: the upstream body was malformed or LiteLLM failed before a "
                f"status came back (check the API key too). Detail: {detail}"
            )
        return self._upstream.status(status if isinstance(status, int) else None, detail, retry_after)

    def _token_cost(self, input_tokens: int, output_tokens: int) -> tuple[float, float]:
        """(input part, output part) for counted tokens: the tier's price, else LiteLLM's per-token price."""
        if self._price is not None:
            return self._price.input_cost(input_tokens), self._price.output_cost(output_tokens)
        prompt_part, output_part = self._litellm.cost_per_token(
            model=self.settings.model, prompt_tokens=input_tokens, completion_tokens=output_tokens
        )
        return float(prompt_part), float(output_part)

    def _cost(self, response: Any, input_tokens: int, output_tokens: int) -> tuple[float, float]:
        """(input part, output part) of the call's cost: the tier's price, else LiteLLM's for this response."""
        if self._price is not None:
            return self._price.input_cost(input_tokens), self._price.output_cost(output_tokens)
        litellm = self._litellm
        total = float(litellm.completion_cost(completion_response=response, model=self.settings.model))
        prompt_part, _ = litellm.cost_per_token(model=self.settings.model, prompt_tokens=input_tokens, completion_tokens=0)
        prompt_part = min(float(prompt_part), total)
        return prompt_part, total - prompt_part


def _caused_by_transport_failure(error: BaseException) -> bool:
    """True when a connection-level error sits anywhere in the chain (LiteLLM may wrap it as a 500)."""
    import httpx
    import openai

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, openai.APIConnectionError | httpx.TransportError | OSError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
