"""W3C trace context forwarded to every upstream call, and CORS from router.yaml (hot-reloaded)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Receive, Scope, Send

from router import tracing
from router.server.tracing import trace_headers
from tests.server.conftest import Proxy, StartProxy
from tests.server.support import PASSTHROUGH, ServerThread, write_policy
from tests.server.upstream import Upstream

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class HeaderUpstream(Upstream):
    """The test upstream, also noting each request's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.headers.append({name.decode(): value.decode() for name, value in scope["headers"]})
        await super().__call__(scope, receive, send)


Served = tuple[HeaderUpstream, dict[str, Proxy]]


@pytest.fixture(scope="module")
def served(start_module_proxy: StartProxy) -> Iterator[Served]:
    """One upstream; the same tiers over plain HTTP and through LiteLLM, with pass-through to it.

    The upstream stops first, as in test_dropin_openai_sdk: the proxy does not close LiteLLM's
    process-wide cached clients on shutdown, and a keep-alive connection to a live upstream would
    outlive the proxy's event loop (a ResourceWarning).
    """
    app = HeaderUpstream()
    with ServerThread(app) as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "unused")  # LiteLLM's OpenAI client wants one
        url = f"{server.url}/v1"
        extra = PASSTHROUGH.format(url=url)
        yield app, {
            "http": start_module_proxy(real_backends=True, upstream_url=url, extra_yaml=extra),
            "litellm": start_module_proxy(real_backends=True, upstream_url=url, extra_yaml=extra, direct_http=False),
        }


def ask(proxy: Proxy, model: str, headers: dict[str, str], *, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.Client(base_url=proxy.api, timeout=20) as http:
        response = http.post("/chat/completions", json=body, headers=headers)
        response.read()
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("backend", ["http", "litellm"])
@pytest.mark.parametrize(
    ("model", "stream"),
    [("router", False), ("fast", True), ("deep", False), ("up-model", False), ("up-model", True)],
    ids=["routed", "forced-streamed", "self-consistency", "passthrough", "passthrough-streamed"],
)
def test_traceparent_goes_with_every_upstream_call(served: Served, backend: str, model: str, stream: bool) -> None:
    app, proxies = served
    before = len(app.headers)
    ask(proxies[backend], model, {"traceparent": PARENT, "tracestate": "vendor=abc"}, stream=stream)
    received = app.headers[before:]
    assert received  # self-consistency asks its one call for n samples
    assert all(headers.get("traceparent") == PARENT for headers in received)
    assert all(headers.get("tracestate") == "vendor=abc" for headers in received)


def test_no_or_an_invalid_traceparent_is_not_forwarded(served: Served) -> None:
    app, proxies = served
    ask(proxies["http"], "fast", {})
    assert "traceparent" not in app.headers[-1]
    ask(proxies["http"], "fast", {"traceparent": "00-nothex", "tracestate": "vendor=abc"})
    assert "traceparent" not in app.headers[-1] and "tracestate" not in app.headers[-1]


def test_with_tracing_on_each_upstream_call_is_a_child_of_its_own_span(start_proxy: StartProxy) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_tracer_provider(provider)
    app = HeaderUpstream()
    try:
        with ServerThread(app) as server:
            proxy = start_proxy(real_backends=True, upstream_url=f"{server.url}/v1")
            ask(proxy, "fast", {"traceparent": PARENT})
            ask(proxy, "fast", {"traceparent": PARENT}, stream=True)
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()
    calls = {format(span.context.span_id, "016x"): span.name for span in memory.get_finished_spans()
             if span.name.startswith("llm.") and span.context is not None}
    received = [headers["traceparent"].split("-") for headers in app.headers]
    assert [trace_id for _, trace_id, _, _ in received] == [PARENT.split("-")[1]] * 2  # the client's trace
    assert sorted(calls[parent] for _, _, parent, _ in received) == ["llm.generate", "llm.stream"]


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        (PARENT, True),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", True),  # a later version may add fields
        (PARENT + "-extra", False),  # version 00 has none
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        (PARENT.upper(), False),
        ("", False),
    ],
)
def test_traceparent_validity_follows_the_w3c_rules(sent: str, forwarded: bool) -> None:
    assert bool(trace_headers({"traceparent": sent})) is forwarded


def test_tracestate_needs_a_valid_traceparent() -> None:
    assert trace_headers({"tracestate": "vendor=abc"}) == {}
    assert trace_headers({"traceparent": PARENT, "tracestate": "bad\x01state"}) == {"traceparent": PARENT}


ORIGIN = "https://app.example"
PREFLIGHT = {
    "origin": ORIGIN, "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, x-session-id, traceparent",
}
CORS = """
server:
  cors:
    allow_origins: ["https://app.example"]
"""


def preflight(proxy: Proxy, origin: str = ORIGIN) -> httpx.Response:
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        return http.options("/chat/completions", headers={**PREFLIGHT, "origin": origin})


def post(proxy: Proxy, origin: str = ORIGIN) -> httpx.Response:
    with httpx.Client(base_url=proxy.api, timeout=10) as http:
        return http.post(
            "/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
            headers={"origin": origin},
        )


def test_cors_is_off_without_a_cors_section(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    assert preflight(proxy).status_code == 405
    answer = post(proxy)
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_cors_allows_the_configured_origins(start_proxy: StartProxy) -> None:
    proxy = start_proxy(extra_yaml=CORS)
    allowed = preflight(proxy)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "x-session-id" in allowed.headers["access-control-allow-headers"]
    answer = post(proxy)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-router-tier" in answer.headers["access-control-expose-headers"]
    assert preflight(proxy, "https://evil.example").status_code == 400
    assert "access-control-allow-origin" not in post(proxy, "https://evil.example").headers


def test_cors_follows_a_hot_reload(start_proxy: StartProxy, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "router.yaml", extra="server:\n  reload: {settle_s: 0}\n")
    proxy = start_proxy(policy=policy, reload_interval_s=0.05)
    assert preflight(proxy).status_code == 405
    live = proxy.runtime.store.policy.version
    write_policy(policy, extra=CORS + "  reload: {settle_s: 0}\n")
    deadline = time.monotonic() + 10
    while proxy.runtime.store.policy.version == live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.runtime.store.policy.config.server.cors is not None
    assert preflight(proxy).headers["access-control-allow-origin"] == ORIGIN
