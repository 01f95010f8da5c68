"""W3C trace context: a client's `traceparent` (and `tracestate`) go with every upstream call of its request.

The proxy opens no span of its own, so an upstream that traces sees its call as a child of the
client's span, through every tier, sample, fallback and pass-through call. A `traceparent` that is
not valid by the W3C rules (https://www.w3.org/TR/trace-context/) is not forwarded, as the
specification tells a receiver to do; `tracestate` goes only with a valid `traceparent`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from router.server.requests import ChatRequest

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[\x21-\x7e]*)?")
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")  # printable ASCII; the specification's own limit is 512


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace context headers to forward upstream: none unless `traceparent` is valid."""
    parent = headers.get(TRACEPARENT, "").strip()
    match = _TRACEPARENT.fullmatch(parent) if len(parent) <= 256 else None
    if match is None:
        return {}
    version, trace_id, parent_id, suffix = match.group(1, 2, 3, 4)
    # ff is no version; version 00 has no fields after the flags; all-zero ids are invalid.
    if version == "ff" or (version == "00" and suffix) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return {}
    forwarded = {TRACEPARENT: parent}
    state = headers.get(TRACESTATE)
    if state is not None and _TRACESTATE.fullmatch(state.strip()):
        forwarded[TRACESTATE] = state.strip()
    return forwarded


def with_trace_context(chat: ChatRequest, headers: Mapping[str, str]) -> ChatRequest:
    """`chat` whose upstream calls carry the client's trace context, when it sent one."""
    forwarded = trace_headers(headers)
    if not forwarded:
        return chat
    return dataclasses.replace(chat, options=dataclasses.replace(chat.options, headers=forwarded))
