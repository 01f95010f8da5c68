"""Every bad input gets a 400 in OpenAI's error shape naming the field; the server keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.server.conftest import Proxy, StartProxy

USER = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "fast", "messages": USER, **fields}).encode()


def without(field: str) -> bytes:
    data: dict[str, Any] = {"model": "fast", "messages": USER}
    del data[field]
    return json.dumps(data).encode()


# (case id, raw body, param named, code)
CASES: list[tuple[str, bytes, str | None, str]] = [
    ("malformed-json", b'{"model": "fast", "messages": [', None, "invalid_json"),
    ("not-an-object", b"[1, 2]", None, "invalid_json"),
    ("empty-body", b"", None, "invalid_json"),
    ("deeply-nested", b"[" * 1500 + b"]" * 1500, None, "invalid_json"),
    ("missing-messages", without("messages"), "messages", "missing_required_parameter"),
    ("messages-a-string", body(messages="hi"), "messages", "invalid_type"),
    ("messages-empty", body(messages=[]), "messages", "invalid_value"),
    ("message-not-object", body(messages=["hi"]), "messages[0]", "invalid_type"),
    ("unknown-role", body(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role", "invalid_value"),
    ("missing-role", body(messages=[{"content": "hi"}]), "messages[0].role", "invalid_value"),
    ("tool-without-id", body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id", "missing_required_parameter"),
    ("user-tool-calls", body(messages=[{"role": "user", "content": "x", "tool_calls": []}]), "messages[0].tool_calls", "invalid_value"),
    ("missing-content", body(messages=[{"role": "user"}]), "messages[0].content", "missing_required_parameter"),
    ("number-content", body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "invalid_type"),
    ("image-part-on-a-text-tier", body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
     "messages", "unsupported_content"),
    ("audio-part-malformed", body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
     "messages[0].content[0]", "invalid_value"),
    ("audio-part-on-a-text-tier",
     body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]}]),
     "messages", "unsupported_content"),
    ("file-part-on-a-text-tier",
     body(messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]),
     "messages", "unsupported_content"),
    ("unknown-part-type", body(messages=[{"role": "user", "content": [{"type": "video", "video": {}}]}]),
     "messages[0].content[0]", "invalid_value"),
    ("second-message-bad", body(messages=[*USER, {"role": "assistant", "content": 3}]), "messages[1].content", "invalid_type"),
    ("extra-message-key", body(messages=[{"role": "user", "content": "hi", "mood": "x"}]), "messages[0].mood", "unknown_parameter"),
    ("missing-model", without("model"), "model", "missing_required_parameter"),
    ("model-a-number", body(model=5), "model", "invalid_type"),
    ("max-tokens-zero", body(max_tokens=0), "max_tokens", "invalid_value"),
    ("max-tokens-string", body(max_tokens="10"), "max_tokens", "invalid_type"),
    ("max-tokens-bool", body(max_tokens=True), "max_tokens", "invalid_type"),
    ("temperature-high", body(temperature=3), "temperature", "invalid_value"),
    ("temperature-string", body(temperature="hot"), "temperature", "invalid_type"),
    ("top-p-negative", body(top_p=-0.1), "top_p", "invalid_value"),
    ("stop-too-many", body(stop=["a", "b", "c", "d", "e"]), "stop", "invalid_value"),
    ("n-too-many", body(n=129), "n", "invalid_value"),
    ("n-zero", body(n=0), "n", "invalid_value"),
    ("stream-string", body(stream="yes"), "stream", "invalid_type"),
    ("stream-options-alone", body(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
    ("audio-output-on-text-tiers", body(audio={"voice": "alloy", "format": "wav"}), "audio", "unsupported_content"),
    ("audio-not-an-object", body(audio="alloy"), "audio", "invalid_type"),
    ("modalities-unknown", body(modalities=["video"]), "modalities", "invalid_value"),
    ("tools-not-a-list", body(tools={"type": "function"}), "tools", "invalid_value"),
    ("tool-choice-unknown", body(tool_choice="sometimes"), "tool_choice", "invalid_value"),
    ("response-format-unknown", body(response_format={"type": "yaml"}), "response_format", "invalid_value"),
    ("seed-a-string", body(seed="1"), "seed", "invalid_type"),
    ("reasoning-effort-not-a-string", body(reasoning_effort=3), "reasoning_effort", "invalid_type"),
    ("unknown-param", body(colour="blue"), "colour", "unknown_parameter"),
    ("metadata-number", body(metadata={"app": 3}), "metadata", "invalid_value"),
    ("oversize-body", body(messages=[{"role": "user", "content": "x" * 5000}]), None, "request_too_large"),
]


@pytest.fixture(scope="module")
def proxy(start_module_proxy: StartProxy) -> Proxy:
    return start_module_proxy(max_body_bytes=4096)


@pytest.mark.parametrize(("raw", "param", "code"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_a_400_naming_the_field(proxy: Proxy, raw: bytes, param: str | None, code: str) -> None:
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert error["code"] == code
        if param is not None:
            assert param in error["message"]
        assert response.headers["x-router-request-id"]
        # The server keeps serving.
        assert http.post("/chat/completions", content=body()).status_code == 200


def test_neutral_values_of_unsupported_parameters_are_accepted(proxy: Proxy) -> None:
    neutral = body(tools=[], tool_choice="none", presence_penalty=0, response_format={"type": "text"},
                   logprobs=False, temperature=None, max_completion_tokens=8,
                   messages=[{"role": "system", "content": "be brief"},
                             {"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post("/chat/completions", content=neutral)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "raw",
    [
        body(messages=[{"role": "user", "content": ""}]),
        body(messages=[{"role": "user", "content": "  \n "}]),
        body(messages=[{"role": "user", "content": "hi"}, {"role": "function", "name": "f", "content": "x"}]),
        body(functions=[{"name": "f", "parameters": {}}], function_call="auto"),
        body(top_p=0, max_tokens=5, max_completion_tokens=6, reasoning_effort="max"),
        body(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "audio": {"id": "a1"}}]),
        body(max_tokens=10**12),  # a ceiling: lowered to the proxy's limit, then to the tier's
        body(max_completion_tokens=10**9),
        body(modalities=[]),
    ],
    ids=["empty-content", "blank-content", "function-role", "legacy-functions", "spec-edges", "assistant-audio",
         "max-tokens-huge", "max-completion-tokens-huge", "no-modalities"],
)
def test_shapes_openai_accepts_are_served(proxy: Proxy, raw: bytes) -> None:
    # OpenAI's schema allows these; the proxy forwards them in their own form instead of refusing.
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        response = http.post("/chat/completions", content=raw)
    assert response.status_code == 200, response.text


def test_unknown_path_and_method_use_the_error_shape(proxy: Proxy) -> None:
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        missing = http.get("/v1/nothing")
        wrong = http.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
