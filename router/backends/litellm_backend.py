"""A Backend for every provider LiteLLM speaks to, with retries, timeouts and honest costs.

Error mapping (the proxy turns these into status codes in one place):

- upstream timeout                                   -> BackendTimeout (not retried)
- 429, after `max_attempts` tries                    -> BackendRateLimited
- 5xx or connection failure, after `max_attempts`    -> BackendUnavailable
- other 4xx (bad key, unknown model, bad request)    -> BackendUnavailable (not retried)
- a body that is not a usable chat completion        -> BackendBadResponse (not retried)

Retries wait `min(backoff_max_s, backoff_base_s * 2**k)` with equal jitter (half fixed, half
random), or the upstream's Retry-After when that is longer (still capped). LiteLLM's and the
OpenAI SDK's own retries are switched off so that this is the only retry loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from core.llm import (
    Completion,
    GenerationParams,
    Message,
    TokenPrice,
    Usage,
    split_evenly,
    validate_messages,
)
from core.errors import (
    BackendBadResponse,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
)

logger = logging.getLogger(__name__)


def import_litellm() -> ModuleType:
    """Import litellm with its price map read from the package, not downloaded (unless the user chose)."""
    # Without this, importing litellm stalls for seconds trying to fetch prices from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner would go to our stdout
    return litellm


async def close_shared_clients() -> None:
    """Close LiteLLM's cached HTTP clients; call once when the event loop that used them ends."""
    await import_litellm().close_litellm_async_clients()


def _upstream_error_type() -> type[Exception]:
    """The base class of every error LiteLLM raises for an upstream failure (OpenAI's APIError)."""
    import openai

    return openai.APIError


@dataclass(frozen=True, slots=True)
class LiteLLMSettings:
    """Where and how to call one LiteLLM model; the API key is named by env var, never stored."""

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
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigError(f"litellm.max_attempts: must be >= 1 (got {self.max_attempts!r}).")
        if self.backoff_base_s < 0 or self.backoff_max_s < self.backoff_base_s:
            raise ConfigError(
                "litellm.backoff_base_s/backoff_max_s: need 0 <= backoff_base_s <= backoff_max_s "
                f"(got {self.backoff_base_s}, {self.backoff_max_s})."
            )


class LiteLLMBackend:
    """Calls `litellm.acompletion`; construction checks the key's env var and that a price is known."""

    def __init__(self, settings: LiteLLMSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._litellm = import_litellm()
        if settings.api_key_env is not None and not os.environ.get(settings.api_key_env):
            raise ConfigError(
                f"litellm.api_key_env: environment variable {settings.api_key_env} is not set; "
                "export it with the provider's API key, or remove api_key_env to use the provider default."
            )
        if settings.price is None:
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
            return await self._call_with_retries(messages, params)
        single = params.replace(n=1)
        tasks = [asyncio.ensure_future(self._call_with_retries(messages, single)) for _ in range(params.n)]
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
                        text = getattr(getattr(choice, "delta", None), "content", None)
                        if isinstance(text, str) and text:
                            parts.append(text)
                            yield text
                        if getattr(choice, "finish_reason", None):
                            finish = str(choice.finish_reason)
        except (TimeoutError, litellm.Timeout) as error:
            raise self._timeout(params) from error
        except _upstream_error_type() as error:
            raise self._classify(error)[1] from error
        if not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
            raise BackendBadResponse(
                f"{self.settings.model} streamed no token usage, so its cost cannot be accounted; "
                "enable usage reporting (stream_options.include_usage) on the upstream server."
            )
        price = self.settings.price
        if price is not None:
            cost = price.input_cost(input_tokens) + price.output_cost(output_tokens)
        else:
            prompt_part, output_part = litellm.cost_per_token(
                model=self.settings.model, prompt_tokens=input_tokens, completion_tokens=output_tokens
            )
            cost = float(prompt_part) + float(output_part)
        yield Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=Usage(input_tokens, output_tokens),
            cost_usd=cost,
            latency_s=time.perf_counter() - started,
            mean_logprob=None,
            model=model,
        )

    def _request(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [dict(message) for message in messages],
            "n": params.n,
            "max_tokens": params.max_tokens,
            "timeout": params.timeout_s,
            "max_retries": 0,
            "num_retries": 0,
            # Drop what a provider does not take (e.g. temperature on o-series) instead of failing.
            "drop_params": True,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        if params.logprobs:
            request["logprobs"] = True
        if params.reasoning_effort is not None:
            request["reasoning_effort"] = params.reasoning_effort
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
        if self.settings.api_base is not None:
            request["api_base"] = self.settings.api_base
        if self.settings.api_key_env is not None:
            request["api_key"] = os.environ.get(self.settings.api_key_env, "")
        return request

    async def _call_with_retries(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> list[Completion]:
        started = time.perf_counter()
        response = await self._call(self._request(messages, params), params)
        return self._completions(response, time.perf_counter() - started)

    def _timeout(self, params: GenerationParams) -> BackendTimeout:
        return BackendTimeout(
            f"{self.settings.model} did not answer within {params.timeout_s:g} s; "
            "raise the tier's timeout or try again later."
        )

    async def _call(self, request: dict[str, Any], params: GenerationParams) -> Any:
        """`litellm.acompletion` with timeouts, retries with backoff on 429/5xx/connection errors, and our errors."""
        litellm = self._litellm
        upstream_error = _upstream_error_type()
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                async with asyncio.timeout(params.timeout_s + 1.0):
                    return await litellm.acompletion(**request)
            except (TimeoutError, litellm.Timeout) as error:
                raise self._timeout(params) from error
            except upstream_error as error:
                retry, final = self._classify(error)
                if not retry or attempt == self.settings.max_attempts:
                    raise final from error
                delay = self._backoff(attempt, error)
                logger.warning(
                    "%s failed (attempt %d of %d, %s); retrying in %.2f s.",
                    self.settings.model, attempt, self.settings.max_attempts, type(error).__name__, delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover

    def _classify(self, error: Exception) -> tuple[bool, Exception]:
        """Decide whether to retry, and which of our errors to raise if not."""
        litellm = self._litellm
        model = self.settings.model
        status = getattr(error, "status_code", None)
        detail = str(getattr(error, "message", error)).splitlines()[0][:300]
        if isinstance(error, litellm.RateLimitError) or status == 429:
            return True, BackendRateLimited(
                f"{model} is rate-limiting requests (HTTP 429) after {self.settings.max_attempts} "
                f"attempts; slow down or raise the provider quota. Upstream said: {detail}"
            )
        if isinstance(error, litellm.APIConnectionError) or _caused_by_transport_failure(error):
            return True, BackendUnavailable(
                f"cannot reach {model} after {self.settings.max_attempts} attempts; check api_base "
                f"and the network. Upstream said: {detail}"
            )
        if isinstance(status, int) and status >= 500:
            # LiteLLM reports an unparseable upstream body (and its own failures, such as missing
            # credentials) as a 500 with no upstream headers; a real upstream 5xx has them.
            if getattr(error, "litellm_response_headers", None) is None:
                return False, BackendBadResponse(
                    f"{model} gave no usable answer: the upstream body was malformed or LiteLLM failed "
                    f"before a status came back; check api_base, the API key, and that the server is "
                    f"OpenAI-compatible. Detail: {detail}"
                )
            return True, BackendUnavailable(
                f"{model} failed with HTTP {status} after {self.settings.max_attempts} attempts; "
                f"try again later or route to a fallback tier. Upstream said: {detail}"
            )
        return False, BackendUnavailable(
            f"{model} refused the request (HTTP {status}); check the model name, API key and "
            f"request parameters. Upstream said: {detail}"
        )

    def _backoff(self, attempt: int, error: Exception) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2.0 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        headers = getattr(error, "litellm_response_headers", None)
        retry_after: str | None = headers.get("retry-after") if headers is not None else None
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), self.settings.backoff_max_s))
            except ValueError:
                pass  # an HTTP-date Retry-After; the exponential delay is a fine substitute
        return delay

    def _completions(self, response: Any, latency_s: float) -> list[Completion]:
        choices = getattr(response, "choices", None)
        usage = getattr(response, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(choices, list) or not choices:
            raise BackendBadResponse(f"{self.settings.model} returned no choices; the upstream body is unusable.")
        # LiteLLM fills a missing usage block with zeros; a real prompt is never 0 tokens.
        if not isinstance(input_tokens, int) or not isinstance(output_tokens, int) or input_tokens < 1:
            raise BackendBadResponse(
                f"{self.settings.model} returned no token usage, so its cost cannot be accounted; "
                "enable usage reporting on the upstream server."
            )
        texts: list[str] = []
        for index, choice in enumerate(choices):
            content = getattr(getattr(choice, "message", None), "content", None)
            if content is not None and not isinstance(content, str):
                raise BackendBadResponse(
                    f"{self.settings.model} returned choices[{index}].message.content of type "
                    f"{type(content).__name__}; expected text."
                )
            texts.append(content or "")
        input_cost, output_cost = self._cost(response, input_tokens, output_tokens)
        shares = split_evenly(output_tokens, len(choices))
        model = str(getattr(response, "model", None) or self.settings.model)
        return [
            Completion(
                text=text,
                finish_reason=str(getattr(choice, "finish_reason", None) or "stop"),
                usage=Usage(input_tokens if index == 0 else 0, share),
                cost_usd=(input_cost if index == 0 else 0.0)
                + (output_cost * share / output_tokens if output_tokens else 0.0),
                latency_s=latency_s,
                mean_logprob=_mean_logprob(choice),
                model=model,
            )
            for index, (choice, text, share) in enumerate(zip(choices, texts, shares, strict=True))
        ]

    def _cost(self, response: Any, input_tokens: int, output_tokens: int) -> tuple[float, float]:
        """(input part, output part) of the call's cost: the explicit price wins, else LiteLLM's."""
        price = self.settings.price
        if price is not None:
            return price.input_cost(input_tokens), price.output_cost(output_tokens)
        litellm = self._litellm
        total = float(litellm.completion_cost(completion_response=response, model=self.settings.model))
        prompt_part, _ = litellm.cost_per_token(
            model=self.settings.model, prompt_tokens=input_tokens, completion_tokens=0
        )
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


def _mean_logprob(choice: Any) -> float | None:
    """Mean token log-probability of a choice, when the provider returned logprobs."""
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
    if not content:
        return None
    values = [
        token.get("logprob") if isinstance(token, dict) else getattr(token, "logprob", None)
        for token in content
    ]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None
