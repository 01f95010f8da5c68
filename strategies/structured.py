"""What a vote counts when the answers are tool calls or JSON rather than prose.

A request that carries `tools` (or the legacy `functions`) is answered by tool calls; one with
`response_format` json_object / json_schema by a JSON document. Samples of such answers differ in
ways that mean nothing (call ids, key order, whitespace, the order of parallel calls), so a vote
over their text would never agree. The canonical answer removes exactly those differences:

- tool calls: the set of (function name, arguments parsed and re-serialised with sorted keys),
  order-insensitive; a sample that answered in text instead is read as JSON when it parses, else
  by the tier's answer_type.
- JSON: the text parsed and re-serialised with sorted keys and no spaces; text that does not
  parse is no answer (it counts in the total and never wins).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

StructuredForm = Literal["tool_calls", "json"]


def structured_form(fields: Mapping[str, Any]) -> StructuredForm | None:
    """The form answers to a call with these client `fields` take (tools, response_format), or None for prose."""
    if fields.get("tools") or fields.get("functions"):
        return "tool_calls"
    response_format = fields.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in ("json_object", "json_schema"):
        return "json"
    return None


def canonical_json(text: str) -> str | None:
    """`text` as JSON with sorted keys and no spaces, or None when it is not JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return _dump(value)


def canonical_tool_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    """The calls as one comparable string: names and normalised arguments, in a fixed order, ids left out."""
    canonical = []
    for call in calls:
        function = call.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        if isinstance(arguments, str):
            arguments = canonical_json(arguments) or arguments.strip()
        canonical.append(_dump([name, arguments]))
    return _dump(sorted(canonical))


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
