"""The one place where errors become HTTP responses, all in OpenAI's error shape.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages[0].role", "code": "invalid_value"}}

| error                                   | status | type                  | code                    |
|-----------------------------------------|--------|-----------------------|-------------------------|
| InvalidRequest, FastAPI validation      | 400    | invalid_request_error | from the error          |
| AuthenticationFailed                    | 401    | invalid_request_error | invalid_api_key / missing_api_key |
| ModelNotFound                           | 404    | invalid_request_error | model_not_found         |
| LimitExceeded (rate)                    | 429    | requests              | rate_limit_exceeded     |
| LimitExceeded (budget)                  | 429    | insufficient_quota    | budget_exceeded         |
| BackendTimeout (after fallbacks)        | 504    | server_error          | upstream_timeout        |
| other BackendError (after fallbacks)    | 502    | server_error          | upstream_error          |
| EmbeddingError, ClassifierError         | 503    | server_error          | classifier_unavailable  |
| Redis unreachable (API keys in Redis)   | 503    | server_error          | redis_unavailable       |
| ConfigError, other RouterError          | 500    | server_error          | router_error            |
| anything else (a bug; logged)           | 500    | server_error          | internal_error          |
| ClientDisconnect (gone mid-body)        | 499    | none (no one to read) | client_disconnected     |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from core.errors import (
    AuthenticationFailed,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    ClassifierError,
    EmbeddingError,
    InvalidRequest,
    LimitExceeded,
    ModelNotFound,
    RequestError,
    RouterError,
)
from router.server.middleware import REQUEST_ID_HEADER
from router.server.responses import error_body

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """How one error is answered."""

    status: int
    type: str
    code: str | None
    message: str
    param: str | None = None
    headers: dict[str, str] | None = None


def describe(error: BaseException) -> ErrorInfo:
    """Status, OpenAI error type and code for any error; also names the status in metrics and the ledger."""
    message = str(error)
    if isinstance(error, RequestError):
        param, code = error.param, error.code
        if isinstance(error, InvalidRequest):
            return ErrorInfo(400, "invalid_request_error", code, message, param)
        if isinstance(error, AuthenticationFailed):
            return ErrorInfo(401, "invalid_request_error", code or "invalid_api_key", message, None, {"www-authenticate": "Bearer"})
        if isinstance(error, ModelNotFound):
            return ErrorInfo(404, "invalid_request_error", "model_not_found", message, "model")
        if isinstance(error, LimitExceeded):
            kind = "insufficient_quota" if code == "budget_exceeded" else "requests"
            headers = {"retry-after": str(max(1, round(error.retry_after_s)))} if error.retry_after_s else None
            return ErrorInfo(429, kind, code, message, None, headers)
        return ErrorInfo(400, "invalid_request_error", code, message, param)
    if isinstance(error, BackendTimeout):
        return ErrorInfo(504, "server_error", "upstream_timeout", message)
    if isinstance(error, BackendRateLimited):
        return ErrorInfo(502, "server_error", "upstream_rate_limited", message)
    if isinstance(error, BackendError):
        return ErrorInfo(502, "server_error", "upstream_error", message)
    if isinstance(error, EmbeddingError | ClassifierError):
        return ErrorInfo(503, "server_error", "classifier_unavailable", message)
    if isinstance(error, RedisError):
        return ErrorInfo(
            503, "server_error", "redis_unavailable",
            f"The proxy cannot reach Redis ({type(error).__name__}); retry shortly.",
            headers={"retry-after": "1"},
        )
    if isinstance(error, RouterError):
        return ErrorInfo(500, "server_error", "router_error", message)
    return ErrorInfo(
        500, "server_error", "internal_error",
        "The router failed unexpectedly; the error is logged with its request id. Retry, or report it.",
    )


def error_response(info: ErrorInfo) -> Response:
    """The JSON response for an ErrorInfo."""
    return Response(
        error_body(info.message, info.type, info.param, info.code),
        status_code=info.status,
        media_type="application/json",
        headers=info.headers,
    )


def _validation_info(error: RequestValidationError) -> ErrorInfo:
    first = error.errors()[0] if error.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    return ErrorInfo(400, "invalid_request_error", "invalid_value", f"{param or 'body'}: {message}.", param)


def install_error_handlers(app: FastAPI, count_error: Callable[[Request, str, int], None]) -> None:
    """Register the handlers; `count_error(request, code, status)` feeds the metrics."""

    async def on_router_error(request: Request, error: Exception) -> Response:
        info = describe(error)
        count_error(request, info.code or "unknown", info.status)
        request_id = getattr(request.state, "request_id", None)
        unexpected = info.status >= 500 and not isinstance(error, RouterError | RedisError)
        if unexpected:
            logger.error("request %s failed unexpectedly", request_id or "?", exc_info=error)
        response = error_response(info)
        if unexpected:
            # Starlette re-raises a bug after this answer, and uvicorn then drops the connection:
            # say so, or a client's next request on this keep-alive connection meets a reset.
            response.headers["connection"] = "close"
        if request_id is not None:
            # A bug's 500 is answered by Starlette's outermost ServerErrorMiddleware, outside
            # RequestIdMiddleware: set the header here, so the id the body points to is there.
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    async def on_validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        info = _validation_info(error)
        count_error(request, info.code or "unknown", info.status)
        return error_response(info)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 503: "not_ready"}.get(error.status_code)
        error_type = "server_error" if error.status_code >= 500 else "invalid_request_error"
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"Unknown path {request.url.path}; this proxy serves /v1/chat/completions and /v1/models."
        count_error(request, code or str(error.status_code), error.status_code)
        headers = dict(error.headers) if error.headers else None
        return error_response(ErrorInfo(error.status_code, error_type, code, message, None, headers))

    async def on_client_gone(request: Request, error: Exception) -> Response:
        # The client hung up while sending its body: no bug, and no one to answer (499, as nginx).
        count_error(request, "client_disconnected", 499)
        return Response(status_code=499)

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RouterError, on_router_error)
    app.add_exception_handler(RedisError, on_router_error)
    # The last resort for bugs: still OpenAI's shape, still logged with the request id.
    app.add_exception_handler(Exception, on_router_error)
