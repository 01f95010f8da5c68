"""Drop-in with real client libraries: LangChain's ChatOpenAI and LiteLLM's SDK pointed at the proxy.

Each on the routed path (`router`, which picks `fast` here), a forced self-consistency tier
(`deep`, which answers tools and response_format with one direct call) and pass-through
(`up-model`), all against the real test upstream over HTTP (tests/server/upstream.py).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.server.conftest import Proxy
from tests.server.support import WEATHER, City
from tests.server.upstream import Upstream

MODELS = ["router", "deep", "up-model"]
UPSTREAM_MODEL = {"router": "fast-model", "deep": "deep-model", "up-model": "up-model"}  # who answered each path


@tool
def get_weather(query: str) -> str:
    """The weather in a city."""
    return f"rain in {query}"


class Reply(pydantic.BaseModel):
    reply: str


def chat_model(proxy: Proxy, model: str, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=proxy.api, api_key=pydantic.SecretStr("unused"), max_retries=0, timeout=20, **options)


# --- LangChain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_langchain_bind_tools_two_turn_loop(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    with_tools = chat_model(proxy, model).bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage("Oslo")]
    first = with_tools.invoke(messages)
    assert isinstance(first, AIMessage)
    (call,) = first.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"query": "Oslo"})
    assert upstream.requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    assert upstream.requests[-1]["model"] == UPSTREAM_MODEL[model]
    # deep draws its three samples in one call and votes on their canonical tool calls
    assert upstream.requests[-1].get("n") == (3 if model == "deep" else None)
    messages += [first, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    second = with_tools.invoke(messages)
    assert second.content == "tool said: rain in Oslo"
    assert upstream.requests[-1]["messages"][1]["tool_calls"][0]["id"] == call["id"]


@pytest.mark.parametrize("model", MODELS)
def test_langchain_streamed_tool_calls_reassemble(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    with_tools = chat_model(proxy, model).bind_tools([get_weather])
    chunks = list(with_tools.stream([HumanMessage("Bergen")]))
    assert upstream.requests[-1]["model"] == UPSTREAM_MODEL[model]
    whole: Any = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert isinstance(whole, AIMessageChunk)
    (call,) = whole.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"query": "Bergen"})


@pytest.mark.parametrize("model", MODELS)
def test_langchain_with_structured_output(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    city = chat_model(proxy, model).with_structured_output(City).invoke("a city")
    assert city == City(name="x", population=1, coastal=True)
    sent = upstream.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "City"
    assert upstream.requests[-1]["model"] == UPSTREAM_MODEL[model]
    reply = chat_model(proxy, model).with_structured_output(Reply, method="json_mode").invoke("answer in JSON: hello")
    assert reply == Reply(reply="answer in JSON: hello")


@pytest.mark.parametrize("model", MODELS)
def test_langchain_stream(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    chunks = list(chat_model(proxy, model, stream_usage=True).stream("hello there"))
    received = upstream.requests[-1]
    assert received["model"] == UPSTREAM_MODEL[model]
    assert received.get("n") == (3 if model == "deep" else None)  # deep votes over 3 samples, then streams the winner
    whole: Any = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert isinstance(whole, AIMessageChunk)
    assert str(whole.content).strip() == "reply: hello there"
    assert len(chunks) > 2  # pieces, not one block
    assert whole.usage_metadata is not None and whole.usage_metadata["input_tokens"] > 0


# --- LiteLLM's SDK as a client -------------------------------------------------------------------


def litellm_call(proxy: Proxy, model: str, messages: list[Any], **options: Any) -> Any:
    import litellm  # after the autouse fixture set LITELLM_LOCAL_MODEL_COST_MAP (no price map download)

    return litellm.completion(
        model=f"openai/{model}", api_base=proxy.api, api_key="x", messages=messages, num_retries=0, timeout=20, **options
    )


@pytest.mark.parametrize("model", MODELS)
def test_litellm_sdk_tool_loop(served: tuple[Proxy, Upstream], model: str) -> None:
    proxy, upstream = served
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    first = litellm_call(proxy, model, messages, tools=[WEATHER])
    assert upstream.requests[-1]["model"] == UPSTREAM_MODEL[model]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"query": "Oslo"}
    messages += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sun"}]
    second = litellm_call(proxy, model, messages, tools=[WEATHER])
    assert second.choices[0].message.content == "tool said: sun"


@pytest.mark.parametrize("model", MODELS)
def test_litellm_sdk_streaming_text_and_tool_calls(served: tuple[Proxy, Upstream], model: str) -> None:
    import litellm

    proxy, upstream = served
    messages: list[Any] = [{"role": "user", "content": "hello there"}]
    chunks = list(litellm_call(proxy, model, messages, stream=True, stream_options={"include_usage": True}))
    assert upstream.requests[-1]["model"] == UPSTREAM_MODEL[model]
    text: Any = litellm.stream_chunk_builder(chunks, messages=messages)
    assert text is not None and text.choices[0].message.content.strip() == "reply: hello there"
    assert text.usage.prompt_tokens > 0
    asked: list[Any] = [{"role": "user", "content": "Bergen"}]
    calls: Any = litellm.stream_chunk_builder(list(litellm_call(proxy, model, asked, tools=[WEATHER], stream=True)), messages=asked)
    assert calls is not None
    (call,) = calls.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"query": "Bergen"}
