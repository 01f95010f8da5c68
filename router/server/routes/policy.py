"""GET /v1/router/policy: the live policy's version and shape (it changes on hot reload)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from router.server.responses import dumps
from router.server.dependencies import PolicyDep, PrincipalDep

router = APIRouter()


@router.get("/v1/router/policy")
async def live_policy(policy: PolicyDep, principal: PrincipalDep) -> Response:
    """Version, source file, tiers (with strategy), rules, thresholds and fallbacks of the live policy."""
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
                "strategy": policy.tier(name).strategy.describe(),
            }
            for name in policy.tier_names
        ],
        "rules": [{"name": rule.name, "tier": rule.tier} for rule in config.rules],
        "thresholds": list(policy.thresholds),
        "fallbacks": config.fallbacks,
        "passthrough_models": config.server.passthrough.models,
    }
    return Response(dumps(body), media_type="application/json")
