"""Pure ASGI middlewares: every request's id, returned in `x-router-request-id`; the count of requests in flight.

The router's id is always fresh: it keys the ledger and feedback, so a client must not be able to
choose it (a reused id would hide a paid request as a duplicate, or claim another key's). A
client's own `x-request-id` (1 to 128 letters, digits, `-`, `_`, `.`, `:`) is honoured beside it:
echoed back in `x-request-id`, and recorded with the request (ledger `extra.client_request_id`,
the access log), so its logs and ours name a request the same way.

The count of HTTP requests in flight tells the classifier's scorer when a request is alone: it is
then scored on the event loop, with no hop to the classifier's child process or worker thread
(router/server/scoring.py).

Pure ASGI rather than BaseHTTPMiddleware: it adds no task per request and leaves streaming alone.
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-router-request-id"
CLIENT_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    """A 24-hex-digit random id."""
    return secrets.token_hex(12)


class RequestIdMiddleware:
    """Sets `scope["state"]["request_id"]` and echoes it in a response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        client_id = _client_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"], state["client_request_id"] = request_id, client_id
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(name.lower() != header[0] for name, _ in headers):  # the error handler may have set it
                    headers.append(header)
                if client_id is not None:
                    headers.append((CLIENT_ID_HEADER, client_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _client_id(scope: Scope) -> str | None:
    """The client's `x-request-id`, when it is a plausible id (it ends up in headers, logs and the ledger)."""
    for name, value in scope.get("headers", ()):
        if name == CLIENT_ID_HEADER:
            return value.decode() if _CLIENT_ID.fullmatch(value) else None
    return None


class RequestsInFlight:
    """How many HTTP requests the app is serving now; read and written on the event loop only."""

    def __init__(self) -> None:
        self.count = 0

    def alone(self) -> bool:
        """True when at most one request (the caller's own) is in flight."""
        return self.count <= 1


class InFlightMiddleware:
    """Counts HTTP requests from their first byte to the end of their response (streams included)."""

    def __init__(self, app: ASGIApp, counter: RequestsInFlight) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.counter.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.count -= 1
