"""GET /metrics: Prometheus text format, every name prefixed `router_`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from router.server.runtime import Runtime

router = APIRouter()


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format (version 0.0.4)."}},
)
async def metrics(request: Request) -> Response:
    """The metrics of this process (of all workers in multiprocess mode)."""
    runtime: Runtime = request.app.state.runtime
    runtime.metrics.set_ledger_stats(runtime.ledger.stats())
    runtime.metrics.set_live_stats(runtime.live.stats(), await runtime.live.queue_depth())
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
