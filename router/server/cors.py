"""CORS from router.yaml's `server.cors`, applied per request so that it hot-reloads with the policy.

Starlette fixes middleware when the app is built; this wrapper reads the live section on each
request and hands the request to a `CORSMiddleware` built for it (rebuilt only when the section
changes). Without `server.cors` the proxy sends no CORS headers and answers no preflight, so a
browser page on another origin cannot call it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from policies.schema import CorsConfig


class ReloadableCORS:
    """Pure ASGI: CORS by the live `server.cors` section, or none when it is absent."""

    def __init__(self, app: ASGIApp, config: Callable[[], CorsConfig | None]) -> None:
        self.app = app
        self._config = config
        self._built: tuple[CorsConfig, CORSMiddleware] | None = None

    def _middleware(self, config: CorsConfig) -> CORSMiddleware:
        if self._built is None or self._built[0] != config:
            middleware = CORSMiddleware(
                self.app,
                allow_origins=config.allow_origins,
                allow_methods=config.allow_methods,
                allow_headers=config.allow_headers,
                allow_credentials=config.allow_credentials,
                expose_headers=config.expose_headers,
                max_age=config.max_age_s,
            )
            self._built = (config, middleware)
        return self._built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self._config() if scope["type"] == "http" else None
        if config is None:
            await self.app(scope, receive, send)
            return
        await self._middleware(config)(scope, receive, send)
