"""Read and validate a chat-completions request body: every mistake is a 400 that names the field.

Parameters the proxy honours: model, messages, max_tokens / max_completion_tokens, temperature,
top_p, stop, n (1 only), stream, stream_options.include_usage, metadata, user. OpenAI
parameters it cannot honour (tools, response_format other than text, logprobs, seed...) are
refused with code `unsupported_parameter`, unless they carry their neutral value (tools: [],
presence_penalty: 0...); `null` counts as absent. Unknown names are refused as OpenAI does.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from core.llm import Message
from core.errors import InvalidRequest
from router.execution import RequestOptions

ROLES = ("system", "developer", "user", "assistant")
HONOURED = frozenset(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
        "n", "stream", "stream_options", "metadata", "user",
    }
)
# OpenAI parameters refused unless they carry the value that changes nothing.
NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "tools": ([],),
    "tool_choice": ("none",),
    "parallel_tool_calls": (True, False),
    "functions": ([],),
    "function_call": ("none",),
    "response_format": ({"type": "text"},),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "store": (False,),
    "service_tier": ("auto", "default"),
    "modalities": (["text"],),
    "seed": (),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "web_search_options": (),
    "verbosity": (),
    "prompt_cache_key": (),
    "safety_identifier": (),
}
MESSAGE_KEYS = frozenset({"role", "content", "name", "refusal"})
MAX_STOP = 4
MAX_METADATA = 16


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat-completions request."""

    model: str
    messages: tuple[Message, ...]
    options: RequestOptions
    stream: bool = False
    include_usage: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None

    @property
    def query(self) -> str:
        """The text the classifier scores: the last user message (the last message if none)."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return self.messages[-1]["content"]

    @property
    def conversation(self) -> str:
        """All message text, for the prompt-length estimate of rules."""
        return "\n".join(message["content"] for message in self.messages)


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, refusing bodies over `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise InvalidRequest(
            "The request body is empty; send a JSON object with `model` and `messages`.", code="invalid_json"
        )
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            f"The request body is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}); send a JSON object with `model` and `messages`.",
            code="invalid_json",
        ) from None
    except (UnicodeDecodeError, RecursionError):
        raise InvalidRequest(
            "The request body is not valid UTF-8 JSON, or is nested too deeply; send a plain JSON object.",
            code="invalid_json",
        ) from None
    except ValueError:
        # After JSONDecodeError and UnicodeDecodeError (both ValueErrors): what is left is int()'s
        # refusal of an integer past sys.get_int_max_str_digits(), a guard against quadratic parsing.
        raise InvalidRequest(
            "The request body holds an integer with too many digits (more than "
            f"{sys.get_int_max_str_digits()}); send numbers of ordinary size.",
            code="invalid_json",
        ) from None
    if _SURROGATE_ESCAPE.search(body) is not None:
        _refuse_lone_surrogates(parsed)
    return parsed


# JSON may escape a UTF-16 surrogate (`\ud83d`); a pair decodes to one character, but a lone half
# (a string cut through an emoji) decodes to text that no encoder accepts, so it would fail later,
# in the classifier's batch, the upstream call or the ledger. The rule: such a body is a 400.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(parsed: Any) -> None:
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "The request body holds a lone UTF-16 surrogate escape (such as \\ud800 without its pair), "
            "which is not text; send whole characters (cut strings between characters, not inside an emoji).",
            code="invalid_json",
        ) from None


def _too_large(size: int, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"The request body is {size} bytes or more, over this proxy's limit of {limit} bytes; "
        "shorten the conversation (or ask the operator to raise ROUTER_MAX_BODY_BYTES).",
        code="request_too_large",
    )


def parse_chat_request(body: Any, *, max_tokens_limit: int, max_messages: int) -> ChatRequest:
    """Validate a parsed body; InvalidRequest names the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {_json_type(body)}.", code="invalid_json"
        )
    present = {key: value for key, value in body.items() if value is not None}
    for key, value in present.items():
        if key in HONOURED:
            continue
        if key in NEUTRAL:
            if value in NEUTRAL[key]:
                continue
            raise InvalidRequest(
                f"{key}: is not supported by this router (see docs/proxy.md for what is); remove it.",
                param=key, code="unsupported_parameter",
            )
        raise InvalidRequest(f"Unrecognized request argument supplied: {key}.", param=key, code="unknown_parameter")
    model = present.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "model: is required and must be a non-empty string, e.g. \"router\" or a tier name.",
            param="model", code="missing_required_parameter" if model is None else "invalid_type",
        )
    messages = _messages(present.get("messages"), max_messages)
    stream = _bool(present, "stream", False)
    include_usage = False
    if "stream_options" in present:
        stream_options = present["stream_options"]
        if not stream:
            raise InvalidRequest(
                "stream_options: is only allowed when stream is true.", param="stream_options", code="invalid_value"
            )
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
            raise InvalidRequest(
                "stream_options: must be an object with only `include_usage` (true or false).",
                param="stream_options", code="invalid_value",
            )
        include_usage = _bool(stream_options, "include_usage", False, "stream_options.include_usage")
    n = _int(present, "n", 1, 1)
    if n != 1:
        raise InvalidRequest(
            "n: only 1 is supported; the router decides how many samples to draw. Send separate requests instead.",
            param="n", code="unsupported_value",
        )
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        options=RequestOptions(
            max_tokens=_max_tokens(present, max_tokens_limit),
            temperature=_number(present, "temperature", 0.0, 2.0, closed_low=True),
            top_p=_number(present, "top_p", 0.0, 1.0, closed_low=False),
            stop=_stop(present.get("stop")),
        ),
        stream=stream,
        include_usage=include_usage,
        metadata=_metadata(present.get("metadata")),
        user=_string(present, "user"),
    )


def _messages(value: Any, max_messages: int) -> tuple[Message, ...]:
    if value is None:
        raise InvalidRequest(
            "messages: is required: a list of {\"role\": ..., \"content\": ...} objects.",
            param="messages", code="missing_required_parameter",
        )
    if not isinstance(value, list):
        raise InvalidRequest(
            f"messages: must be a list of message objects, not {_json_type(value)}.", param="messages", code="invalid_type"
        )
    if not value:
        raise InvalidRequest("messages: must contain at least one message.", param="messages", code="invalid_value")
    if len(value) > max_messages:
        raise InvalidRequest(
            f"messages: {len(value)} messages is over the limit of {max_messages}; shorten the conversation.",
            param="messages", code="invalid_value",
        )
    return tuple(_message(item, f"messages[{index}]") for index, item in enumerate(value))


def _message(item: Any, where: str) -> Message:
    if not isinstance(item, dict):
        raise InvalidRequest(
            f"{where}: must be an object with `role` and `content`, not {_json_type(item)}.", param=where, code="invalid_type"
        )
    role = item.get("role")
    if role in ("tool", "function") or item.get("tool_calls") or item.get("function_call"):
        raise InvalidRequest(
            f"{where}.role: tool and function messages need tool calling, which this router does not support.",
            param=f"{where}.role", code="unsupported_parameter",
        )
    extra = sorted(set(item) - MESSAGE_KEYS - {"tool_calls", "function_call"})
    if extra:
        raise InvalidRequest(f"{where}.{extra[0]}: is not a message field; remove it.", param=f"{where}.{extra[0]}", code="unknown_parameter")
    if not isinstance(role, str) or role not in ROLES:
        shown = "missing" if role is None else repr(role)
        raise InvalidRequest(
            f"{where}.role: {shown} is not a role; use one of {', '.join(ROLES)}.", param=f"{where}.role", code="invalid_value"
        )
    content = _content(item.get("content"), f"{where}.content")
    return Message(role=role, content=content)


def _content(value: Any, where: str) -> str:
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest(
                    f"{where}[{index}]: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported; "
                    "images, audio and files are not.",
                    param=f"{where}[{index}]", code="unsupported_parameter",
                )
            parts.append(part["text"])
        value = "\n".join(parts)
    if value is None:
        raise InvalidRequest(f"{where}: is required: the message's text.", param=where, code="missing_required_parameter")
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: must be a string, not {_json_type(value)}.", param=where, code="invalid_type")
    if not value.strip():
        raise InvalidRequest(f"{where}: must not be empty; send the message's text.", param=where, code="invalid_value")
    return value


def _max_tokens(present: Mapping[str, Any], limit: int) -> int | None:
    values = {key: present[key] for key in ("max_tokens", "max_completion_tokens") if key in present}
    if len(values) == 2 and values["max_tokens"] != values["max_completion_tokens"]:
        raise InvalidRequest(
            "max_tokens and max_completion_tokens disagree; send only one of them.",
            param="max_completion_tokens", code="invalid_value",
        )
    for key in values:
        number = _int(present, key, None, 1)
        if number is not None and number > limit:
            raise InvalidRequest(
                f"{key}: {number} is more than this proxy allows ({limit}); ask for fewer tokens.",
                param=key, code="invalid_value",
            )
        return number
    return None


def _int(present: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    if key not in present:
        return default
    value = present[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key}: must be an integer, not {_json_type(present[key])}.", param=key, code="invalid_type")
    if value < minimum:
        raise InvalidRequest(f"{key}: must be >= {minimum} (got {value}).", param=key, code="invalid_value")
    return value


def _number(present: Mapping[str, Any], key: str, low: float, high: float, *, closed_low: bool) -> float | None:
    if key not in present:
        return None
    value = present[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key}: must be a number, not {_json_type(value)}.", param=key, code="invalid_type")
    if not math.isfinite(value):
        raise InvalidRequest(
            f"{key}: must be a finite number; NaN and Infinity are not allowed (got {value}).",
            param=key, code="invalid_value",
        )
    if not (low <= value if closed_low else low < value) or value > high:
        bracket = "[" if closed_low else "("
        raise InvalidRequest(f"{key}: must be in {bracket}{low:g}, {high:g}] (got {value}).", param=key, code="invalid_value")
    return float(value)


def _bool(present: Mapping[str, Any], key: str, default: bool, name: str | None = None) -> bool:
    value = present.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name or key}: must be true or false, not {_json_type(value)}.", param=name or key, code="invalid_type")
    return value


def _string(present: Mapping[str, Any], key: str) -> str | None:
    value = present.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{key}: must be a string, not {_json_type(value)}.", param=key, code="invalid_type")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP
        or any(not isinstance(s, str) or not s for s in stops)
    ):
        raise InvalidRequest(
            f"stop: must be a non-empty string or a list of up to {MAX_STOP} non-empty strings.", param="stop", code="invalid_value"
        )
    return tuple(stops)


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA
        or any(not isinstance(k, str) or not isinstance(v, str) for k, v in value.items())
    ):
        raise InvalidRequest(
            f"metadata: must be an object of at most {MAX_METADATA} string keys and string values.",
            param="metadata", code="invalid_value",
        )
    return dict(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
