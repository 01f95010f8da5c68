"""Conformance with OpenAI's published request schema (issue 14): the extracted schema, and a real proxy on it.

The schema is tests/data/openai_chat_request.schema.json, extracted by bench/openai_spec.py from
openai/openai-openapi; bench/conformance.py measures the served share at length (500 requests a
seed). Here: the extracted files agree with each other, the generator makes only valid,
documented-key requests, and on a small sample the proxy never answers 5xx, every refusal is a
400 in OpenAI's shape naming its field, and the served share does not fall below today's floor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from bench.conformance import running_proxy, send_all, shape_problem, valid_requests
from bench.openai_spec import SCHEMA_PATH, documented_only, load_schema, proxy_body_schema
from router.server.openapi_chat import CHAT_REQUEST_BODY
from policies.schema import CAPABILITIES

# The served share of OpenAI-valid requests on the routed path, tiers declared to take images, audio
# and files (bench/conformance.py --n 500 --takes vision,audio,files): 12% to 18% before the
# drop-in work of issue 14, 88% to 96% after (seeds 1-3); the target is 90%; the rest are token
# counts below 1, which OpenAI's API refuses too (4-12% of a seed's requests). A floor, raised as
# the surface widens, so that a regression shows.
SERVED_FLOOR = 0.80
SAMPLE = 150
HI: dict[str, Any] = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_extracted_schema_is_self_contained_and_names_its_source() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    refs = set(_refs(schema))
    assert refs and all(ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in schema["$defs"] for ref in refs)
    assert "openai/openai-openapi" in schema["$comment"] and "MIT License" in schema["$comment"]
    assert "commit " in schema["$comment"]
    assert "nullable" not in SCHEMA_PATH.read_text()  # OpenAPI's keyword, converted to a null branch


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (HI, True),
        ({**HI, "temperature": None, "stop": None, "metadata": None}, True),  # nullable fields
        ({**HI, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, True),
        ({**HI, "messages": [{"role": "assistant", "content": None, "tool_calls": []}]}, True),
        ({"model": "router"}, False),
        ({**HI, "messages": []}, False),
        ({**HI, "temperature": 3}, False),
        ({**HI, "messages": [{"role": "robot", "content": "hi"}]}, False),
    ],
)
def test_the_extracted_schema_judges_requests_as_openai_documents_them(body: dict[str, Any], valid: bool) -> None:
    assert jsonschema.Draft202012Validator(load_schema()).is_valid(body) is valid


def test_the_documented_only_view_refuses_undocumented_keys() -> None:
    closed = jsonschema.Draft202012Validator(documented_only(load_schema()))
    assert closed.is_valid(HI)
    assert not closed.is_valid({**HI, "bogus": 1})
    assert not closed.is_valid({**HI, "messages": [{"role": "user", "content": "hi", "bogus": 1}]})
    assert not closed.is_valid({**HI, "model": "gpt-4o"}) and not closed.is_valid({**HI, "stream": True})


def test_the_proxy_documents_the_body_made_from_the_extracted_schema() -> None:
    assert CHAT_REQUEST_BODY == proxy_body_schema(load_schema())
    jsonschema.Draft202012Validator.check_schema(CHAT_REQUEST_BODY)
    assert "$ref" not in json.dumps(CHAT_REQUEST_BODY)


def test_generated_requests_are_valid_documented_routed_and_not_streamed() -> None:
    bodies = valid_requests(60, seed_value=7)
    published = jsonschema.Draft202012Validator(load_schema())
    closed = jsonschema.Draft202012Validator(documented_only(load_schema()))
    assert len(bodies) == 60
    assert all(published.is_valid(body) and closed.is_valid(body) for body in bodies)
    assert all(body["model"] == "router" and not body.get("stream") for body in bodies)
    assert len({json.dumps(body, sort_keys=True) for body in bodies}) > 50  # not one body repeated
    assert valid_requests(60, seed_value=7) == bodies  # the seed decides


@pytest.mark.parametrize(
    ("status", "content", "fine"),
    [
        (200, b"anything", True),
        (400, b'{"error": {"message": "m", "type": "invalid_request_error", "param": "x", "code": null}}', True),
        (400, b'{"detail": "Not Found"}', False),
        (500, b"Internal Server Error", False),
        (400, b'{"error": {"message": "m", "type": "t"}}', False),
        (400, b'{"error": {"message": "m", "type": "t", "param": 1, "code": null}}', False),
        (429, b'{"error": {"message": "", "type": "t", "param": null, "code": null}}', False),
    ],
)
def test_the_shape_check_knows_openai_errors(status: int, content: bytes, fine: bool) -> None:
    assert (shape_problem(status, content) is None) is fine


def test_openai_valid_requests_get_no_5xx_and_named_refusals() -> None:
    with running_proxy("upstream", takes=CAPABILITIES) as (url, _):
        tally = send_all(url, valid_requests(SAMPLE, seed_value=3))
    kinds = tally.by_kind()
    assert not kinds["5xx"], [(o.status, o.content[:200], o.body) for o in kinds["5xx"][:3]]
    assert not tally.shape_defects(), tally.shape_defects()[:3]
    unnamed = kinds["unnamed_400"] + kinds["other"]
    assert not unnamed, [(o.status, o.content[:200], o.body) for o in unnamed[:3]]
    assert tally.shares()["served"] >= SERVED_FLOOR, tally.reasons().most_common(10)
