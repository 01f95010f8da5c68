"""OpenAI's chat-completions request schema, taken from its published OpenAPI spec (openai/openai-openapi, MIT).

    python bench/openai_spec.py [--repo PATH] [--rev REV] [--check]

Reads `openapi.yaml` at REV of a local clone of openai/openai-openapi (default: the search
mirror) and writes two files, so that tests run offline and the 3 MB spec is not vendored:

- tests/data/openai_chat_request.schema.json: `CreateChatCompletionRequest` and every component
  it references, as one self-contained JSON Schema (draft 2020-12; components under `$defs`).
  OpenAPI-only keywords are converted (`nullable: true` becomes a `null` branch) or dropped
  (`discriminator`, `example`, `x-*`, `beta`), and descriptions are left out; the schema accepts
  exactly the bodies the published one does.
- router/server/openapi_chat.py: the request body the proxy documents in its /openapi.json, the
  same schema `$ref`-free, its objects closed (the proxy refuses names OpenAI does not document)
  and `model` a free string (the router's own names, tier names, pass-through models).

`documented_only` is the generation view used by bench/conformance.py and tests/server: objects
closed to their documented keys, `model` fixed to "router", no streaming. `--check` exits 1 when
the committed files differ from what REV gives.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path("/work/.mirror/openai+openai-openapi/repo")
SCHEMA_PATH = ROOT / "tests" / "data" / "openai_chat_request.schema.json"
PROXY_MODULE = ROOT / "router" / "server" / "openapi_chat.py"
REQUEST = "CreateChatCompletionRequest"
SOURCE = "https://github.com/openai/openai-openapi"
# OpenAPI's own keywords (and vendor extensions): meaningless to a JSON Schema validator or generator.
DROPPED = frozenset({"description", "example", "examples", "discriminator", "beta", "x-oaiMeta"})
# Keywords whose value is a map of names to schemas (their keys are names, not keywords).
NAMED = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas"})
# Keywords whose value is data, copied as it is.
DATA = frozenset({"enum", "const", "default", "required"})


def read_spec(repo: Path, rev: str) -> tuple[dict[str, Any], str]:
    """The parsed openapi.yaml at `rev` of the clone at `repo`, and the commit it resolves to."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", f"{rev}^{{commit}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    text = subprocess.run(
        ["git", "-C", str(repo), "show", f"{commit}:openapi.yaml"], capture_output=True, text=True, check=True
    ).stdout
    spec = yaml.safe_load(text)
    if not isinstance(spec, dict) or REQUEST not in spec.get("components", {}).get("schemas", {}):
        raise SystemExit(f"{repo}@{commit}: openapi.yaml has no components.schemas.{REQUEST}")
    return spec, commit


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def closure(components: dict[str, Any], root: str) -> list[str]:
    """`root` and every component it references, directly or not, in discovery order."""
    order, todo = [root], [root]
    while todo:
        for name in _refs(components[todo.pop()]):
            if name not in order:
                order.append(name)
                todo.append(name)
    return order


def convert(node: Any) -> Any:
    """An OpenAPI 3.1 schema node as plain JSON Schema: `nullable` made a null branch, OpenAPI-only keys dropped."""
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-") or key == "nullable":
            continue
        if key == "$ref":
            out[key] = "#/$defs/" + value.rsplit("/", 1)[-1]
        elif key in NAMED:
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in DATA:
            out[key] = copy.deepcopy(value)
        else:
            out[key] = convert(value)
    if node.get("nullable") is True:
        wrapped: dict[str, Any] = {"anyOf": [{k: v for k, v in out.items() if k != "default"}, {"type": "null"}]}
        if "default" in out:
            wrapped["default"] = out["default"]
        return wrapped
    return out


def extract(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    """The self-contained request schema (draft 2020-12) with a note of its source."""
    components = spec["components"]["schemas"]
    names = closure(components, REQUEST)
    body = convert(components[REQUEST])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Extracted by bench/openai_spec.py from {SOURCE} (openapi.yaml at commit {commit}, "
            f"OpenAPI {spec.get('openapi')}, API version {spec.get('info', {}).get('version')}): "
            f"components.schemas.{REQUEST} and the {len(names) - 1} components it references. "
            "Copyright (c) OpenAI, MIT License. Descriptions and OpenAPI-only keywords left out."
        ),
        "title": REQUEST,
        **body,
        "$defs": {name: convert(components[name]) for name in sorted(names[1:])},
    }


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every `#/$defs/...` reference replaced by its target (the components are acyclic)."""
    defs = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen:
                raise ValueError(f"cyclic reference through {name}")
            target = walk(defs[name], (*seen, name))
            rest = {key: walk(value, seen) for key, value in node.items() if key != "$ref"}
            return {**target, **rest} if rest else target
        return {key: walk(value, seen) for key, value in node.items() if key not in ("$defs", "$schema", "$comment")}

    inlined: dict[str, Any] = walk(schema, ())
    return inlined


def _merge_all_of(node: dict[str, Any]) -> dict[str, Any]:
    """An `allOf` of object schemas as one object (so that closing it does not forbid the parts' keys)."""
    parts = [node] if "allOf" not in node else [*node["allOf"], {k: v for k, v in node.items() if k != "allOf"}]
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for part in parts:
        if "allOf" in part:
            part = _merge_all_of(part)
        for name, sub in part.get("properties", {}).items():
            properties[name] = sub if name not in properties or properties[name] == sub else {"allOf": [properties[name], sub]}
        required += [name for name in part.get("required", []) if name not in required]
        merged.update({k: v for k, v in part.items() if k not in ("properties", "required", "allOf")})
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def close_objects(node: Any) -> Any:
    """Every object schema with declared properties and no `additionalProperties` made closed."""
    if isinstance(node, list):
        return [close_objects(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "allOf" in node and all("properties" in part or "allOf" in part for part in node["allOf"]):
        node = _merge_all_of(node)
    out = {
        key: ({name: close_objects(sub) for name, sub in value.items()} if key in NAMED else close_objects(value))
        for key, value in node.items()
    }
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def documented_only(schema: dict[str, Any], *, model: str | None = "router") -> dict[str, Any]:
    """The request schema `$ref`-free and restricted to documented keys; `model` fixed (None: any string), never streamed."""
    closed: dict[str, Any] = close_objects(inline(schema))
    properties = closed["properties"]
    properties["model"] = {"type": "string", "minLength": 1} if model is None else {"const": model}
    if model is not None:
        properties["stream"] = {"enum": [False, None]}
        properties.pop("stream_options", None)
    return closed


def proxy_body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The body the proxy documents: OpenAI's request, closed, `$ref`-free, any model name."""
    body = documented_only(schema, model=None)
    body["properties"]["model"]["description"] = (
        '"router" (or "auto") to route by difficulty, a tier name or alias to force a tier, or a '
        "pass-through model configured in router.yaml."
    )
    return body


def _json_lines(value: Any, width: int = 110) -> str:
    """Compact JSON broken into lines of about `width` characters, only after commas between tokens."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    lines, start, in_string, escaped = [], 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and index - start >= width:
            lines.append(text[start : index + 1])
            start = index + 1
    lines.append(text[start:])
    return "\n".join(lines)


def _proxy_module(body: dict[str, Any], commit: str) -> str:
    text = _json_lines(body)
    if "'''" in text:
        raise ValueError("the schema holds ''' and cannot be written in a raw string literal")
    return (
        '"""The chat-completions request body the proxy documents in /openapi.json (generated; do not edit).\n\n'
        f"OpenAI's CreateChatCompletionRequest from {SOURCE}\n(openapi.yaml at commit {commit};\n"
        "Copyright (c) OpenAI, MIT License), without descriptions, `$ref`-free, its objects closed to the\n"
        "documented names (the proxy refuses others) and `model` any string. Regenerate with\n"
        "`python bench/openai_spec.py`.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "import json\n"
        "from typing import Any\n\n"
        f"CHAT_REQUEST_BODY: dict[str, Any] = json.loads(\n    r'''\n{text}\n'''\n)\n"
    )


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The committed request schema."""
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def main() -> None:
    """Write (or, with --check, compare) the schema file and the proxy's module; print what was done last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=MIRROR, help="a clone of openai/openai-openapi")
    parser.add_argument("--rev", default="HEAD", help="the commit (or branch) to read openapi.yaml from")
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    args = parser.parse_args()
    spec, commit = read_spec(args.repo, args.rev)
    schema = extract(spec, commit)
    outputs = {
        SCHEMA_PATH: json.dumps(schema, indent=1, sort_keys=False) + "\n",
        PROXY_MODULE: _proxy_module(proxy_body_schema(schema), commit),
    }
    stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        print(f"{len(stale)} of {len(outputs)} files differ from {commit[:12]}")
        sys.exit(1 if stale else 0)
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)} ({len(text.encode())} bytes)")
    print(f"{REQUEST} and {len(schema['$defs'])} components from {SOURCE} at {commit[:12]}")


if __name__ == "__main__":
    main()
