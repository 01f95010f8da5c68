"""GET /v1/models (and /v1/models/{id}): `router`, its alias `auto`, and every tier of the live policy.

`/v1/embeddings` and `/v1/completions` are not served: they answer 404 `not_found` with a message
that says so (the router routes chat; send embeddings to the provider directly).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.responses import Response

from core.errors import ModelNotFound
from core.names import ROUTER_MODELS
from policies import Policy
from router.execution import passthrough_allowed
from router.server.dependencies import PolicyDep, PrincipalDep
from router.server.responses import dumps

router = APIRouter()


@router.get("/v1/models")
async def list_models(policy: PolicyDep, principal: PrincipalDep) -> Response:
    """The models a client can name (pass-through models are patterns, so not listed)."""
    data = [_model(name, policy) for name in (*ROUTER_MODELS, *policy.tier_names)]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/v1/models/{model:path}")
async def get_model(model: str, policy: PolicyDep, principal: PrincipalDep) -> Response:
    """One model a client can name: router, auto, a rule's model name, a tier, or an allowed pass-through name."""
    known = model in ROUTER_MODELS or model in _rule_models(policy) or model in policy.tier_names
    if not known and not passthrough_allowed(model, policy.config.server.passthrough):
        raise ModelNotFound(
            f"The model `{model}` does not exist on this router; GET /v1/models lists the names it serves."
        )
    return Response(dumps(_model(model, policy)), media_type="application/json")


def _rule_models(policy: Policy) -> set[str]:
    return {name for rule in policy.config.rules if rule.when and rule.when.model for name in rule.when.model}


def _model(name: str, policy: Policy) -> dict[str, Any]:
    if name in policy.tier_names:
        owner = f"router:{policy.tier(name).backend}"
    elif name in ROUTER_MODELS or name in _rule_models(policy):
        owner = "router"
    else:
        owner = "router:passthrough"
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


@router.post("/v1/embeddings")
@router.post("/v1/completions")
async def not_served() -> Response:
    """Endpoints of OpenAI's API this proxy does not serve: a 404 that says so."""
    raise HTTPException(
        404,
        "This router serves /v1/chat/completions only: /v1/embeddings and the legacy /v1/completions are "
        "not served; send them to the provider directly, or use chat completions.",
    )
