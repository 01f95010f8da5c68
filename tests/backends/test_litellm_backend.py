"""LiteLLMBackend against a real OpenAI-compatible server on 127.0.0.1 (no mock_response).

Error mapping, retries and streaming are the shared contract's (test_contract.py); this file has
what only LiteLLM does: its price map, providers without `n`, Anthropic's thinking budget.
"""

from __future__ import annotations

import asyncio

import pytest

from router.backends import (
    Backend,
    GenerationParams,
    LiteLLMBackend,
    LiteLLMSettings,
    TokenPrice,
)
from core.errors import BackendUnavailable, ConfigError

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
        "price": TokenPrice(input_per_million=1.0, output_per_million=2.0),
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    options.update(overrides)
    return LiteLLMBackend(LiteLLMSettings(model, **options))  # type: ignore[arg-type]


def test_it_is_a_backend(openai_stub: OpenAIStub) -> None:
    assert isinstance(make_backend(openai_stub), Backend)


def test_the_request_reaches_the_upstream_as_asked(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    openai_stub.reset(Reply(texts=("4", "four")))
    completions = runner.run(
        make_backend(openai_stub).generate(MESSAGES, GenerationParams(n=2, max_tokens=16, temperature=0.5))
    )
    assert [c.text for c in completions] == ["4", "four"]
    assert completions[0].model == "stub-model"  # as the upstream named itself
    [body] = openai_stub.requests
    assert body["n"] == 2 and body["max_tokens"] == 16 and body["temperature"] == 0.5
    assert openai_stub.headers[0]["authorization"] == "Bearer sk-test-123"


@pytest.mark.parametrize(
    "price",
    [None, TokenPrice(99.0, 99.0, "litellm")],
    ids=["no-price", "a-price-read-from-litellms-map"],
)
def test_litellm_prices_each_response_when_the_tier_has_no_price_of_its_own(
    openai_stub: OpenAIStub, runner: asyncio.Runner, price: TokenPrice | None
) -> None:
    # A price the policy read from LiteLLM's map is a flat estimate; LiteLLM's own cost function
    # (which also knows cached-token and tiered rates) prices the actual response instead.
    openai_stub.reset(Reply(prompt_tokens=1000, tokens_per_choice=500))
    backend = make_backend(openai_stub, model="openai/gpt-4o-mini", price=price)
    [completion] = runner.run(backend.generate(MESSAGES, GenerationParams()))
    # gpt-4o-mini in LiteLLM's bundled price map: $0.15/M input, $0.60/M output.
    assert completion.cost_usd == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)


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
