"""Fuzzing the proxy against its own OpenAPI spec: no 5xx, every error in OpenAI's shape.

The cases come from the proxy's /openapi.json, which documents every request body: for each
operation, bodies valid by its schema (the chat body is OpenAI's request, bench/openai_spec.py),
the same bodies mutated (a key dropped, a value of the wrong type, an unknown key, a hostile
literal: a 5,000-digit integer, NaN, a lone surrogate escape, deep nesting, a NUL), other JSON
roots, bytes that are no JSON, other content types, wrong methods and unknown paths. They go to
two real proxies (uvicorn; one open, one with API keys, budgets, sessions and Redis) whose tiers
and pass-through models call the test upstream over HTTP, streamed or not as the body says.
Every request is bounded (`TIMEOUT_S`; a hang fails), so the run's time is bounded by the count.
The default suite sends 400 (200 a proxy); the slow suite (`-m slow`) 8,000, 2,000 of them 16
at a time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import strategies as st

from bench.conformance import ANY_JSON, IMAGE_URLS, TolerantUpstream, draw, shape_problem, strategy_for
from policies.schema import Passthrough
from router.auth import key_digest
from router.execution import DefaultBackends
from tests.conftest import redis_or_skip
from tests.server.conftest import REDIS_URL, Proxy, StartProxy
from tests.server.support import ServerThread, fake_tiers
from tests.server.upstream import Upstream
from core.llm import Completion, GenerationParams, Message
from collections.abc import Sequence

TIMEOUT_S = 30  # per request: a hang is a defect
PASSTHROUGH = """
server:
  passthrough:
    models: ["up-*"]
    api_base: {url}
    price: {{input_per_million: 1.0, output_per_million: 1.0}}"""
KEYED = """
  api_keys:
    - {{name: app, sha256: {app}, requests_per_minute: 1000000}}
    - {{name: ops, sha256: {admin}, admin: true}}
  sessions: {{enabled: true}}
budgets:
  per_key_daily_usd: 0.02
  max_cost_per_request_usd: 0.01
"""
APP_KEY, ADMIN_KEY = "sk-fuzz-app-0123456789", "sk-fuzz-admin-0123456789"
AUTHORIZATIONS = (f"Bearer {APP_KEY}", f"Bearer {ADMIN_KEY}")
MODELS = ("router", "auto", "fast", "deep", "up-model")
# Literals JSON can hold that Python's json.dumps will not write: spliced into the text.
HOSTILE = (
    "1" + "0" * 5000,  # past sys.get_int_max_str_digits()
    "NaN", "Infinity", "-Infinity", "1e400", "-0", "1.5e-400",
    '"\\ud800"', '"tail \\udfff"', '"a\\ud83d"', '"\\u0000"', '"\\udc80\\ud800"',
    "[" * 3000 + "]" * 3000,  # deeper than the parser's recursion limit
    '{"a":' * 200 + "1" + "}" * 200,
    '"' + "x" * 200_000 + '"',
    "9" * 19, "-" + "9" * 19, "18446744073709551616", "0.1e1",
)
RAW = (
    b"", b" ", b"{", b"[1,", b'{"model": "router", "messages": [', b"null", b"\xff\xfe{}", b"\xef\xbb\xbf{}",
    b'{"model":"router","messages":[{"role":"user","content":"\xc3\x28"}]}', b"\x00" * 16, b"{}" * 3,
    b'{"model":"router","model":"fast","messages":[{"role":"user","content":"hi"}]}',
)
CONTENT_TYPES = ("application/json", "application/json; charset=utf-8", "text/plain", "", "multipart/form-data")
_SPLICE = "\u2063splice{}\u2063"


@dataclass(frozen=True)
class Operation:
    """One documented operation."""

    method: str
    path: str
    parameters: Mapping[str, Any] = field(default_factory=dict)  # path parameter name -> schema
    body: Any = None  # the JSON schema of its body, if it takes one


@dataclass(frozen=True)
class Case:
    """One request to send."""

    method: str
    path: str
    content: bytes | None
    headers: Mapping[str, str]

    def describe(self) -> str:
        return f"{self.method} {self.path} headers={dict(self.headers)} body={(self.content or b'')[:4000]!r}"


def operations(spec: Mapping[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document, with its path parameters' and JSON body's schemas."""
    found = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            parameters = {p["name"]: p.get("schema", {}) for p in operation.get("parameters", ()) if p["in"] == "path"}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append(Operation(method.upper(), path, parameters, body))
    return found


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every location in a JSON value (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


# What a value of the wrong type looks like: truthy and falsy, scalar and container.
CONFUSIONS: tuple[Any, ...] = ([1], ["x"], [{}], "x", "", 1, 0, 1.5, True, False, None, {"x": 1}, {}, [])


@st.composite
def mutated(draw_: st.DrawFn, valid: st.SearchStrategy[Any]) -> bytes:
    """A valid body broken in one place: a value of another type, a key dropped or added, a hostile literal.

    Half the time the place is an object or array (the handlers that walk them are where a value
    of the wrong type does harm), else any value.
    """
    body = draw_(valid)
    paths = list(_paths(body))
    containers = [path for path in paths if path and isinstance(_get(body, path), dict | list)]
    prefer_containers: bool = draw_(st.booleans())
    path = draw_(st.sampled_from(containers if containers and prefer_containers else paths))
    kind = draw_(st.sampled_from(("confuse", "confuse", "confuse", "retype", "drop", "extra", "hostile", "hostile")))
    target = _get(body, path)
    if kind == "drop" and isinstance(target, dict) and target:
        key = draw_(st.sampled_from(sorted(target)))
        body = _replace(body, path, {k: v for k, v in target.items() if k != key})
    elif kind == "extra" and isinstance(target, dict):
        body = _replace(body, path, {**target, draw_(st.text(min_size=1, max_size=10)): draw_(ANY_JSON)})
    elif kind == "hostile":
        literal = draw_(st.sampled_from(HOSTILE))
        text = json.dumps(_replace(body, path, _SPLICE.format(0)))
        return text.replace(json.dumps(_SPLICE.format(0)), literal).encode()
    elif kind == "confuse":
        others = [value for value in CONFUSIONS if type(value) is not type(target)]
        body = _replace(body, path, draw_(st.sampled_from(others)))
    else:
        body = _replace(body, path, draw_(ANY_JSON))
    return json.dumps(body).encode("utf-8", "surrogatepass")


def _model_hint(schema: Any) -> Any:
    """The body schema with `model` drawn mostly from names this proxy serves (else most bodies stop at 404)."""
    if not isinstance(schema, dict) or "model" not in schema.get("properties", {}):
        return schema
    return {**schema, "properties": {**schema["properties"], "model": {"enum": list(MODELS)}}}


def _encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: json.dumps(value).encode())


def _body_strategy(operation: Operation) -> st.SearchStrategy[bytes | None]:
    if operation.body is None:
        return st.one_of(st.none(), st.sampled_from(RAW), _encoded(ANY_JSON))
    valid = strategy_for(_model_hint(operation.body))
    return _weighted(
        (3, _encoded(valid)),
        (1, _encoded(strategy_for(operation.body))),  # any model string: unknown names, empty, odd text
        (3, mutated(valid)),
        (1, _encoded(ANY_JSON)),
        (1, st.sampled_from(RAW)),
    )


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda s: s)


NO_STREAM: dict[str, Any] = {}
_text = st.text(min_size=1, max_size=40).filter(str.strip)
_image = st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from(IMAGE_URLS)}, optional={"detail": st.sampled_from(("auto", "low", "high"))}
    )}
)
_parts = st.lists(
    _weighted((5, st.fixed_dictionaries({"type": st.just("text"), "text": _text})), (1, _image)), min_size=1, max_size=2
)
_call: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"id": st.from_regex(r"call_[a-z0-9]{1,8}", fullmatch=True), "type": st.just("function"),
     "function": st.fixed_dictionaries({"name": st.just("lookup"), "arguments": st.just('{"query": "x"}')})}
)
# An earlier tool round: the assistant's calls (content null) and one tool answer per call.
_tool_round = st.lists(_call, min_size=1, max_size=2, unique_by=lambda call: str(call["id"])).map(
    lambda calls: [
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": call["id"], "content": "42"} for call in calls),
    ]
)
_tool = st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
        optional={"description": _text, "parameters": st.just({"type": "object", "properties": {"query": {"type": "string"}}})},
    )}
)
SERVABLE_CHAT = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(("user", "system", "developer", "assistant")), "content": _text | _parts}
            ).map(lambda message: [message]) | _tool_round,
            max_size=3,
        ).map(lambda rounds: [message for messages in rounds for message in messages]).flatmap(
            lambda earlier: st.fixed_dictionaries(
                {"role": st.just("user"), "content": _text | _parts | st.just("a hard one")}
            ).map(lambda last: [*earlier, last])
        ),
    },
    optional={
        "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1), "max_completion_tokens": st.integers(1, 256),
        "stop": _text | st.lists(_text, min_size=1, max_size=4),
        "seed": st.integers(-(2**31), 2**31), "n": st.integers(1, 3), "user": _text,
        "metadata": st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
        "tools": st.lists(_tool, min_size=1, max_size=2),
        "tool_choice": st.sampled_from(("auto", "none", "required")),
        "response_format": st.sampled_from(({"type": "text"}, {"type": "json_object"}, {
            "type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        })),
        "logprobs": st.booleans(), "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2),
        "reasoning_effort": st.sampled_from(("minimal", "low", "medium", "high")),
        "prompt_cache_key": _text, "service_tier": st.sampled_from(("auto", "default", "flex")),
    },
).flatmap(
    lambda body: st.one_of(
        st.just(NO_STREAM),
        st.just({"stream": False}),
        st.fixed_dictionaries(
            {"stream": st.just(True)}, optional={"stream_options": st.fixed_dictionaries({"include_usage": st.booleans()})}
        ),
    ).map(lambda stream: {**body, **stream})  # stream_options only with stream: true
)
"""Chat bodies a proxy should serve (valid, documented fields, the proxy's own model names), streamed or not."""


def _path_strategy(operation: Operation) -> st.SearchStrategy[str]:
    if not operation.parameters:
        return st.just(operation.path)
    names = st.one_of(st.sampled_from(MODELS), st.text(min_size=1, max_size=40))
    return st.fixed_dictionaries({name: names for name in operation.parameters}).map(
        lambda values: operation.path.format(**{k: quote(v, safe="") for k, v in values.items()})
    )


def _headers(authorizations: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=140)
    optional = {"x-request-id": printable, "x-session-id": printable, "traceparent": printable}
    headers = st.fixed_dictionaries({"content-type": st.sampled_from(CONTENT_TYPES)}, optional=optional)
    if authorizations:
        # Mostly a good key; else a wrong, malformed or missing one, or the key in Azure's `api-key`.
        credential = st.sampled_from(
            [f"authorization:{a}" for a in authorizations] * 4
            + [f"api-key:{APP_KEY}", "authorization:Bearer sk-wrong", "authorization:Basic eA==", "authorization:", "none:"]
        ) | printable.map(lambda text: f"authorization:{text}")
        headers = st.tuples(headers, credential).map(
            lambda pair: {**pair[0], pair[1].split(":", 1)[0]: pair[1].split(":", 1)[1]}
        )
    return headers.map(
        lambda found: {k: v.strip() for k, v in found.items() if v.strip() and k != "none"}  # h11 sends no edge spaces
    )


def case_strategy(spec: Mapping[str, Any], authorizations: tuple[str, ...] = ()) -> st.SearchStrategy[Case]:
    """Cases for every documented operation, chat completions weighted up, plus wrong methods and paths."""
    ops = operations(spec)
    # Built once: a strategy made inside flatmap would be rebuilt from the schema for every case.
    built = [st.builds(Case, st.just(op.method), _path_strategy(op), _body_strategy(op), _headers(authorizations)) for op in ops]
    per_operation = _weighted(*((1, strategy) for strategy in built))
    servable = st.builds(
        Case, st.just("POST"), st.just("/v1/chat/completions"),
        _weighted((2, _encoded(SERVABLE_CHAT)), (1, mutated(SERVABLE_CHAT))),
        _headers(authorizations).map(lambda headers: {**headers, "content-type": "application/json"}),
    )
    documented = {(op.method, op.path) for op in ops}
    wrong_method = st.builds(
        Case,
        st.sampled_from(("GET", "PUT", "DELETE", "PATCH", "POST", "HEAD", "OPTIONS")),
        st.sampled_from(sorted({op.path for op in ops if not op.parameters})),
        st.just(b"{}"),
        _headers(authorizations),
    ).filter(lambda case: (case.method, case.path) not in documented)
    unknown = st.builds(
        Case, st.just("POST"), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(
            lambda tail: "/" + quote(tail, safe="/")
        ), st.just(b"{}"), _headers(authorizations),
    ).filter(lambda case: all(case.path != op.path for op in ops))
    chat_cases = _weighted(*((1, strategy) for strategy, op in zip(built, ops, strict=True) if op.path == "/v1/chat/completions"))
    return _weighted((5, servable), (3, chat_cases), (3, per_operation), (1, wrong_method), (1, unknown))


def _stream_problem(content: bytes) -> str | None:
    """An error event in a stream not in OpenAI's shape, or a stream that does not end in [DONE] or an error."""
    events = [line[6:] for line in content.split(b"\n") if line.startswith(b"data: ")]
    if not events:
        return "an event stream with no events"
    for event in events:
        if event.startswith(b'{"error"'):
            return shape_problem(500, event)
    return None if events[-1] == b"[DONE]" else f"a stream that ends without [DONE]: {events[-1][:200]!r}"


def check(client: httpx.Client, case: Case) -> tuple[int, str | None]:
    """The status of the proxy's answer to `case`, and what is wrong with it (None: nothing)."""
    try:
        response = client.request(case.method, case.path, content=case.content, headers=dict(case.headers))
    except httpx.TransportError as error:  # a reset or dropped connection: the client has no answer at all
        return 0, f"no answer: {type(error).__name__}: {error}"
    status = response.status_code
    if status >= 500:
        return status, f"{status} {response.content[:300]!r}"
    if case.method == "HEAD":
        return status, None
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return status, _stream_problem(response.content)
    return status, shape_problem(status, response.content)


@dataclass
class Target:
    """A proxy under fuzz, its OpenAPI document, and the credentials its cases send."""

    proxy: Proxy
    spec: dict[str, Any]
    authorizations: tuple[str, ...] = ()


@pytest.fixture(scope="module", params=["open", "keyed"])
def target(request: pytest.FixtureRequest, start_module_proxy: StartProxy) -> Iterator[Target]:
    """A proxy whose tiers and `up-*` pass-through models call the test upstream.

    open: no keys, the in-memory ledger. keyed: API keys (one admin), a daily budget per key,
    session pins, limits in the real Redis (database 9, a prefix of its own, removed afterwards).
    """
    upstream = TolerantUpstream()
    with ServerThread(upstream) as server:
        url = f"{server.url}/v1"
        extra = PASSTHROUGH.format(url=url)
        if request.param == "open":
            proxy = start_module_proxy(real_backends=True, upstream_url=url, extra_yaml=extra)
            yield Target(proxy, httpx.get(f"{proxy.url}/openapi.json", timeout=TIMEOUT_S).json())
            return
        client = redis_or_skip(REDIS_URL)
        prefix = f"test-fuzz-{uuid.uuid4().hex[:8]}:"
        try:
            proxy = start_module_proxy(
                real_backends=True, upstream_url=url, extra_yaml=extra + KEYED.format(
                    app=key_digest(APP_KEY), admin=key_digest(ADMIN_KEY)
                ), redis_url=REDIS_URL, redis_prefix=prefix,
            )
            spec = httpx.get(f"{proxy.url}/openapi.json", headers={"authorization": f"Bearer {APP_KEY}"}, timeout=TIMEOUT_S)
            yield Target(proxy, spec.json(), AUTHORIZATIONS)
        finally:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
            client.close()


def fuzz(
    target: Target, count: int, seed_value: int, concurrency: int = 1
) -> tuple[collections.Counter[int], list[str]]:
    """Send `count` generated cases, `concurrency` at a time; chat completions' statuses, and every defect found.

    Concurrent cases share the classifier's batches, the tiers' connection pools and Redis: one
    request must never fail another.
    """
    cases = draw(case_strategy(target.spec, target.authorizations), count, seed_value)
    defects, chat = [], collections.Counter[int]()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=target.proxy.url, timeout=TIMEOUT_S, limits=limits) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda case: (case, *check(client, case)), cases))
        settle(client)
    for case, status, problem in results:
        if case.path == "/v1/chat/completions" and case.method == "POST":
            chat[status] += 1
        if problem is not None:
            defects.append(f"{problem}\n  from {case.describe()}")
    return chat, defects


def settle(client: httpx.Client) -> None:
    """Return once the proxy has finished with earlier requests, their error logs included.

    The proxy's thread logs a bug's traceback right after answering it. CPython 3.11 keeps the
    AST converter's recursion count per interpreter, not per thread, so pytest formatting a
    failure (which parses the test file) at that moment dies with "SystemError: AST constructor
    recursion depth mismatch". One more request, served by the same event loop, waits it out.
    """
    client.get("/livez")


def test_the_spec_documents_every_request_body_and_metrics_as_text(target: Target) -> None:
    spec = target.spec
    posts = {op.path: op for op in operations(spec) if op.method == "POST"}
    assert posts["/v1/chat/completions"].body is not None and posts["/v1/feedback"].body is not None
    chat = posts["/v1/chat/completions"].body
    assert chat["required"] == ["model", "messages"] and "tools" in chat["properties"]
    assert "$ref" not in json.dumps(chat)
    assert posts["/v1/feedback"].body["required"] == ["request_id"]
    assert list(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_fuzzing_the_spec_gives_no_5xx_and_only_openai_shaped_errors(target: Target) -> None:
    chat, defects = fuzz(target, 200, seed_value=1)
    assert not defects, f"{len(defects)} of 200:\n" + "\n".join(defects[:10])
    # The cases reach both ends: answers (the tiers, pass-through, streams) and refusals.
    assert chat[200] >= 20 and chat[400] >= 20, chat


@pytest.mark.slow
@pytest.mark.parametrize(("seed_value", "concurrency"), [(11, 1), (12, 1), (13, 1), (14, 16)])
def test_fuzzing_the_spec_at_length(target: Target, seed_value: int, concurrency: int) -> None:
    """4 seeds x 1,000 cases x 2 proxies: 8,000 requests, one seed's 16 at a time."""
    chat, defects = fuzz(target, 1_000, seed_value, concurrency)
    assert not defects, f"{len(defects)} of 1000:\n" + "\n".join(defects[:10])
    assert chat[200] >= 100 and chat[400] >= 100, chat


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/feedback"])
def test_a_client_gone_mid_body_is_counted_as_gone_not_as_a_bug(start_proxy: StartProxy, path: str) -> None:
    """Found by fuzzing: it was a 500 internal_error in /metrics, logged twice with a traceback."""
    proxy = start_proxy()
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n".encode()
            + b'{"model": "router", "messages": ['
        )
    deadline = time.monotonic() + 10
    while "client_disconnected" not in (metrics := httpx.get(f"{proxy.url}/metrics").text) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 'router_errors_total{code="client_disconnected"} 1.0' in metrics
    assert "internal_error" not in metrics and 'status="500"' not in metrics


class BuggyBackend:
    """A tier whose every call fails with a bug (not a BackendError): the proxy's last-resort 500."""

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        raise ValueError("a bug in a backend")


def test_after_a_bugs_500_the_clients_next_request_on_the_connection_is_answered(start_proxy: StartProxy) -> None:
    """Found by fuzzing: uvicorn drops the connection after a bug's 500, so the next request met a reset."""
    proxy = start_proxy(tiers=fake_tiers(fast=BuggyBackend()))
    with httpx.Client(base_url=proxy.url, timeout=TIMEOUT_S) as client:
        for _ in range(2):
            broken = client.post("/v1/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
            assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal_error"
            assert broken.headers["connection"] == "close"
            fine = client.post("/v1/chat/completions", json={"model": "deep", "messages": [{"role": "user", "content": "hi"}]})
            assert fine.status_code == 200


HI: dict[str, Any] = {"model": "router", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**HI, "tools": [{"type": "function", "function": [1]}]}, "tools"),
        ({**HI, "tools": [{"type": "function", "function": "lookup"}]}, "tools"),
        ({**HI, "response_format": {"type": "json_schema", "json_schema": [1]}}, "response_format"),
        ({**HI, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": [1]}]}]}, "messages[0].content[0]"),
        ({**HI, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 1.5}]}]}, "messages[0].content[0]"),
    ],
)
def test_a_truthy_non_object_where_an_object_belongs_is_a_400(start_module_proxy: StartProxy, body: dict[str, Any], param: str) -> None:
    """Found by fuzzing (they were 500s, AttributeError): each is a 400 naming the field."""
    proxy = start_module_proxy()
    with httpx.Client(base_url=proxy.url, timeout=TIMEOUT_S) as client:
        response = client.post("/v1/chat/completions", json=body)
        settle(client)
    assert response.status_code == 400 and shape_problem(400, response.content) is None
    assert response.json()["error"]["param"].startswith(param)


def test_concurrent_first_requests_for_a_passthrough_model_share_one_backend(
    upstream: tuple[Upstream, str],
) -> None:
    """Found by fuzzing 16 at a time: each built its own backend, all but one never closed ("Unclosed client session")."""
    _, url = upstream
    backends = DefaultBackends(direct_http=True)
    config = Passthrough(models=["up-*"], api_base=url)

    async def first_requests() -> set[int]:
        try:
            built = await asyncio.gather(*(backends.for_passthrough("up-model", config) for _ in range(16)))
            return {id(backend) for backend in built}
        finally:
            await backends.aclose()

    assert len(asyncio.run(first_requests())) == 1
