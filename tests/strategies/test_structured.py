"""Votes over tool calls and JSON: what counts as the same answer, and the sampling strategies voting on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from core.llm import GenerationParams, Message
from router.backends import FakeBackend
from router.backends.fake import FakeReply
from strategies import (
    STEP_BY_STEP,
    BestOfN,
    SelfConsistency,
    canonical_json,
    canonical_tool_calls,
    structured_form,
)

QUESTION: list[Message] = [{"role": "user", "content": "Weather in Oslo and Bergen?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_are_the_same_answer_whatever_their_ids_key_order_spacing_and_order() -> None:
    one = [call("a1", "get_weather", '{"city": "Oslo", "unit": "C"}'), call("a2", "get_weather", '{"city":"Bergen"}')]
    two = [call("b9", "get_weather", '{"city":"Bergen"}'), call("b8", "get_weather", '{ "unit":"C","city":"Oslo" }')]
    assert canonical_tool_calls(one) == canonical_tool_calls(two)
    assert canonical_tool_calls(one) != canonical_tool_calls([call("a1", "get_weather", '{"city": "Oslo"}')])
    assert canonical_tool_calls([call("a", "f", "{}")]) != canonical_tool_calls([call("a", "g", "{}")])
    # Arguments that are not JSON are compared as sent, stripped.
    assert canonical_tool_calls([call("a", "f", " not json ")]) == canonical_tool_calls([call("b", "f", "not json")])


def test_json_answers_compare_by_value() -> None:
    assert canonical_json('{"a": 1, "b": [1, 2]}') == canonical_json('{"b":[1,2],"a":1}') == '{"a":1,"b":[1,2]}'
    assert canonical_json('{"a": 1}') != canonical_json('{"a": 2}')
    assert canonical_json("the answer is 4") is None


@pytest.mark.parametrize(
    ("fields", "form"),
    [
        ({"tools": TOOLS}, "tool_calls"),
        ({"functions": [{"name": "f"}]}, "tool_calls"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "json"),
        ({"response_format": {"type": "json_object"}}, "json"),
        ({"response_format": {"type": "text"}}, None),
        ({"seed": 1}, None),
    ],
)
def test_the_form_of_an_answer_follows_the_clients_fields(fields: dict[str, Any], form: str | None) -> None:
    assert structured_form(fields) == form


def scripted(replies: Sequence[FakeReply]) -> FakeBackend:
    return FakeBackend(list(replies))


def test_self_consistency_votes_on_the_canonical_tool_calls() -> None:
    oslo = '{"city": "Oslo"}'
    backend = scripted([
        FakeReply("", tool_calls=(call("x1", "get_weather", '{"city": "Bergen"}'),)),
        FakeReply("", tool_calls=(call("x2", "get_weather", oslo),)),
        FakeReply("", tool_calls=(call("x3", "get_weather", '{ "city":"Oslo" }'),)),
    ])
    params = GenerationParams(max_tokens=32, extra={"tools": TOOLS})
    result = asyncio.run(SelfConsistency(n=3).run(backend, QUESTION, params))
    # Two of three samples made the same call (ids and spacing differ): it wins, as its first sample made it.
    assert result.confidence == pytest.approx(2 / 3)
    assert result.tool_calls == (call("x2", "get_weather", oslo),)
    assert result.finish_reason == "tool_calls"
    # No written-out reasoning is asked for: the answer is a call, not text.
    (sent,) = backend.calls
    assert sent.params.n == 3 and STEP_BY_STEP not in json.dumps(sent.messages)


def test_a_text_answer_among_tool_calls_is_a_vote_of_its_own() -> None:
    backend = scripted([
        FakeReply("It is sunny."),
        FakeReply("", tool_calls=(call("y1", "get_weather", '{"city": "Oslo"}'),)),
        FakeReply("it is sunny"),
    ])
    params = GenerationParams(max_tokens=32, extra={"tools": TOOLS})
    result = asyncio.run(SelfConsistency(n=3, chain_of_thought=False).run(backend, QUESTION, params))
    assert (result.text, result.tool_calls, result.confidence) == ("It is sunny.", None, pytest.approx(2 / 3))


def test_best_of_n_votes_on_normalised_json_and_unparsable_text_never_wins() -> None:
    backend = scripted([FakeReply('{"b": 2, "a": 1}'), FakeReply("sure! {"), FakeReply('{"a":1,"b":2}')])
    params = GenerationParams(max_tokens=32, extra={"response_format": {"type": "json_object"}})
    result = asyncio.run(BestOfN(n=3).run(backend, QUESTION, params))
    assert result.text == '{"b": 2, "a": 1}'  # the first sample that gave the winning value, as it wrote it
    assert result.answer == '{"a":1,"b":2}'
    assert result.confidence == pytest.approx(2 / 3)


def test_a_legacy_function_call_is_voted_on_like_a_tool_call() -> None:
    from core.llm import Relayed

    def legacy(arguments: str) -> FakeReply:
        return FakeReply("", relayed=Relayed({"function_call": {"name": "get_weather", "arguments": arguments}}))

    backend = scripted([legacy('{"city": "Oslo"}'), legacy('{"city": "Bergen"}'), legacy('{ "city":"Oslo"}')])
    params = GenerationParams(max_tokens=32, extra={"functions": [{"name": "get_weather"}]})
    result = asyncio.run(SelfConsistency(n=3).run(backend, QUESTION, params))
    assert result.confidence == pytest.approx(2 / 3)
    assert result.relayed.message["function_call"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
