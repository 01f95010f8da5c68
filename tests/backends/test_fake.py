"""The shipped FakeBackend: scripted, countable, and able to fail on cue."""

from __future__ import annotations

import asyncio

import pytest

from router.backends import (
    Backend,
    FakeBackend,
    FakeReply,
    GenerationParams,
    TokenPrice,
)
from core.errors import BackendTimeout, ConfigError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]


def test_replies_cycle_and_tokens_are_words() -> None:
    backend = FakeBackend(["4", "four, I think"], price=TokenPrice(1.0, 2.0))
    assert isinstance(backend, Backend)
    completions = asyncio.run(backend.generate(MESSAGES, GenerationParams(n=3)))
    assert [c.text for c in completions] == ["4", "four, I think", "4"]
    # 2 + 5 words of prompt, on the first completion only.
    assert [c.usage.input_tokens for c in completions] == [7, 0, 0]
    assert [c.usage.output_tokens for c in completions] == [1, 3, 1]
    assert completions[0].cost_usd == pytest.approx(7e-6 + 2e-6)
    assert completions[1].cost_usd == pytest.approx(6e-6)
    assert len(backend.calls) == 1 and backend.calls[0].params.n == 3


def test_a_reply_function_sees_the_request() -> None:
    def echo(messages: object, params: GenerationParams, index: int) -> FakeReply:
        return FakeReply(f"reply {index} at {params.temperature}", mean_logprob=-0.5 * index)

    backend = FakeBackend(echo)
    completions = asyncio.run(backend.generate(MESSAGES, GenerationParams(n=2, temperature=0.3, logprobs=True)))
    assert [c.text for c in completions] == ["reply 0 at 0.3", "reply 1 at 0.3"]
    assert [c.mean_logprob for c in completions] == [-0.0, -0.5]


def test_logprobs_only_when_asked_and_max_tokens_truncates() -> None:
    backend = FakeBackend([FakeReply("one two three four", mean_logprob=-1.0)])
    [completion] = asyncio.run(backend.generate(MESSAGES, GenerationParams(max_tokens=2)))
    assert completion.text == "one two"
    assert completion.finish_reason == "length"
    assert completion.mean_logprob is None


def test_failures_come_first_then_replies() -> None:
    backend = FakeBackend(["ok"], failures=[BackendTimeout("scripted timeout")], delay_s=0.01)
    with pytest.raises(BackendTimeout, match="scripted timeout"):
        asyncio.run(backend.generate(MESSAGES, GenerationParams()))
    [completion] = asyncio.run(backend.generate(MESSAGES, GenerationParams()))
    assert completion.text == "ok" and completion.latency_s == 0.01


def test_bad_construction_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        FakeBackend([])
    with pytest.raises(ConfigError, match="delay_s"):
        FakeBackend(["x"], delay_s=-1)
