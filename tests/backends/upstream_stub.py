"""A scripted OpenAI- and Anthropic-compatible upstream that backend tests serve with uvicorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse


@dataclass
class Reply:
    """How the stub answers one request."""

    status: int = 200
    texts: tuple[str, ...] | None = None  # None: "answer {i}" for each of the n choices
    raw: str | None = None  # a raw body instead of a chat completion
    json_body: dict[str, Any] | None = None  # an arbitrary JSON body instead of a chat completion
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 10
    tokens_per_choice: int = 3
    logprobs: tuple[float, ...] | None = None
    completion_tokens: int | None = None  # the call's output total; None: tokens_per_choice * n
    stream_usage: bool = True  # False: a stream ends without a usage chunk even when asked for one


class OpenAIStub:
    """A scripted /v1/chat/completions endpoint that records what it was sent."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.app.post("/v1/messages")(self._anthropic)
        self.root = ""
        self.url = ""

    def reset(self, *replies: Reply) -> None:
        """Answer the next requests with `replies` in order, then with plain successes."""
        self.script = list(replies)
        self.requests.clear()
        self.headers.clear()

    async def _anthropic(self, request: Request) -> Response:
        """Anthropic's Messages API, enough for one text answer after a thinking block."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.status != 200:
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": "stub refusal"}}
            return JSONResponse(error, status_code=reply.status)
        text = (reply.texts or ("The answer is 42.",))[0]
        return JSONResponse(
            {
                "id": "msg_stub",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [
                    {"type": "thinking", "thinking": "Let me think.", "signature": "stub"},
                    {"type": "text", "text": text},
                ],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.tokens_per_choice},
            }
        )

    @staticmethod
    async def _sse(body: dict[str, Any], text: str, reply: Reply) -> AsyncIterator[str]:
        """OpenAI's streaming shape: a chunk per word, a finish chunk, a usage chunk if asked, [DONE]."""

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
            choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            data: dict[str, Any] = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1,
                                    "model": body["model"], "choices": choices}
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        words = text.split(" ")
        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, finish="stop")
        if reply.stream_usage and (body.get("stream_options") or {}).get("include_usage"):
            tokens = reply.tokens_per_choice
            yield chunk({}, usage={"prompt_tokens": reply.prompt_tokens, "completion_tokens": tokens,
                                   "total_tokens": reply.prompt_tokens + tokens})
        yield "data: [DONE]\n\n"

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.raw is not None:
            return PlainTextResponse(reply.raw, status_code=reply.status, headers=reply.headers)
        if reply.json_body is not None:
            return JSONResponse(reply.json_body, status_code=reply.status, headers=reply.headers)
        if reply.status != 200:
            error = {"error": {"message": f"stub error {reply.status}", "type": "stub", "code": reply.status}}
            return JSONResponse(error, status_code=reply.status, headers=reply.headers)
        n = int(body.get("n") or 1)
        texts = reply.texts or tuple(f"answer {i}" for i in range(n))
        if body.get("stream"):
            return StreamingResponse(self._sse(body, texts[0], reply), media_type="text/event-stream")
        choices = []
        for i in range(n):
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": texts[i % len(texts)]},
                "finish_reason": "stop",
            }
            if reply.logprobs is not None:
                choice["logprobs"] = {
                    "content": [
                        {"token": "t", "logprob": value, "bytes": None, "top_logprobs": []}
                        for value in reply.logprobs
                    ]
                }
            choices.append(choice)
        completion_tokens = reply.tokens_per_choice * n if reply.completion_tokens is None else reply.completion_tokens
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": choices,
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": reply.prompt_tokens + completion_tokens,
                },
            },
            headers=reply.headers,
        )
