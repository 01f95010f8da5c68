"""OpenTelemetry spans of a real proxy request (SDK in-memory exporter), and OTLP export from `router serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router import tracing
from router.backends import FakeBackend
from tests.server.conftest import StartProxy
from tests.server.support import ServerThread, serving, write_policy
from tests.conftest import free_port
from tests.server.upstream import read_body


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_tracer_provider(provider)
    try:
        yield memory
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def _wait_for(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = list(exporter.get_finished_spans())
        if any(span.name == name for span in spans):
            return spans
        time.sleep(0.02)
    raise AssertionError(f"no {name} span: {[s.name for s in exporter.get_finished_spans()]}")


def test_a_routed_request_is_one_trace_with_a_span_per_step(exporter: InMemorySpanExporter, start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    reply = httpx.post(f"{proxy.api}/chat/completions", json={
        "model": "router", "messages": [{"role": "user", "content": "a hard question"}],
    }, timeout=30)
    assert reply.status_code == 200
    spans = _wait_for(exporter, "router.ledger.record")
    root = next(s for s in spans if s.name == "router.chat")
    assert root.attributes is not None and root.attributes["router.request_id"] == reply.headers["x-router-request-id"]
    assert root.attributes["router.tier"] == "deep" and root.attributes["router.rule"] == "hard"
    assert root.attributes["http.response.status_code"] == 200
    ours = [s for s in spans if s.context is not None and root.context is not None
            and s.context.trace_id == root.context.trace_id]
    names = [s.name for s in ours]
    for name in ("router.classify", "router.decide", "router.execute", "llm.generate", "router.ledger.record"):
        assert name in names, names
    by_id = {s.context.span_id: s for s in ours if s.context is not None}

    def ancestors(span: ReadableSpan) -> list[str]:
        chain = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span.name)
        return chain

    calls = [s for s in ours if s.name == "llm.generate"]
    for call in calls:
        assert ancestors(call)[:2] == ["router.execute", "router.chat"]
        assert call.attributes is not None and call.attributes["router.tier"] == "deep"

    def total(attribute: str) -> int:
        return sum(int(str((c.attributes or {})[attribute])) for c in calls)

    assert total("llm.samples") == 3  # the vote's three samples
    entry = proxy.entries()[reply.headers["x-router-request-id"]]
    assert total("llm.usage.output_tokens") == entry.output_tokens
    for name in ("router.classify", "router.decide", "router.ledger.record"):
        assert ancestors(next(s for s in ours if s.name == name)) == ["router.chat"]


def test_a_clients_traceparent_is_the_parent_of_the_request_span(
    exporter: InMemorySpanExporter, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    reply = httpx.post(f"{proxy.api}/chat/completions", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
                       json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert reply.status_code == 200
    root = next(s for s in _wait_for(exporter, "router.ledger.record") if s.name == "router.chat")
    assert root.context is not None and root.parent is not None
    assert f"{root.context.trace_id:032x}" == trace_id and f"{root.parent.span_id:016x}" == parent_id


def test_a_failed_backend_call_is_an_error_span(exporter: InMemorySpanExporter, start_proxy: StartProxy) -> None:
    from core.errors import BackendUnavailable

    class Down:
        async def generate(self, messages: Any, params: Any) -> Any:
            raise BackendUnavailable("upstream is down")

    proxy = start_proxy(tiers={"fast": Down(), "deep": FakeBackend(["42"])})
    reply = httpx.post(f"{proxy.api}/chat/completions", json={
        "model": "fast", "messages": [{"role": "user", "content": "hi"}],
    }, timeout=30)
    assert reply.status_code >= 500
    spans = _wait_for(exporter, "router.chat")
    failed = next(s for s in spans if s.name == "llm.generate")
    assert failed.status.status_code.name == "ERROR" and "upstream is down" in (failed.status.description or "")


def test_tracing_is_off_by_default_and_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROUTER_OTEL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.tracing_requested() and not tracing.enabled()
    backend = FakeBackend(["x"])
    assert tracing.traced(backend, "fast", "m") is backend
    with tracing.span("anything") as current:
        assert current is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.tracing_requested()


class Collector:
    """A real OTLP/HTTP receiver: keeps each POST body by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.posts.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-protobuf")]})
        await send({"type": "http.response.body", "body": b""})


def test_router_serve_exports_spans_over_otlp_to_the_standard_endpoint(tmp_path: Path) -> None:
    collector = Collector()
    with ServerThread(collector) as otlp:
        port = free_port()
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_SERVICE_NAME": "router-under-test",
               "ROUTER_PRELOAD": "false", "OTEL_BSP_SCHEDULE_DELAY": "100"}
        policy = write_policy(tmp_path / "router.yaml")  # its tiers are unreachable: a 5xx, traced all the same
        server = subprocess.Popen([sys.executable, "-m", "router", "serve", "--port", str(port), "--config", str(policy)],
                                  env=env, stderr=subprocess.PIPE, text=True)
        try:
            serving(port)  # the request below fails the test if it never became ready
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                       json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        finally:
            server.terminate()
            _, stderr = server.communicate(timeout=60)
        assert "tracing: OTLP/HTTP spans to " + otlp.url in stderr, stderr[-2000:]
    traces = b"".join(body for path, body in collector.posts if path == "/v1/traces")
    assert b"router.chat" in traces and b"llm.generate" in traces and b"router-under-test" in traces
