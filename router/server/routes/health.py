"""Health probes (GET or HEAD).

/healthz: this process, 200 once its models are loaded, with the Redis state (as before).
/livez: the process answers at all (liveness: restart on failure).
/readyz: the whole server is ready: every worker of `router serve --workers N` (readiness: send traffic).
"""

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


@router.head("/livez", include_in_schema=False)
@router.get("/livez")
async def live(request: Request) -> Response:
    """Liveness: the process answers (restart it when this fails); says nothing about models."""
    return Response(dumps({"status": "alive"}), media_type="application/json")


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz")
async def ready(request: Request) -> Response:
    """Readiness of the whole server: 200 only when every worker has its models and policy loaded.

    With `router serve --workers N` a connection may land on any worker, so one worker that is
    ready is not enough (router.server.readiness); send traffic after this turns 200.
    """
    runtime: Runtime = request.app.state.runtime
    readiness = runtime.readiness
    workers = readiness.ready_workers()
    ok = runtime.state == "ready" and readiness.all_ready()
    body: dict[str, object] = {
        "status": "ready" if ok else ("failed" if runtime.state == "failed" else "starting"),
        "worker": runtime.state,
        "workers_ready": workers,
        "workers": readiness.workers,
        "policy_version": runtime.store.policy.version,
    }
    if runtime.failure is not None:
        body["detail"] = runtime.failure
    headers = None if ok else {"retry-after": "2"}
    return Response(dumps(body), status_code=200 if ok else 503, media_type="application/json", headers=headers)
