"""A tiny OpenAI-compatible upstream for tests, as a raw ASGI app: its behaviour follows the model name.

- `fail...`: HTTP 500 with an OpenAI error body.
- `slow...`: answers after 2 s (for timeouts).
- `drip...`: streams 100 chunks 50 ms apart and notes when the client (the proxy) goes away.
- anything else: `reply: <last user message>` at once, plain or streamed, with usage.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.types import Receive, Scope, Send


def _completion(model: str, text: str, prompt_tokens: int) -> bytes:
    return json.dumps(
        {
            "id": "up-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_tokens + len(text.split())},
        }
    ).encode()


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": model,
                            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class Upstream:
    """The ASGI app; `requests` lists the JSON bodies received, `disconnected` is set when a drip client leaves."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.drip_chunks_sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        self.requests.append(body)
        model = str(body.get("model", ""))
        user = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        if model.startswith("fail"):
            await self._send(send, 500, b'{"error": {"message": "upstream exploded", "type": "server_error"}}')
            return
        if model.startswith("slow"):
            await asyncio.sleep(2.0)
        text = f"reply: {user[-1] if user else ''}"
        if model.startswith("drip"):
            await self._drip(model, receive, send)
            return
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            for word in text.split(" "):
                await send({"type": "http.response.body", "body": _chunk(model, {"content": word + " "}), "more_body": True})
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()), "total_tokens": 0}
            await send({"type": "http.response.body", "body": _chunk(model, {}, "stop"), "more_body": True})
            await send({"type": "http.response.body", "body": _chunk(model, {}, usage=usage), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
            return
        await self._send(send, 200, _completion(model, text, prompt_tokens))

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
