"""The official `openai` client against the real proxy on 127.0.0.1, plain and streamed."""

from __future__ import annotations

import openai
import pytest

from router.backends import FakeBackend
from tests.server.conftest import StartProxy


def client(api: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=api, api_key=key, max_retries=0, timeout=20)


def test_routed_request_is_answered_with_headers_and_usage(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api:
        raw = api.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "an easy question"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "fast answer is 7"
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["x-router-tier"] == "fast"
    assert raw.headers["x-router-strategy"] == "direct"
    assert float(raw.headers["x-router-difficulty"]) == pytest.approx(0.1)
    assert len(raw.headers["x-router-request-id"]) == 24
    # Fake tokens are words: 3 prompt words, 4 answer words; $1 and $2 per million.
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert float(raw.headers["x-router-cost-usd"]) == pytest.approx((3 * 1 + 4 * 2) / 1e6)
    assert proxy.scorer.calls[-1] == ["an easy question"]  # after the start-up warm-up


def test_hard_request_votes_and_usage_counts_every_sample(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api:
        raw = api.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "a hard one"}]
        )
    completion = raw.parse()
    assert raw.headers["x-router-tier"] == "deep"
    assert raw.headers["x-router-strategy"] == "self_consistency"
    assert completion.choices[0].message.content == "so the answer is 42"  # the first sample of the winner
    deep = proxy.tiers["deep"]
    assert isinstance(deep, FakeBackend)
    spent_out = sum(c.usage.output_tokens for call in deep.calls for c in call.completions)
    spent_in = sum(c.usage.input_tokens for call in deep.calls for c in call.completions)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == spent_out == 5 + 2 + 3
    assert completion.usage.prompt_tokens == spent_in


def test_streamed_request_arrives_in_chunks_then_done(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api:
        stream = api.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fast answer is 7"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert proxy.entries() and next(iter(proxy.entries().values())).rule == "forced"


def test_streamed_multi_sample_votes_first_then_streams_the_winner(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api, api.chat.completions.with_streaming_response.create(
        model="router", messages=[{"role": "user", "content": "hard sum"}], stream=True
    ) as response:
        assert response.headers["x-router-tier"] == "deep"
        assert float(response.headers["x-router-cost-usd"]) > 0
        text = "".join(
            chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
        )
    assert text == "so the answer is 42"


def test_models_lists_router_and_tiers(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api:
        names = [model.id for model in api.models.list()]
    assert names == ["router", "auto", "fast", "deep"]


def test_unknown_model_is_openai_not_found(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    with client(proxy.api) as api, pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message


def test_passthrough_streams_straight_from_an_openai_compatible_upstream(
    start_proxy: StartProxy, upstream: tuple[object, str]
) -> None:
    _, url = upstream
    extra = f"""
    server:
      passthrough:
        models: ["up-*"]
        api_base: {url}
        price: {{input_per_million: 1.0, output_per_million: 1.0}}
    """
    proxy = start_proxy(real_backends=True, upstream_url=url, extra_yaml=extra)
    with client(proxy.api) as api:
        plain = api.chat.completions.with_raw_response.create(
            model="up-model", messages=[{"role": "user", "content": "ping pong"}]
        )
        assert plain.parse().choices[0].message.content == "reply: ping pong"
        assert plain.headers["x-router-tier"] == "passthrough"
        stream = api.chat.completions.create(
            model="up-model", messages=[{"role": "user", "content": "ping pong"}], stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "reply: ping pong"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_escalation_adds_samples_then_moves_tier_and_usage_counts_it_all(start_proxy: StartProxy) -> None:
    extra = """
    escalation:
      - {from_tier: deep, when: {agreement_below: 0.9}, then: {more_samples: 2}}
      - {from_tier: deep, when: {agreement_below: 0.9}, then: {to_tier: fast}}
    """
    proxy = start_proxy(extra_yaml=extra)
    with client(proxy.api) as api:
        raw = api.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "a hard one"}]
        )
    completion = raw.parse()
    # deep votes 42, 42, 41 (0.67 < 0.9); two more samples give 4 of 5 (0.8 < 0.9); then fast answers.
    assert raw.headers["x-router-tier"] == "fast"
    assert completion.choices[0].message.content == "fast answer is 7"
    spent = [c for tier in ("deep", "fast") for call in proxy.tiers[tier].calls for c in call.completions]  # type: ignore[attr-defined]
    assert len(spent) == 3 + 2 + 1
    assert completion.usage is not None
    assert completion.usage.completion_tokens == sum(c.usage.output_tokens for c in spent)
    assert completion.usage.prompt_tokens == sum(c.usage.input_tokens for c in spent)
    entry = next(iter(proxy.entries().values()))
    assert entry.extra["stages"] == ["deep", "deep+2", "fast"]
    assert entry.models == ("fake-deep", "fake-fast")
