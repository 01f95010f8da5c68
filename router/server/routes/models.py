"""GET /v1/models: `router`, its alias `auto`, and every tier of the live policy."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from core.names import ROUTER_MODELS
from router.server.responses import dumps
from router.server.dependencies import PolicyDep, PrincipalDep

router = APIRouter()


@router.get("/v1/models")
async def list_models(policy: PolicyDep, principal: PrincipalDep) -> Response:
    """The models a client can name (pass-through models are patterns, so not listed)."""
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "router"} for name in ROUTER_MODELS]
    data += [
        {"id": name, "object": "model", "created": 0, "owned_by": f"router:{policy.tier(name).backend}"}
        for name in policy.tier_names
    ]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")
