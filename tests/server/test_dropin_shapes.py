"""Request shapes OpenAI's spec allows, on the routed path: each is served (200), none is refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import Proxy, StartProxy

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
USER = {"role": "user", "content": "an easy one"}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "strict": True, "schema": {"type": "object", "properties": {}}}}

SHAPES: dict[str, dict[str, Any]] = {
    "text-parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]},
    "developer-and-name": {"messages": [{"role": "developer", "content": "be brief"}, {**USER, "name": "ann"}]},
    "tool-turns": {"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]}],
                   "tools": [TOOL]},
    "assistant-refusal": {"messages": [USER, {"role": "assistant", "content": None, "refusal": "no"}, USER]},
    "named-tool-choice": {"messages": [USER], "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "f"}},
                          "parallel_tool_calls": True},
    "json-schema": {"messages": [USER], "response_format": SCHEMA},
    "json-object": {"messages": [USER], "response_format": {"type": "json_object"}},
    "provider-hints": {"messages": [USER], "service_tier": "flex", "store": True, "prompt_cache_key": "k",
                       "prompt_cache_retention": "24h", "safety_identifier": "s", "user": "u", "verbosity": "low"},
    "sampling-controls": {"messages": [USER], "seed": 1, "logprobs": True, "top_logprobs": 3, "logit_bias": {"7": 5},
                          "presence_penalty": -1.5, "frequency_penalty": 2, "stop": ["x"], "max_completion_tokens": 9},
    "reasoning-effort": {"messages": [USER], "reasoning_effort": "low"},
    "hard-with-tools": {"messages": [{"role": "user", "content": "a hard one"}], "tools": [TOOL]},
}


@pytest.fixture(scope="module")
def proxy(start_module_proxy: StartProxy) -> Proxy:
    return start_module_proxy()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_spec_shapes_are_served_on_the_routed_path(proxy: Proxy, shape: dict[str, Any]) -> None:
    response = httpx.post(f"{proxy.api}/chat/completions", json={"model": "router", **shape}, timeout=10)
    assert response.status_code == 200, response.text
    if "tools" in shape and "hard" in str(shape["messages"]):
        # The multi-sample tier votes on the canonical tool calls, and the header says so.
        assert response.headers["x-router-tier"] == "deep"
        assert response.headers["x-router-strategy"] == "self_consistency (votes on tool_calls)"
