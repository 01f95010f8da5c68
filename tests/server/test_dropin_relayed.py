"""Drop-in: what an answer holds beside text reaches the client as the upstream sent it, whole or
streamed: a legacy `function_call`, `audio`, and `logprobs`. Through the official openai SDK, on
pass-through, the routed path, a forced one-call tier and a forced self-consistency tier."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.server.conftest import Proxy
from tests.server.test_dropin_openai_sdk import MODELS, client
from tests.server.upstream import Upstream

OSLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Oslo"}]
FUNCTIONS: Any = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]


def streamed(api: openai.OpenAI, **request: Any) -> tuple[dict[str, Any], list[Any], str | None]:
    """Join a stream's deltas as a client does: the message's fields, the logprob tokens, the finish reason."""
    message: dict[str, Any] = {}
    tokens: list[Any] = []
    finish = None
    for chunk in api.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            delta = choice.delta.model_dump(exclude_none=True)
            for key in ("content", "function_call", "audio"):
                _join(message, key, delta.get(key))
            if choice.logprobs is not None and choice.logprobs.content:
                tokens.extend(token.token for token in choice.logprobs.content)
            finish = choice.finish_reason or finish
    return message, tokens, finish


def _join(whole: dict[str, Any], key: str, piece: Any) -> None:
    if isinstance(piece, str):
        whole[key] = whole.get(key, "") + piece
    elif isinstance(piece, dict):
        inner = whole.setdefault(key, {})
        for name, value in piece.items():
            inner[name] = inner.get(name, "") + value if isinstance(value, str) else value


@pytest.mark.parametrize("model", MODELS)
def test_a_legacy_function_call_comes_back_whole_and_streamed(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, _ = served
    with client(proxy) as api:
        answer = api.chat.completions.create(model=model, messages=OSLO, functions=FUNCTIONS, function_call="auto")
        message, _, finish = streamed(api, model=model, messages=OSLO, functions=FUNCTIONS)
    whole = answer.choices[0]
    assert whole.finish_reason == "function_call" and whole.message.content is None
    assert whole.message.function_call is not None and whole.message.function_call.name == "get_weather"
    assert json.loads(whole.message.function_call.arguments) == {"query": "Oslo"}
    assert finish == "function_call"
    assert message["function_call"]["name"] == "get_weather"
    assert json.loads(message["function_call"]["arguments"]) == {"query": "Oslo"}


@pytest.mark.parametrize("model", MODELS)
def test_logprobs_come_back_whole_and_streamed(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, _ = served
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "two words"}]
    with client(proxy) as api:
        answer = api.chat.completions.create(model=model, messages=question, logprobs=True, top_logprobs=1)
        message, tokens, _ = streamed(api, model=model, messages=question, logprobs=True, top_logprobs=1)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [token.token for token in logprobs.content] == ["reply:", "two", "words"]
    assert message["content"].split() == tokens == ["reply:", "two", "words"]


def test_audio_comes_back_whole_and_streamed_on_passthrough(served: tuple[Proxy, Upstream]) -> None:
    proxy, _ = served
    request: dict[str, Any] = {"model": "up-model", "messages": OSLO, "modalities": ["text", "audio"],
                               "audio": {"voice": "alloy", "format": "wav"}}
    with client(proxy) as api:
        answer = api.chat.completions.create(**request)
        message, _, _ = streamed(api, **request)
    audio = answer.choices[0].message.audio
    assert audio is not None and (audio.id, audio.data, audio.transcript) == ("audio_1", "UklGRg==", "reply: Oslo")
    assert message["audio"]["id"] == "audio_1" and message["audio"]["data"] == "UklGRg=="
    assert message["audio"]["transcript"].split() == ["reply:", "Oslo"]
