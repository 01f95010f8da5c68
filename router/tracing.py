"""OpenTelemetry traces of the proxy: one `router.chat` span per chat request, with children for
classify, decide, execute, every backend call (each strategy sample or vote round), and the ledger write.

Off unless asked for: `router serve --otel`, ROUTER_OTEL=1, or the standard
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. Then spans go to an OTLP/HTTP
exporter that reads every other standard OTEL_* variable itself (headers, protocol details,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, sampling). The SDK is an optional extra
(`pip install 'difficulty-router[otel]'`), imported only when tracing is on; off, each span site is
one `if` on a module global.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.llm import Backend, Completion, GenerationParams, Message, StreamingBackend

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

logger = logging.getLogger(__name__)

TRACER_NAME = "difficulty-router"
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_tracer: Tracer | None = None


def tracing_requested() -> bool:
    """Whether the environment asks for traces (ROUTER_OTEL, or an OTLP endpoint)."""
    flag = os.environ.get("ROUTER_OTEL", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or any(os.environ.get(name) for name in _ENDPOINT_VARS)


def configure_tracing() -> bool:
    """Start exporting spans over OTLP/HTTP when asked for; True when tracing is on."""
    if _tracer is not None or not tracing_requested():
        return _tracer is not None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigError(
            f"Tracing is on (--otel, ROUTER_OTEL or OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry SDK is "
            f"missing ({error.name}): pip install 'difficulty-router[otel]'."
        ) from None
    service = os.environ.get("OTEL_SERVICE_NAME") or "difficulty-router"
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    logger.info("tracing: OTLP/HTTP spans to %s", next((os.environ[n] for n in _ENDPOINT_VARS if os.environ.get(n)),
                                                       "http://localhost:4318 (the default)"))
    return True


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace with `provider` (tests: an SDK provider with an in-memory exporter); None turns tracing off."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None


def enabled() -> bool:
    """Whether spans are being made."""
    return _tracer is not None


def start(name: str, attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A span that the caller ends (`finish`), child of the current one; None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, attributes=_clean(attributes))


def finish(span: Span | None, attributes: Mapping[str, Any] | None = None, error: BaseException | None = None) -> None:
    """Set the last attributes, the error if any, and end the span."""
    if span is None:
        return
    if attributes:
        span.set_attributes(_clean(attributes))
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span | None]:
    """A child span of the current one for the `with` block (nothing when tracing is off)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


@contextlib.contextmanager
def within(parent: Span | None) -> Iterator[None]:
    """Make `parent` the current span for the block (spans started inside become its children)."""
    if parent is None:
        yield
        return
    from opentelemetry.trace import use_span

    with use_span(parent, end_on_exit=False):
        yield


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry takes str, bool, int, float (or sequences of them), never None.
    return {k: v for k, v in (attributes or {}).items() if v is not None}


def _usage(completions: Sequence[Completion]) -> dict[str, Any]:
    return {
        "llm.samples": len(completions),
        "llm.usage.input_tokens": sum(c.usage.input_tokens for c in completions),
        "llm.usage.output_tokens": sum(c.usage.output_tokens for c in completions),
        "router.cost_usd": sum(c.cost_usd for c in completions),
    }


def propagated(params: GenerationParams, current: Span | None) -> GenerationParams:
    """`params` whose upstream call carries `current`'s W3C trace context: the upstream's spans nest under this call."""
    if current is None:
        return params
    from opentelemetry.propagate import inject
    from opentelemetry.trace import set_span_in_context

    carrier = dict(params.headers)  # the client's traceparent, replaced by this call's own
    inject(carrier, context=set_span_in_context(current))
    return params.replace(headers=carrier)


class TracedBackend:
    """A backend whose every call is a `llm.generate` span (tier, model, samples asked and returned, tokens, cost)."""

    def __init__(self, inner: Backend, tier: str, model: str) -> None:
        self.inner = inner
        self._attributes = {"router.tier": tier, "llm.model": model}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        """The inner backend's completions, in a span."""
        with span("llm.generate", {**self._attributes, "llm.request.n": params.n}) as current:
            completions = await self.inner.generate(messages, propagated(params, current))
            if current is not None:
                current.set_attributes(_clean(_usage(completions)))
            return completions


class TracedStreamingBackend(TracedBackend):
    """The same for a backend that streams: the span lasts until the stream ends."""

    async def stream(self, messages: Sequence[Message], params: GenerationParams) -> AsyncIterator[str | Completion]:
        """The inner stream's pieces; the span closes with it (tokens from its final Completion)."""
        assert isinstance(self.inner, StreamingBackend)
        current = start("llm.stream", self._attributes)
        started, first = time.perf_counter(), True
        error: BaseException | None = None
        try:
            async for piece in self.inner.stream(messages, propagated(params, current)):
                if first and current is not None:
                    current.set_attribute("llm.time_to_first_piece_s", time.perf_counter() - started)
                    first = False
                if isinstance(piece, Completion) and current is not None:
                    current.set_attributes(_clean(_usage([piece])))
                yield piece
        except BaseException as raised:
            error = raised
            raise
        finally:
            finish(current, error=error)


def traced(backend: Backend, tier: str, model: str) -> Backend:
    """`backend` with a span per call when tracing is on; itself when it is off."""
    if _tracer is None or isinstance(backend, TracedBackend):
        return backend
    if isinstance(backend, StreamingBackend):
        return TracedStreamingBackend(backend, tier, model)
    return TracedBackend(backend, tier, model)


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (the request's `router.chat`), if tracing is on."""
    if _tracer is None:
        return
    from opentelemetry.trace import get_current_span

    get_current_span().set_attributes(_clean(attributes))


class TracingMiddleware:
    """Pure ASGI: one `router.chat` (or `http <path>`) span per request, the parent of the pipeline's spans."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        name = "router.chat" if path.endswith("/chat/completions") else f"http {path}"
        attributes = {"http.request.method": scope.get("method", ""), "url.path": path}
        from opentelemetry.propagate import extract

        # A client's W3C traceparent makes this span its child (the same trace end to end).
        carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", ())}
        with _tracer.start_as_current_span(name, context=extract(carrier), attributes=attributes) as current:

            async def send_status(message: Any) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.response.status_code", int(message["status"]))
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                request_id = scope.get("state", {}).get("request_id")
                if request_id:
                    current.set_attribute("router.request_id", str(request_id))
