"""Read router.yaml into a Policy; every problem is reported as `yaml.path: message (file line N)`.

Line numbers come from composing the YAML into a node tree and walking it along each error's path.
"""

from __future__ import annotations

import difflib
import hashlib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from policies.checks import Loc, Problem, check_policy
from policies.policy import Policy
from policies.schema import PolicyFile
from strategies import STRATEGY_TYPES
from core.errors import PolicyError

DEFAULT_POLICY_PATH = Path("router.yaml")


def content_version(content: bytes) -> str:
    """A policy version: the first 12 hex digits of the sha256 of the file's bytes."""
    return hashlib.sha256(content).hexdigest()[:12]


def load_policy(path: str | Path = DEFAULT_POLICY_PATH) -> Policy:
    """Read, validate and compile a policy file; raise PolicyError listing every problem."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: no such policy file; pass the right path (--config) or start from the "
            "router.yaml in the repository (docs/policy.md explains every key)."
        ) from None
    except OSError as error:
        raise PolicyError(
            f"{path}: cannot be read ({error.strerror}); check its permissions."
        ) from None
    return parse_policy(content, source=str(path))


def parse_policy(content: str | bytes, source: str = "router.yaml") -> Policy:
    """Validate and compile policy text; `source` names the file in messages."""
    raw = content.encode() if isinstance(content, str) else content
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"{source}: is not UTF-8 text (byte {error.start}); save it as UTF-8."
        ) from None
    root, data = _read_yaml(text, source)
    try:
        config = PolicyFile.model_validate(data)
    except ValidationError as error:
        raise _policy_error(source, root, _pydantic_problems(error)) from None
    problems, prices = check_policy(config)
    if problems:
        raise _policy_error(source, root, problems)
    return Policy(config, prices, version=content_version(raw), source=source)


def compose_yaml(text: str, source: str) -> yaml.Node:
    """The YAML node tree of `text` (with marks for line and column); PolicyError on bad syntax."""
    root, _ = _read_yaml(text, source)
    return root


def _read_yaml(text: str, source: str) -> tuple[yaml.Node, Any]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" ({source} line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = error.problem or error.context or "cannot be parsed"
        raise PolicyError(f"YAML syntax error: {problem}{where}; fix the file's syntax.") from None
    except yaml.YAMLError as error:
        raise PolicyError(
            f"{source}: is not valid YAML ({error}); fix the file's syntax."
        ) from None
    finally:
        loader.dispose()
    if root is None:
        raise PolicyError(
            f"{source}: is empty; it needs at least `tiers:` and `rules:` (see docs/policy.md)."
        )
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(
            f"{source}: must be a mapping with `tiers:` and `rules:` at the top (see docs/policy.md) "
            f"({source} line {root.start_mark.line + 1})"
        )
    duplicates = list(_duplicate_keys(root, ()))
    if duplicates:
        raise _policy_error(source, root, duplicates)
    return root, data


def _duplicate_keys(node: yaml.Node, loc: Loc) -> Iterator[Problem]:
    """YAML keeps the last of two equal keys silently; we refuse instead."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                yield (*loc, name), f"duplicate key (first at line {seen[name]}); keep one of them"
            elif name is not None:
                seen[name] = key.start_mark.line + 1
            yield from _duplicate_keys(value, (*loc, name) if name is not None else loc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, i))


def format_loc(loc: Loc) -> str:
    """`("tiers", 2, "strategy", "n")` -> `tiers[2].strategy.n`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def node_at(root: yaml.Node, loc: Loc) -> yaml.Node | None:
    """The value node at `loc`, or None where the path leaves the document."""
    found = _walk(root, loc)
    return found[0] if found[2] else None


def line_of(root: yaml.Node, loc: Loc) -> int:
    """1-based line of the key (or list item) at `loc`, or of its deepest existing parent."""
    return _walk(root, loc)[1] + 1


def _walk(root: yaml.Node, loc: Loc) -> tuple[yaml.Node, int, bool]:
    """(deepest node reached, 0-based line of its key or item, whether all of `loc` was found)."""
    node = root
    line = int(root.start_mark.line)
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            # The last of duplicate keys, as YAML itself keeps it.
            found = [
                (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part
            ]
            if not found:
                return node, line, False
            key, node = found[-1]
            line = int(key.start_mark.line)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = int(node.start_mark.line)
        else:
            return node, line, False
    return node, line, True


def _policy_error(source: str, root: yaml.Node, problems: list[Problem]) -> PolicyError:
    located = []
    for loc, message in problems:
        line = line_of(root, loc)
        path = format_loc(loc)
        located.append((line, f"{path + ': ' if path else ''}{message} ({source} line {line})"))
    located.sort(key=lambda item: item[0])
    return PolicyError("\n".join(text for _, text in located))


def _pydantic_problems(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for detail in error.errors(include_url=False):
        loc = _yaml_loc(detail["loc"])
        kind = detail["type"]
        if kind == "union_tag_invalid":
            loc = (*loc, "type")
        problems.append((loc, _message(detail)))
    return problems


def _yaml_loc(loc: tuple[int | str, ...]) -> Loc:
    """Pydantic's loc without the parts that are not YAML keys (union tags, dict-key markers)."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if part == "[key]" or (i and loc[i - 1] == "strategy" and part in STRATEGY_TYPES):
            continue
        out.append(part)
    return tuple(out)


_PLAIN = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string (quote it if YAML reads it as something else)",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "missing": "is required but missing",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    "union_tag_not_found": "needs a `type`: one of " + ", ".join(STRATEGY_TYPES),
}


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        shown = f"{limit:g}" if isinstance(limit, int | float) else str(limit)
        return f"must be {bounds[kind]} {shown} (got {detail['input']!r})"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')} (got {detail['input']!r})"
    if kind == "union_tag_invalid":
        return f"unknown strategy type {ctx.get('tag')!r}; use one of " + ", ".join(STRATEGY_TYPES)
    if kind == "string_pattern_mismatch":
        return _pattern_message(detail)
    if kind == "extra_forbidden":
        return _unknown_key_message(detail["loc"])
    message = str(detail["msg"])
    return message.removeprefix("Value error, ")


def _pattern_message(detail: ErrorDetails) -> str:
    if detail["loc"] and detail["loc"][-1] == "api_key_env":
        return (
            "must be the NAME of the environment variable that holds the key (e.g. "
            "OPENAI_API_KEY), never the key itself"
        )
    return (
        f"{detail['input']!r} is not a valid name; use letters, digits, '_', '-' and '.', "
        "starting with a letter or digit"
    )


def _unknown_key_message(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key; remove it"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key; {hint}allowed keys here: {', '.join(allowed)}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the schema model at pydantic `loc` (walked through lists, dicts and unions)."""
    current: Any = PolicyFile
    for part in loc:
        current = _child_type(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip `X | None` to X; other unions are left for the tag lookup."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _child_type(annotation: Any, part: int | str) -> Any:
    current = _unwrap(annotation)
    origin = typing.get_origin(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = current.model_fields.get(str(part))
        return field.annotation if field is not None else None
    if origin is list and isinstance(part, int):
        return typing.get_args(current)[0]
    if origin is dict and isinstance(part, str):
        return typing.get_args(current)[1]
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(current):
            field = getattr(option, "model_fields", {}).get("type")
            if field is not None and typing.get_args(field.annotation) == (part,):
                return option
    return None
