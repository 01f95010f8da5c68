"""A tiny OpenAI-compatible upstream for tests, as a raw ASGI app: its behaviour follows the model name.

- `fail...`: HTTP 500 with an OpenAI error body.
- `slow...`: answers after 2 s (for timeouts).
- `drip...`: streams 100 chunks 50 ms apart and notes when the client (the proxy) goes away.
- anything else: `reply: <last user message>` at once, plain or streamed, with usage, and:
  - with `tools` (and tool_choice not "none") and a user message last: a call of the first tool
    (or the one tool_choice names), arguments `{"query": <last user text>}`, finish_reason
    "tool_calls"; streamed, its id and name come in one delta and its arguments in two;
  - with a `tool` message last: `tool said: <its content>`;
  - with `response_format` json_schema: a JSON value made from the schema (strings "x", numbers 1,
    booleans true, arrays empty); json_object: `{"reply": <last user text>}`;
  - with `n`: n choices;
  - with legacy `functions` (function_call not "none") and a user message last: `message.function_call`
    of the first function, arguments `{"query": <last user text>}`, finish_reason "function_call";
  - with `audio` (audio output): `message.audio` (id, base64 data, transcript: the reply) and `content: null`;
  - with `logprobs`: `choices[].logprobs.content`, one entry per word of the reply (logprob -0.5).
  Streamed, each of these comes in pieces as OpenAI streams it (a function call's name then its
  arguments in two pieces; audio's id, then data and transcript; one logprob per word's chunk).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.types import Receive, Scope, Send


def _completion(
    model: str, text: str, prompt_tokens: int, calls: list[dict[str, Any]] | None = None, n: int = 1,
    body: dict[str, Any] | None = None,
) -> bytes:
    asked = body or {}
    message: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
    if calls:
        message["tool_calls"] = calls
    function = _legacy_call(asked)
    if function is not None:
        message.update(content=None, function_call=function)
    if asked.get("audio"):
        message.update(content=None, audio={**AUDIO, "transcript": text})
    logprobs = {"content": [_logprob(word) for word in text.split()]} if asked.get("logprobs") else None
    finish = "tool_calls" if calls else "function_call" if function is not None else "stop"
    output = len(text.split()) if not calls else len(json.dumps(calls).split())
    return json.dumps(
        {
            "id": "up-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [
                {"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish} for i in range(n)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output * n,
                      "total_tokens": prompt_tokens + output * n},
        }
    ).encode()


AUDIO = {"id": "audio_1", "data": "UklGRg==", "expires_at": 0}


def _logprob(word: str) -> dict[str, Any]:
    return {"token": word, "logprob": -0.5, "bytes": None, "top_logprobs": []}


def _legacy_call(body: dict[str, Any]) -> dict[str, str] | None:
    """The legacy `function_call` answer to a body with `functions` and a user message last, else None."""
    functions, messages = body.get("functions") or [], body.get("messages") or [{}]
    if not functions or body.get("function_call") == "none" or messages[-1].get("role") != "user":
        return None
    return {"name": functions[0]["name"], "arguments": json.dumps({"query": text_of(messages[-1].get("content"))})}


def text_of(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text")
    return content if isinstance(content, str) else ""


def example_of(schema: Any) -> Any:
    """A value matching a simple JSON schema."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object":
        return {name: example_of(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}.get(str(kind))


def _answer(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """The reply text, or the tool calls, for a request body."""
    messages = body.get("messages", [])
    user = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    if tools and choice != "none" and last.get("role") == "user":
        name = tools[0]["function"]["name"]
        if isinstance(choice, dict):
            name = choice["function"]["name"]
        arguments = json.dumps({"query": user[-1]})
        return "", [{"id": f"call_{len(messages)}", "type": "function", "function": {"name": name, "arguments": arguments}}]
    if last.get("role") == "tool":
        return f"tool said: {text_of(last.get('content'))}", None
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(example_of(response_format["json_schema"].get("schema"))), None
    if response_format.get("type") == "json_object":
        return json.dumps({"reply": user[-1] if user else ""}), None
    return f"reply: {user[-1] if user else ''}", None


def _chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    body: dict[str, Any] = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [] if usage else [choice]}
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _deltas(text: str, calls: list[dict[str, Any]] | None, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed answer's deltas: words of text (or of an audio transcript, after the audio's id and
    data), a legacy function call's name then its arguments in two pieces, or per tool call its id and
    name, then its arguments in two pieces."""
    function = _legacy_call(body)
    if function is not None:
        half = len(function["arguments"]) // 2
        return [{"function_call": {"name": function["name"], "arguments": ""}},
                *({"function_call": {"arguments": piece}} for piece in (function["arguments"][:half], function["arguments"][half:]))]
    if body.get("audio"):
        return [{"audio": {"id": AUDIO["id"], "expires_at": 0}}, {"audio": {"data": AUDIO["data"]}},
                *({"audio": {"transcript": word + " "}} for word in text.split(" "))]
    if not calls:
        return [{"content": word + " "} for word in text.split(" ")]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        deltas.append({"tool_calls": [head]})
        deltas.extend({"tool_calls": [{"index": index, "function": {"arguments": piece}}]} for piece in (arguments[:half], arguments[half:]))
    return deltas


async def read_body(receive: Receive) -> bytes:
    """The whole body of an ASGI HTTP request (shared by the test and bench doubles)."""
    raw = b""
    while True:
        message = await receive()
        raw += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return raw


class Upstream:
    """The ASGI app; `requests` lists the JSON bodies received, `disconnected` is set when a drip client leaves."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.drip_chunks_sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        body = json.loads(raw or b"{}")
        self.requests.append(body)
        model = str(body.get("model", ""))
        prompt_tokens = sum(len(text_of(m.get("content")).split()) for m in body.get("messages", []))
        if model.startswith("fail"):
            await self._send(send, 500, b'{"error": {"message": "upstream exploded", "type": "server_error"}}')
            return
        if model.startswith("slow"):
            await asyncio.sleep(2.0)
        text, calls = _answer(body)
        if model.startswith("drip"):
            await self._drip(model, receive, send)
            return
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            for delta in _deltas(text, calls, body):
                word = delta.get("content", "").strip()
                logprobs = {"content": [_logprob(word)]} if body.get("logprobs") and word else None
                await send({"type": "http.response.body", "body": _chunk(model, delta, logprobs=logprobs), "more_body": True})
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()) or 1, "total_tokens": 0}
            finish = "tool_calls" if calls else "function_call" if _legacy_call(body) else "stop"
            await send({"type": "http.response.body", "body": _chunk(model, {}, finish), "more_body": True})
            await send({"type": "http.response.body", "body": _chunk(model, {}, usage=usage), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            return
        await self._send(send, 200, _completion(model, text, prompt_tokens, calls, int(body.get("n") or 1), body))

    async def _drip(self, model: str, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            self.disconnected.set()

        watcher = asyncio.ensure_future(watch())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for index in range(100):
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": _chunk(model, {"content": f"w{index} "}), "more_body": True})
            self.drip_chunks_sent += 1
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        watcher.cancel()

    @staticmethod
    async def _send(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
