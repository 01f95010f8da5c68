"""Drop-in: the official openai SDK's tools, structured output and sampling controls, through the real proxy.

Each on pass-through (`up-model`), the routed path (`router`, which picks `fast` here), a forced
single-sample tier (`fast`, direct) and a forced multi-sample tier (`deep`, self-consistency,
which votes on their canonical tool calls or JSON), all against the real test upstream over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from core.llm import Message, wire_message, with_text_appended
from tests.server.conftest import Proxy, StartProxy
from tests.server.support import WEATHER, City, ServerThread
from tests.server.upstream import Upstream

MODELS = ["up-model", "router", "fast", "deep"]


def client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.api, api_key="unused", max_retries=0, timeout=20)


def test_passthrough_forwards_exactly_what_the_client_sent(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    sent: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            {"role": "user", "content": "weather?", "name": "ann"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"query\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        ],
        "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": False, "seed": 7, "user": "u-1",
        "logprobs": True, "top_logprobs": 2, "presence_penalty": 0.5, "logit_bias": {"50256": -100},
        "stop": "\n\n", "store": False, "service_tier": "auto", "prompt_cache_key": "k", "safety_identifier": "s",
        "metadata": {"app": "demo"}, "max_completion_tokens": 50,
    }
    with client(proxy) as api:
        answer = api.chat.completions.create(model="up-model", **sent)
    assert answer.choices[0].message.content == "tool said: rain"
    received = dict(upstream.requests[-1])
    assert received.pop("model") == "up-model"
    assert received == sent  # nothing injected (no max_tokens, temperature, top_p), nothing dropped


def test_passthrough_without_sampling_fields_sends_none(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    with client(proxy) as api:
        api.chat.completions.create(model="up-model", messages=[{"role": "user", "content": "hi"}])
    assert upstream.requests[-1] == {"model": "up-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("model", MODELS)
def test_two_turn_tool_loop(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    with client(proxy) as api:
        raw = api.chat.completions.with_raw_response.create(model=model, messages=messages, tools=[WEATHER])
        first = raw.parse()
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"query": "Oslo"}
        if model == "deep":  # three samples in one call, voted on their canonical tool calls, no reasoning asked
            assert raw.headers["x-router-strategy"] == "self_consistency (votes on tool_calls)"
            sent = upstream.requests[-1]
            assert sent["n"] == 3 and sent["messages"] == messages
        messages += [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "rain, 9 C"}]
        second = api.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "tool said: rain, 9 C"
    assert second.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_calls_reassemble(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, _ = served
    with client(proxy) as api, api.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "Bergen"}], tools=[WEATHER],
        stream_options={"include_usage": True},
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "Bergen"}
    assert final.usage is not None and final.usage.prompt_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_parse_returns_a_pydantic_object(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    with client(proxy) as api:
        parsed = api.chat.completions.parse(
            model=model, messages=[{"role": "user", "content": "a city"}], response_format=City
        )
    assert parsed.choices[0].message.parsed == City(name="x", population=1, coastal=True)
    sent_format = upstream.requests[-1]["response_format"]
    assert sent_format["type"] == "json_schema" and sent_format["json_schema"]["strict"] is True


def test_forced_tier_forwards_controls_and_keeps_its_own_settings(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    with client(proxy) as api:
        api.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], seed=3, user="u-2",
            metadata={"app": "demo"}, frequency_penalty=0.1, tools=[], response_format={"type": "text"},
        )
    received = upstream.requests[-1]
    assert received["model"] == "fast-model"
    assert (received["seed"], received["user"], received["frequency_penalty"]) == (3, "u-2", 0.1)
    assert "metadata" not in received  # routing input, not forwarded to tiers
    assert "tools" not in received and "response_format" not in received  # neutral values left out
    assert received["max_tokens"] == 64  # the tier's cap


def test_image_parts_need_a_vision_tier(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    image: Any = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    with client(proxy) as api:
        with pytest.raises(openai.BadRequestError) as caught:
            api.chat.completions.create(model="fast", messages=[{"role": "user", "content": image}])
        assert caught.value.code == "unsupported_content" and "vision: true" in caught.value.message
        answer = api.chat.completions.create(model="up-model", messages=[{"role": "user", "content": image}])
    assert answer.choices[0].message.content == "reply: what is this"
    assert upstream.requests[-1]["messages"][0]["content"] == image


def test_legacy_functions_are_forwarded_as_sent(served: tuple[Proxy, Upstream]) -> None:
    proxy, upstream = served
    functions = [{"name": "f", "parameters": {"type": "object", "properties": {}}}]
    with client(proxy) as api:
        api.chat.completions.create(
            model="up-model", messages=[{"role": "user", "content": "hi"}], functions=functions,  # type: ignore[arg-type]
        )
    assert upstream.requests[-1]["functions"] == functions


@pytest.fixture(scope="module")
def through_litellm(start_module_proxy: StartProxy) -> Iterator[tuple[Proxy, Upstream]]:
    """The same tiers called through LiteLLM instead of plain HTTP."""
    app = Upstream()
    with ServerThread(app) as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "unused")  # LiteLLM's OpenAI client wants one, the test upstream does not
        yield start_module_proxy(real_backends=True, upstream_url=f"{server.url}/v1", direct_http=False), app


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_tool_loop_through_a_litellm_tier(through_litellm: tuple[Proxy, Upstream], stream: bool) -> None:
    proxy, upstream = through_litellm
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    first: ChatCompletion
    with client(proxy) as api:
        if stream:
            with api.chat.completions.stream(model="fast", messages=messages, tools=[WEATHER]) as events:
                for _ in events:
                    pass
                first = events.get_final_completion()
        else:
            first = api.chat.completions.create(model="fast", messages=messages, tools=[WEATHER])
        calls = first.choices[0].message.tool_calls
        assert first.choices[0].finish_reason == "tool_calls" and calls is not None
        call = calls[0]
        assert call.type == "function" and json.loads(call.function.arguments) == {"query": "Oslo"}
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "sun"}]
        second = api.chat.completions.create(model="fast", messages=messages, tools=[WEATHER], seed=5)
    assert second.choices[0].message.content == "tool said: sun"
    assert upstream.requests[-1]["seed"] == 5
    assert upstream.requests[-1]["messages"][1]["tool_calls"][0]["id"] == call.id


def test_an_appended_instruction_keeps_the_wire_form() -> None:
    parts = Message(role="user", content="look", wire={"role": "user", "content": [{"type": "text", "text": "look"}]})
    text = Message(role="user", content="hi", wire={"role": "user", "content": "hi", "name": "ann"})
    tools = Message(role="assistant", content="", wire={"role": "assistant", "content": None, "tool_calls": []})
    assert wire_message(with_text_appended(parts, "Think."))["content"] == [
        {"type": "text", "text": "look"}, {"type": "text", "text": "Think."}]
    assert wire_message(with_text_appended(text, "Think.")) == {"role": "user", "content": "hi\n\nThink.", "name": "ann"}
    assert wire_message(with_text_appended(tools, "Think."))["content"] == "Think."
    assert with_text_appended(parts, "Think.")["content"] == "look\n\nThink."
