"""OpenAI-shaped bodies: chat completions, streamed chunks (SSE), and errors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from core.llm import Relayed
from router.execution import Choice

DONE = b"data: [DONE]\n\n"
_PIECES = re.compile(r"\S+\s*|\s+")  # word-sized pieces for answers that did not stream upstream


def dumps(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def usage_body(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


ToolCalls = Sequence[Mapping[str, Any]]


def message_body(choice: Choice) -> dict[str, Any]:
    """An assistant message; an answer that only calls tools (or a function, or answers in audio) has `content: null`."""
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None, **choice.relayed.message}
    if choice.tool_calls:
        message["tool_calls"] = [dict(call) for call in choice.tool_calls]
    if choice.tool_calls or set(choice.relayed.message) & {"function_call", "audio"}:
        message["content"] = choice.text or None
    return message


def completion_body(
    completion_id: str, model: str, choices: Sequence[Choice], input_tokens: int, output_tokens: int, fingerprint: str,
) -> bytes:
    """A whole `chat.completion` object; `choices` in index order."""
    return dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
            "choices": [
                {
                    "index": index, "message": message_body(choice),
                    "logprobs": choice.relayed.logprobs, "finish_reason": choice.finish_reason,
                }
                for index, choice in enumerate(choices)
            ],
            "usage": usage_body(input_tokens, output_tokens),
        }
    )


class ChunkWriter:
    """Makes the SSE events of one streamed completion."""

    def __init__(self, completion_id: str, model: str, fingerprint: str) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fingerprint,
        }

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + dumps({**self._head, "choices": choices, **extra}) + b"\n\n"

    def role(self, choice: int = 0) -> bytes:
        """The first chunk of a choice: the assistant role and empty content."""
        return self._delta(choice, {"role": "assistant", "content": ""})

    def text(self, piece: str, choice: int = 0) -> bytes:
        """A content delta."""
        return self._delta(choice, {"content": piece})

    def tool_calls(self, calls: ToolCalls, choice: int = 0) -> bytes:
        """The answer's tool calls, each whole in one delta (clients join deltas by `index`)."""
        return self._delta(choice, {"tool_calls": [{"index": index, **call} for index, call in enumerate(calls)]})

    def relayed(self, relayed: Relayed, choice: int = 0) -> bytes | None:
        """One delta with what the answer holds beside text and tool calls (function_call, audio, refusal)
        and its logprobs, whole (clients join deltas); None when there is nothing."""
        if not relayed.message and relayed.logprobs is None:
            return None
        return self._event(
            [{"index": choice, "delta": dict(relayed.message), "logprobs": relayed.logprobs, "finish_reason": None}]
        )

    def finish(self, reason: str, choice: int = 0) -> bytes:
        """The chunk carrying finish_reason."""
        return self._event([{"index": choice, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def _delta(self, choice: int, delta: dict[str, Any]) -> bytes:
        return self._event([{"index": choice, "delta": delta, "logprobs": None, "finish_reason": None}])

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        """The final usage chunk (stream_options.include_usage)."""
        return self._event([], usage=usage_body(input_tokens, output_tokens))


def error_event(message: str, error_type: str, code: str | None) -> bytes:
    """An error after streaming began, when the status code can no longer change."""
    return b"data: " + dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}}) + b"\n\n"


def pieces(text: str) -> Iterator[str]:
    """Split a finished answer into word-sized deltas."""
    return (match.group(0) for match in _PIECES.finditer(text))


def error_body(message: str, error_type: str, param: str | None, code: str | None) -> bytes:
    """OpenAI's error object."""
    return dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})
