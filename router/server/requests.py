"""Read and validate a chat-completions request body: every mistake is a 400 that names the field.

The router reads: model, messages (their text), max_tokens / max_completion_tokens, temperature,
top_p, stop, n (1 only), stream, stream_options.include_usage, metadata (rules' input) and
reasoning_effort. The rest of OpenAI's fields (tools, tool_choice, response_format, seed,
logprobs, penalties, user...) are checked for shape and forwarded to the tier verbatim. Images,
audio (input parts and audio output) and file parts are capabilities a tier declares
(`vision`, `audio`, `files` in router.yaml): a request that needs one goes only to such tiers.
Pass-through forwards everything the client sent except model, messages, stream and
stream_options (docs/proxy.md, "Drop-in surface"). `null` counts as absent. Unknown names are
refused as OpenAI does.
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

from core.errors import InvalidRequest
from core.llm import REASONING_EFFORTS, Message, ReasoningEffort
from policies.schema import Capability
from router.execution import RequestOptions, audio_output_field

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Fields the proxy itself owns: never forwarded as sent (the model is renamed, messages and the
# stream settings are rebuilt by the backend, which needs usage in every stream to account it).
OWNED = frozenset({"model", "messages", "stream", "stream_options"})
# Fields the router reads; pass-through forwards them as sent, tiers get the router's values.
READ = frozenset(
    {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "metadata", "reasoning_effort"}
)
# OpenAI fields the router does not read: checked for shape, forwarded verbatim.
FORWARDED = frozenset(
    {
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "seed", "logprobs", "top_logprobs",
        "presence_penalty", "frequency_penalty", "logit_bias", "user", "service_tier", "store",
        "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "safety_identifier", "prediction",
        "verbosity", "web_search_options", "modalities", "moderation", "audio",
        # OpenAI's deprecated function calling still works upstream: forwarded like tools.
        "functions", "function_call",
    }
)
# Values that change nothing, which tiers are not sent (OpenAI itself refuses `tools: []`).
NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "tools": ([],),
    "response_format": ({"type": "text"},),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "modalities": (["text"], []),
}
# `audio` on an assistant turn points at an earlier audio answer; `function_call` is the deprecated
# form of tool_calls: both go upstream in the message's own form.
MESSAGE_KEYS = frozenset({"role", "content", "name", "refusal", "tool_calls", "tool_call_id", "function_call", "audio"})
PART_TYPES = ("text", "image_url", "refusal", "input_audio", "file")
# Content parts that need a tier capability, and the part's object that must be there.
PART_NEEDS: Mapping[str, Capability] = {"image_url": "vision", "input_audio": "audio", "file": "files"}
MODALITIES = ("text", "audio")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_STOP = 4
MAX_METADATA = 16
MAX_N = 128  # OpenAI's own limit; budgets reserve n times a request's worst case
MAX_METADATA_KEY = 64  # OpenAI's limits on metadata
MAX_METADATA_VALUE = 512


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
        for message in self.messages[::-1]:
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
    for key in present:
        if key not in OWNED and key not in READ and key not in FORWARDED:
            raise InvalidRequest(f"Unrecognized request argument supplied: {key}.", param=key, code="unknown_parameter")
    model = present.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "model: is required and must be a non-empty string, e.g. \"router\" or a tier name.",
            param="model", code="missing_required_parameter" if model is None else "invalid_type",
        )
    messages, needs = _messages(present.get("messages"), max_messages)
    stream = _bool(present, "stream", False)
    include_usage = False
    if "stream_options" in present:
        stream_options = present["stream_options"]
        if not stream:
            raise InvalidRequest(
                "stream_options: is only allowed when stream is true.", param="stream_options", code="invalid_value"
            )
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage", "include_obfuscation"}:
            raise InvalidRequest(
                "stream_options: must be an object with only `include_usage` (true or false).",
                param="stream_options", code="invalid_value",
            )
        include_usage = _bool(stream_options, "include_usage", False, "stream_options.include_usage")
    n = _int(present, "n", 1, 1)
    if n is None or n > MAX_N:
        raise InvalidRequest(
            f"n: at most {MAX_N} answers per request here (each is a full answer of the tier's strategy); "
            "send several requests for more.",
            param="n", code="invalid_value",
        )
    forwarded = _forwarded(present)
    effort = present.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest(
            f"reasoning_effort: must be a string such as {', '.join(REASONING_EFFORTS)}.",
            param="reasoning_effort", code="invalid_type",
        )
    known: ReasoningEffort | None = None
    if effort in REASONING_EFFORTS:
        known = effort  # type: ignore[assignment]  # checked against the Literal's values just above
    elif effort is not None:  # a level this router does not know (a provider's newer one): sent as given
        forwarded["reasoning_effort"] = effort
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        options=RequestOptions(
            max_tokens=_max_tokens(present, max_tokens_limit),
            temperature=_number(present, "temperature", 0.0, 2.0, closed_low=True),
            top_p=_number(present, "top_p", 0.0, 1.0, closed_low=True),
            stop=_stop(present.get("stop")),
            reasoning_effort=known,
            n=n,
            forwarded=forwarded,
            sent={key: value for key, value in body.items() if key not in OWNED},
            needs=needs | _output_needs(forwarded),
        ),
        stream=stream,
        include_usage=include_usage,
        metadata=_metadata(present.get("metadata")),
        user=_string(present, "user"),
    )


def _forwarded(present: Mapping[str, Any]) -> dict[str, Any]:
    """The forwarded fields a tier is sent: shapes checked, neutral values and orphan tool settings left out."""
    for key in ("user", "service_tier", "prompt_cache_key", "safety_identifier", "verbosity"):
        _string(present, key)
    for key in ("parallel_tool_calls", "logprobs", "store"):
        _bool(present, key, False)
    _int(present, "seed", None, -(2**63))
    top_logprobs = _int(present, "top_logprobs", None, 0)
    if top_logprobs is not None and top_logprobs > 20:
        raise InvalidRequest("top_logprobs: must be between 0 and 20.", param="top_logprobs", code="invalid_value")
    for key in ("presence_penalty", "frequency_penalty"):
        _number(present, key, -2.0, 2.0, closed_low=True)
    _tools(present.get("tools"))
    _tool_choice(present.get("tool_choice"))
    _response_format(present.get("response_format"))
    bias = present.get("logit_bias")
    if bias is not None and (
        not isinstance(bias, dict)
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in bias.values())
    ):
        raise InvalidRequest(
            "logit_bias: must be an object of token ids to numbers (the upstream takes -100 to 100).",
            param="logit_bias", code="invalid_value",
        )
    modalities = present.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or any(kind not in MODALITIES for kind in modalities)
    ):
        raise InvalidRequest(
            f"modalities: must be a list of {' and '.join(repr(kind) for kind in MODALITIES)}.",
            param="modalities", code="invalid_value",
        )
    audio = present.get("audio")
    if audio is not None and not isinstance(audio, dict):
        raise InvalidRequest(
            "audio: must be an object such as {\"voice\": \"alloy\", \"format\": \"wav\"}.",
            param="audio", code="invalid_type",
        )
    forwarded = {
        key: value for key, value in present.items() if key in FORWARDED and value not in NEUTRAL.get(key, ())
    }
    if "tools" not in forwarded:
        # OpenAI refuses tool settings without tools.
        forwarded.pop("tool_choice", None)
        forwarded.pop("parallel_tool_calls", None)
    return forwarded


def _output_needs(forwarded: Mapping[str, Any]) -> frozenset[Capability]:
    """What the answer asked for needs of a tier: audio output."""
    return frozenset({"audio"}) if audio_output_field(forwarded) else frozenset()


def _tools(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or any(
        not isinstance(tool, dict) or not isinstance(tool.get("type"), str)
        or (tool["type"] == "function" and not isinstance(_field(tool, "function", "name"), str))
        for tool in value
    ):
        raise InvalidRequest(
            "tools: must be a list of {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": ...}}.",
            param="tools", code="invalid_value",
        )


def _tool_choice(value: Any) -> None:
    if value is None or value in TOOL_CHOICES or (isinstance(value, dict) and isinstance(value.get("type"), str)):
        return
    raise InvalidRequest(
        f"tool_choice: must be one of {', '.join(TOOL_CHOICES)} or "
        "{\"type\": \"function\", \"function\": {\"name\": ...}}.",
        param="tool_choice", code="invalid_value",
    )


def _response_format(value: Any) -> None:
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in RESPONSE_FORMATS or (
        kind == "json_schema" and not isinstance(_field(value, "json_schema", "name"), str)
    ):
        raise InvalidRequest(
            f"response_format: must be {{\"type\": ...}} with type one of {', '.join(RESPONSE_FORMATS)}; "
            "json_schema needs {\"json_schema\": {\"name\": ..., \"schema\": ...}}.",
            param="response_format", code="invalid_value",
        )


def _messages(value: Any, max_messages: int) -> tuple[tuple[Message, ...], frozenset[Capability]]:
    """The messages, and the capabilities their content needs of a tier (images, audio, files)."""
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
    parsed = [_message(item, f"messages[{index}]") for index, item in enumerate(value)]
    return tuple(message for message, _ in parsed), frozenset().union(*(needs for _, needs in parsed))


def _message(item: Any, where: str) -> tuple[Message, frozenset[Capability]]:
    if not isinstance(item, dict):
        raise InvalidRequest(
            f"{where}: must be an object with `role` and `content`, not {_json_type(item)}.", param=where, code="invalid_type"
        )
    role = item.get("role")
    extra = sorted(set(item) - MESSAGE_KEYS)
    if extra:
        raise InvalidRequest(f"{where}.{extra[0]}: is not a message field; remove it.", param=f"{where}.{extra[0]}", code="unknown_parameter")
    if not isinstance(role, str) or role not in ROLES:
        shown = "missing" if role is None else repr(role)
        raise InvalidRequest(
            f"{where}.role: {shown} is not a role; use one of {', '.join(ROLES)}.", param=f"{where}.role", code="invalid_value"
        )
    tool_calls = item.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant" or not isinstance(tool_calls, list) or any(
            not isinstance(call, dict) or not isinstance(call.get("id"), str) for call in tool_calls
        ):
            raise InvalidRequest(
                f"{where}.tool_calls: only assistant messages carry tool_calls, a list of "
                "{\"id\": ..., \"type\": \"function\", \"function\": {\"name\": ..., \"arguments\": ...}}.",
                param=f"{where}.tool_calls", code="invalid_value",
            )
    if role == "tool" and not isinstance(item.get("tool_call_id"), str):
        raise InvalidRequest(
            f"{where}.tool_call_id: a tool message needs the id of the tool call it answers.",
            param=f"{where}.tool_call_id", code="missing_required_parameter",
        )
    # An assistant turn's content may be null (tool or function calls, audio, a refusal: OpenAI's schema
    # allows it on every assistant turn), and so may a function result's.
    optional = role in ("assistant", "function")
    text, needs = _content(item.get("content"), f"{where}.content", optional)
    message = Message(role=role, content=text)
    if set(item) != {"role", "content"} or not isinstance(item.get("content"), str):
        message["wire"] = item
    return message, needs


def _content(value: Any, where: str, optional: bool) -> tuple[str, frozenset[Capability]]:
    """The text of a message's content (text parts joined), and what its other parts need of a tier."""
    needs: set[Capability] = set()
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in PART_TYPES:
                raise InvalidRequest(
                    f"{where}[{index}].type: must be one of {', '.join(PART_TYPES)}.",
                    param=f"{where}[{index}]", code="invalid_value",
                )
            assert isinstance(part, dict)
            if kind in PART_NEEDS:
                _non_text_part(part, kind, f"{where}[{index}]")
                needs.add(PART_NEEDS[kind])
                continue
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"{where}[{index}].{kind}: must be a string.", param=f"{where}[{index}]", code="invalid_type"
                )
            texts.append(text)
        value = "\n".join(texts)
        if needs:
            return value, frozenset(needs)
    if value is None:
        if optional:
            return "", frozenset()
        raise InvalidRequest(f"{where}: is required: the message's text.", param=where, code="missing_required_parameter")
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: must be a string, not {_json_type(value)}.", param=where, code="invalid_type")
    return value, frozenset()


def _non_text_part(part: Mapping[str, Any], kind: str, where: str) -> None:
    """Check the shape of an image, audio or file part (the tier reads its data, the router does not)."""
    body = part.get(kind)
    if kind == "image_url":
        valid, shape = isinstance(_field(part, kind, "url"), str), '{"url": ...}'
    elif kind == "input_audio":
        valid, shape = isinstance(_field(part, kind, "data"), str), '{"data": <base64>, "format": "wav" or "mp3"}'
    else:
        valid, shape = isinstance(body, dict), '{"file_data": <base64>, "filename": ...} or {"file_id": ...}'
    if not valid:
        raise InvalidRequest(f"{where}.{kind}: must be {shape}.", param=where, code="invalid_value")


def _max_tokens(present: Mapping[str, Any], limit: int) -> int | None:
    # max_completion_tokens replaced max_tokens: when both are sent, it is the one that counts. It is
    # a ceiling, so one above the proxy's limit is lowered to it, as each tier's max_tokens lowers it
    # again: a client that says `model: router` cannot know every tier's limit.
    values = {key: present[key] for key in ("max_completion_tokens", "max_tokens") if key in present}
    for key in values:
        number = _int(present, key, None, 1)
        return min(number, limit) if number is not None else None
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
    if not isinstance(stops, list) or len(stops) > MAX_STOP or any(not isinstance(s, str) for s in stops):
        raise InvalidRequest(
            f"stop: must be a string or a list of up to {MAX_STOP} strings.", param="stop", code="invalid_value"
        )
    return tuple(s for s in stops if s)  # an empty stop string stops nothing


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA
        or any(
            not isinstance(k, str) or not isinstance(v, str) or len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE
            for k, v in value.items()
        )
    ):
        raise InvalidRequest(
            f"metadata: must be an object of at most {MAX_METADATA} string keys (up to {MAX_METADATA_KEY} "
            f"characters) and string values (up to {MAX_METADATA_VALUE} characters), as OpenAI's API takes.",
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


def _field(parent: Mapping[str, Any], key: str, inner: str) -> Any:
    """`parent[key][inner]`, or None when either is missing or `parent[key]` is not an object."""
    value = parent.get(key)
    return value.get(inner) if isinstance(value, dict) else None
