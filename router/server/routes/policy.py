"""GET /v1/router/policy: the live policy's version and shape (it changes on hot reload)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from policies.policy import describe_strategy
from router.server.responses import dumps
from router.server.runtime import Runtime

router = APIRouter()


@router.get("/v1/router/policy")
async def live_policy(request: Request) -> Response:
    """Version, source file, tiers (with strategy), rules, thresholds and fallbacks of the live policy."""
    runtime: Runtime = request.app.state.runtime
    policy = runtime.store.policy
    await runtime.auth.authenticate(request.headers.get("authorization"), policy.config.server)
    config = policy.config
    body = {
        "version": policy.version,
        "source": policy.source,
        "classifier_score": config.classifier.score,
        "tiers": [
            {
                "name": name,
                "backend": policy.tier(name).backend,
                "model": policy.tier(name).model,
                "strategy": describe_strategy(policy.tier(name).strategy),
            }
            for name in policy.tier_names
        ],
        "rules": [{"name": rule.name, "tier": rule.tier} for rule in config.rules],
        "thresholds": list(policy.thresholds),
        "fallbacks": config.fallbacks,
        "passthrough_models": config.server.passthrough.models,
    }
    return Response(dumps(body), media_type="application/json")
