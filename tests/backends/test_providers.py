"""DefaultBackends (router/execution/providers.py) building real backends against the test upstream.

Tiers get the policy's resolved price unchanged; pass-through never lets the client choose a
provider or an upstream; evicted pass-through backends are closed.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from core.errors import ConfigError
from policies import parse_policy
from policies.schema import Passthrough
from router.backends import GenerationParams, LiteLLMBackend, Message, OpenAIHTTPBackend
from router.execution import DefaultBackends

from .upstream_stub import OpenAIStub, Reply

pytestmark = pytest.mark.filterwarnings("ignore:.*using the .ReadOnly. qualifier:UserWarning")

MESSAGES: list[Message] = [{"role": "user", "content": "hi"}]


def test_a_tier_gets_the_policys_price_unchanged(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    policy = parse_policy(
        f"""
tiers:
  - name: own
    backend: litellm
    model: openai/served-model
    api_base: {openai_stub.url}
    price: {{gpu_hour_usd: 3.6, tokens_per_second: 1000, prompt_tokens_per_second: 10000}}
rules:
  - name: default
    tier: own
"""
    )
    price = policy.price("own")
    provider = DefaultBackends()

    async def call() -> float:
        try:
            backend = await provider.for_tier(policy.tier("own"), price)
            assert isinstance(backend, OpenAIHTTPBackend) and backend.settings.price is price
            [completion] = await backend.generate(MESSAGES, GenerationParams())
            return completion.cost_usd
        finally:
            await provider.aclose()

    openai_stub.reset(Reply(prompt_tokens=10_000, tokens_per_choice=1000))
    # $3.60 an hour is $0.001 a second: 10,000 prompt tokens take 1 s, 1,000 output tokens 1 s.
    assert runner.run(call()) == pytest.approx(0.002)
    assert openai_stub.requests[0]["model"] == "served-model"


@pytest.mark.parametrize("direct_http", [True, False], ids=["plain-http", "litellm"])
def test_with_an_api_base_every_name_goes_there_as_is(
    openai_stub: OpenAIStub, runner: asyncio.Runner, monkeypatch: pytest.MonkeyPatch, direct_http: bool
) -> None:
    # A name that looks like a LiteLLM provider must not pick Anthropic (or any other upstream).
    monkeypatch.setenv("ROUTER_TEST_UPSTREAM_KEY", "sk-test-123")
    config = Passthrough(models=["*"], api_base=openai_stub.url, api_key_env="ROUTER_TEST_UPSTREAM_KEY")
    provider = DefaultBackends(direct_http=direct_http)

    async def call() -> str:
        try:
            backend = await provider.for_passthrough("anthropic/claude-sonnet-4-5", config)
            [completion] = await backend.generate(MESSAGES, GenerationParams())
            return completion.text
        finally:
            await provider.aclose()

    openai_stub.reset(Reply(texts=("from the configured upstream",)))
    assert runner.run(call()) == "from the configured upstream"
    assert [body["model"] for body in openai_stub.requests] == ["anthropic/claude-sonnet-4-5"]
    assert openai_stub.headers[0]["authorization"] == "Bearer sk-test-123"


def test_without_an_api_base_only_the_operators_patterns_are_forwarded(runner: asyncio.Runner) -> None:
    config = Passthrough(models=["gpt-4o-*"])
    provider = DefaultBackends()
    with pytest.raises(ConfigError, match="server.passthrough.models does not allow 'anthropic/claude-sonnet-4-5'"):
        runner.run(provider.for_passthrough("anthropic/claude-sonnet-4-5", config))
    backend = runner.run(provider.for_passthrough("gpt-4o-mini", config))
    assert isinstance(backend, LiteLLMBackend) and backend.settings.model == "gpt-4o-mini"


def test_evicted_pass_through_backends_are_closed(openai_stub: OpenAIStub, runner: asyncio.Runner) -> None:
    config = Passthrough(models=["*"], api_base=openai_stub.url)
    provider = DefaultBackends(max_passthrough_models=1)

    async def use_three_models() -> None:
        for model in ("first", "second", "third"):  # each evicts the one before
            backend = await provider.for_passthrough(model, config)
            await backend.generate(MESSAGES, GenerationParams())
        await provider.aclose()  # closes what it still holds (the third model's backend)

    openai_stub.reset()
    runner.run(use_three_models())
    assert [body["model"] for body in openai_stub.requests] == ["first", "second", "third"]
    # An aiohttp pool nobody closed says so when it is collected: that is the leak.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]
