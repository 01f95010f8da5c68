"""POST /v1/feedback: grade an earlier answer, `{"request_id": ..., "correct": true}` or `{"score": 0.5}`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException
from starlette.responses import Response

from core.errors import InvalidRequest
from router.auth import authorization_of
from router.server.requests import read_json
from router.server.responses import dumps
from router.server.runtime import Runtime

router = APIRouter()

FEEDBACK_BODY_LIMIT = 16_384


class Feedback(BaseModel):
    """A verdict on one request: `correct`, or a `score` in [0, 1] (exactly one)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=200)
    correct: bool | None = None
    score: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_verdict(self) -> Feedback:
        if (self.correct is None) == (self.score is None):
            raise ValueError("give exactly one of `correct` (true/false) or `score` (a number in [0, 1])")
        return self

    @property
    def value(self) -> float:
        """The verdict as a score."""
        if self.score is not None:
            return self.score
        return 1.0 if self.correct else 0.0


def parse_feedback(body: object) -> Feedback:
    """Validate a feedback body; InvalidRequest names the field."""
    try:
        return Feedback.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        where = f"{param}: " if param else ""
        raise InvalidRequest(f"{where}{first['msg']}.", param=param, code="invalid_value") from None


@router.post(
    "/v1/feedback",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": Feedback.model_json_schema()}}}
    },
)
async def feedback(request: Request) -> Response:
    """Record the verdict with the ledger; 404 when the request id is unknown, expired, or another key's.

    Only the key that made a request may grade it, or a key flagged `admin: true` in
    `server.api_keys` (or in its Redis record). Another key's request is answered like an unknown
    one, so that request ids cannot be probed. A proxy without keys has no owners to check.
    """
    runtime: Runtime = request.app.state.runtime
    server = runtime.store.policy.config.server
    principal = await runtime.auth.authenticate(authorization_of(request.headers), server)
    verdict = parse_feedback(await read_json(request, FEEDBACK_BODY_LIMIT))
    owner = None if principal.admin or not runtime.auth.required(server) else principal.name
    if not await runtime.ledger.feedback(verdict.request_id, verdict.value, owner=owner):
        raise HTTPException(
            404, f"No request with id {verdict.request_id!r} made with this API key is in the ledger (it may have "
            "expired); check the id from the x-router-request-id header, and grade with the key that made the request."
        )
    return Response(
        dumps({"request_id": verdict.request_id, "score": verdict.value, "recorded": True}),
        media_type="application/json",
    )
