"""LiteLLMBackend against a real OpenAI-compatible server on 127.0.0.1 (no mock_response)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from router.backends import (
    Backend,
    Completion,
    GenerationParams,
    LiteLLMBackend,
    LiteLLMSettings,
    TokenPrice,
)
from core.errors import (
    BackendBadResponse,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
)

from .upstream_stub import OpenAIStub, Reply

# LiteLLM builds a pydantic schema on its first call, and pydantic warns about a ReadOnly TypedDict
# item there; under our warnings-are-errors setting that would surface as a connection error.
pytestmark = pytest.mark.filterwarnings("ignore:.*using the .ReadOnly. qualifier:UserWarning")

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
KEY_ENV = "ROUTER_TEST_UPSTREAM_KEY"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key the backend must send, read from the env var it is configured with."""
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    return "sk-test-123"


def make_backend(stub: OpenAIStub, model: str = "openai/stub-model", **overrides: object) -> LiteLLMBackend:
    options: dict[str, object] = {
        "api_base": stub.url,
        "api_key_env": KEY_ENV,
        "price": TokenPrice(input_per_mtok_usd=1.0, output_per_mtok_usd=2.0),
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    options.update(overrides)
    return LiteLLMBackend(LiteLLMSettings(model, **options))  # type: ignore[arg-type]


def test_it_is_a_backend(openai_stub: OpenAIStub) -> None:
    assert isinstance(make_backend(openai_stub), Backend)


def test_n_completions_share_the_prompt_tokens_and_cost(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(texts=("4", "four"), prompt_tokens=10, tokens_per_choice=3))
    completions = runner.run(
        make_backend(openai_stub).generate(MESSAGES, GenerationParams(n=2, max_tokens=16, temperature=0.5))
    )
    assert [c.text for c in completions] == ["4", "four"]
    assert [c.usage.input_tokens for c in completions] == [10, 0]
    assert [c.usage.output_tokens for c in completions] == [3, 3]
    # 10 input tokens at $1/M on the first completion; 3 output tokens at $2/M on each.
    assert completions[0].cost_usd == pytest.approx(10e-6 + 6e-6)
    assert completions[1].cost_usd == pytest.approx(6e-6)
    assert completions[0].latency_s == completions[1].latency_s > 0
    assert completions[0].model == "stub-model"
    [body] = openai_stub.requests
    assert body["n"] == 2 and body["max_tokens"] == 16 and body["temperature"] == 0.5
    assert openai_stub.headers[0]["authorization"] == "Bearer sk-test-123"


def test_price_comes_from_litellm_when_the_tier_gives_none(
    openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    openai_stub.reset(Reply(prompt_tokens=1000, tokens_per_choice=500))
    backend = make_backend(openai_stub, model="openai/gpt-4o-mini", price=None)
    [completion] = runner.run(backend.generate(MESSAGES, GenerationParams()))
    # gpt-4o-mini in LiteLLM's bundled price map: $0.15/M input, $0.60/M output.
    assert completion.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)


def test_upstream_500_is_retried_then_reported_unavailable(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=500), Reply(status=500), Reply(status=500))
    with pytest.raises(BackendUnavailable, match=r"HTTP 500 after 3 attempts") as caught:
        runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))
    assert not isinstance(caught.value, BackendRateLimited)
    assert len(openai_stub.requests) == 3


def test_500_then_success_returns_the_answer(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=503), Reply(texts=("fine",)))
    [completion] = runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))
    assert completion.text == "fine"
    assert len(openai_stub.requests) == 2


def test_429_then_success_is_retried(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=429), Reply(texts=("4",)))
    [completion] = runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))
    assert completion.text == "4"
    assert len(openai_stub.requests) == 2


def test_429_every_time_becomes_rate_limited(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=429), Reply(status=429))
    with pytest.raises(BackendRateLimited, match="HTTP 429"):
        runner.run(make_backend(openai_stub, max_attempts=2).generate(MESSAGES, GenerationParams()))
    assert len(openai_stub.requests) == 2


def test_retry_after_is_honoured_up_to_the_cap(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=429, headers={"retry-after": "0.3"}), Reply())
    backend = make_backend(openai_stub, backoff_max_s=1.0)
    started = time.perf_counter()
    runner.run(backend.generate(MESSAGES, GenerationParams()))
    assert time.perf_counter() - started >= 0.3


def test_a_slow_upstream_times_out_without_retry(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(delay_s=3.0))
    started = time.perf_counter()
    with pytest.raises(BackendTimeout, match="did not answer within 0.5 s"):
        runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams(timeout_s=0.5)))
    assert time.perf_counter() - started < 2.5
    assert len(openai_stub.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw="this is not json{"),
        Reply(json_body={"hello": "world"}),
        Reply(json_body={"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}),
    ],
    ids=["not-json", "wrong-shape", "no-choices"],
)
def test_a_malformed_body_is_a_bad_response_and_not_retried(
    openai_stub: OpenAIStub, runner: asyncio.Runner, reply: Reply
) -> None:
    openai_stub.reset(reply)
    with pytest.raises(BackendBadResponse):
        runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))
    assert len(openai_stub.requests) == 1


def test_a_body_without_usage_is_a_bad_response(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    openai_stub.reset(Reply(json_body=body))
    with pytest.raises(BackendBadResponse, match="no token usage"):
        runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))


def test_a_refusal_is_not_retried(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=401))
    with pytest.raises(BackendUnavailable, match=r"refused the request \(HTTP 401\)"):
        runner.run(make_backend(openai_stub).generate(MESSAGES, GenerationParams()))
    assert len(openai_stub.requests) == 1


def test_an_unreachable_server_is_unavailable(runner: asyncio.Runner) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = LiteLLMSettings(
        "openai/stub-model",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env=KEY_ENV,
        price=TokenPrice(),
        max_attempts=2,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
    )
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        runner.run(LiteLLMBackend(settings).generate(MESSAGES, GenerationParams(timeout_s=5)))


def test_reasoning_effort_stop_and_logprobs_reach_the_upstream(
    openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    openai_stub.reset(Reply(logprobs=(-1.0, -3.0)))
    params = GenerationParams(reasoning_effort="high", stop=("\n\n",), logprobs=True)
    [completion] = runner.run(make_backend(openai_stub).generate(MESSAGES, params))
    [body] = openai_stub.requests
    assert body["reasoning_effort"] == "high"
    assert body["stop"] == ["\n\n"]
    assert body["logprobs"] is True
    assert completion.mean_logprob == pytest.approx(-2.0)


def test_anthropic_thinking_budget_and_fan_out_for_providers_without_n(
    openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    openai_stub.reset(Reply(prompt_tokens=12, tokens_per_choice=30), Reply(prompt_tokens=12, tokens_per_choice=30))
    backend = make_backend(openai_stub, model="anthropic/claude-sonnet-4-5", api_base=openai_stub.root, price=None)
    params = GenerationParams(n=2, max_tokens=2000, thinking_budget_tokens=1024, temperature=0.7)
    completions = runner.run(backend.generate(MESSAGES, params))
    assert [c.text for c in completions] == ["The answer is 42.", "The answer is 42."]
    # Anthropic has no `n`: two calls, each billing its own prompt.
    assert len(openai_stub.requests) == 2
    assert [c.usage.input_tokens for c in completions] == [12, 12]
    for body in openai_stub.requests:
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        assert "temperature" not in body
    assert openai_stub.headers[0]["x-api-key"] == "sk-test-123"
    # claude-sonnet-4-5 in LiteLLM's price map: $3/M input, $15/M output.
    assert sum(c.cost_usd for c in completions) == pytest.approx(2 * (12 * 3e-6 + 30 * 15e-6))


def test_one_failed_call_of_a_fan_out_raises_our_error(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=400), Reply(), Reply())
    backend = make_backend(openai_stub, model="anthropic/claude-sonnet-4-5", api_base=openai_stub.root, price=None)
    with pytest.raises(BackendUnavailable, match=r"refused the request \(HTTP 400\)"):
        runner.run(backend.generate(MESSAGES, GenerationParams(n=3, max_tokens=64)))


def test_thinking_budget_must_fit_in_max_tokens(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    backend = make_backend(openai_stub)
    with pytest.raises(ConfigError, match="must be larger than thinking_budget_tokens"):
        runner.run(backend.generate(MESSAGES, GenerationParams(max_tokens=512, thinking_budget_tokens=1024)))


def test_a_missing_key_variable_is_a_config_error(openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"environment variable {KEY_ENV} is not set"):
        make_backend(openai_stub)


def test_an_unpriced_model_needs_an_explicit_price(openai_stub: OpenAIStub) -> None:
    with pytest.raises(ConfigError, match="has no price for model 'openai/stub-model'"):
        make_backend(openai_stub, price=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": " "}, "litellm.model"),
        ({"max_attempts": 0}, "litellm.max_attempts"),
        ({"backoff_base_s": 2.0, "backoff_max_s": 1.0}, "backoff_base_s"),
    ],
)
def test_settings_are_validated(overrides: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"model": "openai/x"}
    options.update(overrides)
    with pytest.raises(ConfigError, match=message):
        LiteLLMSettings(**options)  # type: ignore[arg-type]


def test_repr_shows_no_secret(openai_stub: OpenAIStub, api_key: str) -> None:
    assert api_key not in repr(make_backend(openai_stub))


def test_stream_yields_deltas_then_usage_and_cost(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(texts=("The answer is 42",), prompt_tokens=12, tokens_per_choice=5))
    backend = make_backend(openai_stub)

    async def collect() -> list[object]:
        return [piece async for piece in backend.stream([{"role": "user", "content": "hi"}], GenerationParams())]

    *texts, final = runner.run(collect())
    assert texts == ["The", " answer", " is", " 42"]
    assert isinstance(final, Completion) and final.text == "The answer is 42"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)
    assert final.cost_usd == pytest.approx((12 * 1.0 + 5 * 2.0) / 1e6)
    assert openai_stub.requests[-1]["stream"] is True


def test_stream_retries_until_it_opens_then_maps_failures(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(status=503), Reply(texts=("ok",)))

    async def collect(backend: LiteLLMBackend) -> list[object]:
        return [piece async for piece in backend.stream([{"role": "user", "content": "hi"}], GenerationParams())]

    *texts, final = runner.run(collect(make_backend(openai_stub, max_attempts=2)))
    assert texts == ["ok"] and isinstance(final, Completion)
    openai_stub.reset(Reply(status=500), Reply(status=500))
    with pytest.raises(BackendUnavailable, match="HTTP 500"):
        runner.run(collect(make_backend(openai_stub, max_attempts=2)))
