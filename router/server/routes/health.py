"""GET (or HEAD) /healthz: 200 once models are loaded and requests are served, 503 before (or after a failed start)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response

from router.server.responses import dumps
from router.server.runtime import Runtime

router = APIRouter()


# HEAD too: load balancers and uptime checkers probe with it. A route of its own, out of the
# schema: one route with both methods gives two OpenAPI operations with one duplicate id.
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz")
async def health(request: Request) -> Response:
    """Readiness; Redis is reported but does not decide it (limits fail open without it)."""
    runtime: Runtime = request.app.state.runtime
    redis = "none"
    if runtime.redis is not None:
        try:
            async with asyncio.timeout(0.5):
                await runtime.redis.ping()
            redis = "up"
        except (RedisError, OSError, TimeoutError):
            redis = "down"
    body = {"status": runtime.state, "policy_version": runtime.store.policy.version, "redis": redis}
    if runtime.failure is not None:
        body["detail"] = runtime.failure
    return Response(dumps(body), status_code=200 if runtime.state == "ready" else 503, media_type="application/json")
