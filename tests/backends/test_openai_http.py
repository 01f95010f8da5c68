"""OpenAIHTTPBackend against a real OpenAI-compatible server on 127.0.0.1.

Error mapping, retries and the accounting rule are the shared contract's (test_contract.py); this
file has what is this backend's own: the request body, the estimate for a stream without usage,
an upstream that ignores `stream`, and closing the pool without breaking a request in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from core.errors import BackendBadResponse, ConfigError
from core.llm import estimate_stream_usage
from router.backends import (
    Backend,
    Completion,
    GenerationParams,
    Message,
    OpenAIHTTPBackend,
    OpenAIHTTPSettings,
    TokenPrice,
    Usage,
    openai_compatible_model,
)

from .upstream_stub import OpenAIStub, Reply

MESSAGES: list[Message] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
KEY_ENV = "ROUTER_TEST_UPSTREAM_KEY"
PRICE = TokenPrice(1.0, 2.0)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    return "sk-test-123"


@pytest.fixture
def backend(openai_stub: OpenAIStub, runner: asyncio.Runner) -> Iterator[OpenAIHTTPBackend]:
    made = OpenAIHTTPBackend(OpenAIHTTPSettings("stub/model-7b", openai_stub.url, KEY_ENV, PRICE))
    yield made
    runner.run(made.aclose())


async def collect(backend: OpenAIHTTPBackend, messages: list[Message] = MESSAGES) -> list[str | Completion]:
    return [piece async for piece in backend.stream(messages, GenerationParams())]


def test_the_body_carries_the_request_and_the_model_name_as_is(
    backend: OpenAIHTTPBackend, openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    assert isinstance(backend, Backend)
    openai_stub.reset(Reply(logprobs=(-1.0, -3.0)))
    params = GenerationParams(max_tokens=16, temperature=0.5, stop=("\n\n",), logprobs=True, reasoning_effort="low")
    [completion] = runner.run(backend.generate(MESSAGES, params))
    [body] = openai_stub.requests
    assert body["model"] == "stub/model-7b"
    assert body["messages"] == MESSAGES
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (16, 0.5, 1.0)
    assert body["stop"] == ["\n\n"] and body["logprobs"] is True and body["reasoning_effort"] == "low"
    assert "n" not in body and "stream" not in body  # n = 1 is the default; some servers reject the key
    assert openai_stub.headers[0]["authorization"] == "Bearer sk-test-123"
    assert completion.mean_logprob == pytest.approx(-2.0)


def test_a_stream_without_usage_is_billed_from_the_estimate(
    backend: OpenAIHTTPBackend, openai_stub: OpenAIStub, runner: asyncio.Runner, caplog: pytest.LogCaptureFixture
) -> None:
    openai_stub.reset(Reply(texts=("2 + 2 is 4",), stream_usage=False))
    with caplog.at_level(logging.WARNING, logger="router.backends"):
        *texts, final = runner.run(collect(backend))
    assert openai_stub.requests[0]["stream_options"] == {"include_usage": True}
    assert isinstance(final, Completion) and texts == ["2", " +", " 2", " is", " 4"]
    # 9 + 14 characters of prompt make 6 tokens; 5 pieces beat the 3 tokens that 10 characters make.
    assert final.usage == estimate_stream_usage(MESSAGES, texts) == Usage(6, 5)  # type: ignore[arg-type]
    assert final.cost_usd == pytest.approx(PRICE.cost(6, 5))
    assert "streamed no token usage" in caplog.text


def test_an_upstream_that_ignores_stream_is_passed_on_in_one_piece(
    openai_stub: OpenAIStub, runner: asyncio.Runner, backend: OpenAIHTTPBackend
) -> None:
    body = {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1},
    }
    openai_stub.reset(Reply(json_body=body))
    text, final = runner.run(collect(backend))
    assert text == "4" and isinstance(final, Completion)
    assert (final.text, final.usage, final.model) == ("4", Usage(9, 1), "m")
    assert final.cost_usd == pytest.approx(PRICE.cost(9, 1))


def test_a_stream_chunk_that_is_not_json_is_a_bad_response(
    backend: OpenAIHTTPBackend, openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    openai_stub.reset(Reply(raw="data: {not json\n\n", headers={"content-type": "text/event-stream"}))
    with pytest.raises(BackendBadResponse, match="streamed a chunk that is not JSON"):
        runner.run(collect(backend))


def test_closing_waits_for_a_request_in_flight(
    backend: OpenAIHTTPBackend, openai_stub: OpenAIStub, runner: asyncio.Runner
) -> None:
    # An evicted pass-through backend is closed while another request may still be using it.
    openai_stub.reset(Reply(delay_s=0.3, texts=("late but whole",)))

    async def close_during_a_request() -> list[Completion]:
        request = asyncio.ensure_future(backend.generate(MESSAGES, GenerationParams()))
        while not openai_stub.requests:
            await asyncio.sleep(0.01)
        await backend.aclose()
        return await request

    [completion] = runner.run(close_during_a_request())
    assert completion.text == "late but whole"
    [again] = runner.run(backend.generate(MESSAGES, GenerationParams()))  # a closed backend opens a new pool
    assert again.text == "answer 0"


def test_stream_refuses_several_samples(backend: OpenAIHTTPBackend, runner: asyncio.Runner) -> None:
    async def first() -> object:
        return await anext(aiter(backend.stream(MESSAGES, GenerationParams(n=2))))

    with pytest.raises(ConfigError, match="only n = 1"):
        runner.run(first())


@pytest.mark.parametrize(
    ("model", "api_base", "expected"),
    [
        ("openai/gpt-4o", "http://h/v1", "gpt-4o"),
        ("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "http://h/v1", "Qwen/Qwen2.5-7B-Instruct"),
        ("openai/gpt-4o", None, None),  # OpenAI itself goes through LiteLLM
        ("anthropic/claude-sonnet-4-5", "http://h/v1", None),
    ],
)
def test_which_litellm_models_are_plain_openai_http(model: str, api_base: str | None, expected: str | None) -> None:
    assert openai_compatible_model(model, api_base) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": " "}, "openai_http.model"),
        ({"api_base": "localhost:8000"}, "openai_http.api_base"),
        ({"max_attempts": 0}, "openai_http.max_attempts"),
        ({"backoff_base_s": 2.0, "backoff_max_s": 1.0}, "openai_http.backoff_base_s"),
    ],
)
def test_settings_are_validated(overrides: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"model": "m", "api_base": "http://127.0.0.1:1/v1", **overrides}
    with pytest.raises(ConfigError, match=message):
        OpenAIHTTPSettings(**options)  # type: ignore[arg-type]


def test_a_missing_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"environment variable {KEY_ENV} is not set"):
        OpenAIHTTPBackend(OpenAIHTTPSettings("m", "http://127.0.0.1:1/v1", KEY_ENV))


def test_repr_shows_no_secret(backend: OpenAIHTTPBackend, api_key: str) -> None:
    assert api_key not in repr(backend) and "stub/model-7b" in repr(backend)
