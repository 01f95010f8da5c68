"""The app factory: `create_app(settings)` wires settings, policy, backends, ledger and routes.

Nothing is built at import time. `create_app` reads and validates the policy file (so a bad
file fails `router serve` at once); models load after start-up, in the background (`/healthz`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from policies import PolicyStore
from router.execution import BackendProvider, DefaultBackends
from router.server.errors import install_error_handlers
from router.ledger import Ledger, open_ledger
from router.server.cors import ReloadableCORS
from router.server.middleware import InFlightMiddleware, RequestIdMiddleware
from router.tracing import TracingMiddleware, configure_tracing
from router.server.pipeline import ChatPipeline
from router.server.routes import chat, feedback, health, metrics, models, policy
from router.server.runtime import Runtime
from router.server.scoring import ClassifierLoader, default_classifier_loader
from router.server.settings import ServerSettings


def create_app(
    settings: ServerSettings | None = None,
    *,
    backends: BackendProvider | None = None,
    ledger: Ledger | None = None,
    classifier_loader: ClassifierLoader | None = None,
) -> FastAPI:
    """Build the proxy app; the keyword arguments replace real parts (tests, embedding)."""
    settings = settings if settings is not None else ServerSettings()
    store = PolicyStore(settings.config, interval_s=settings.reload_interval_s or 0.5)
    runtime = Runtime(
        settings,
        store,
        backends if backends is not None else DefaultBackends(direct_http=settings.direct_http),
        ledger if ledger is not None else open_ledger(settings.ledger_config(store.policy.config.ledger)),
        classifier_loader if classifier_loader is not None else default_classifier_loader,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="difficulty-router",
        summary="OpenAI-compatible proxy that routes each request by predicted difficulty.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.pipeline = ChatPipeline(runtime)
    app.add_middleware(InFlightMiddleware, counter=runtime.in_flight)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(TracingMiddleware)  # outermost; passes straight through when tracing is off
    app.add_middleware(ReloadableCORS, config=lambda: store.policy.config.server.cors)  # added last: outside tracing too, preflights first
    install_error_handlers(app, runtime.count_error)
    for module in (chat, models, metrics, feedback, policy, health):
        app.include_router(module.router)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from ROUTER_* variables."""
    # tqdm (inside sentence-transformers' encode) otherwise makes a multiprocessing lock, which in
    # a spawned worker is a named semaphore that outlives it: "leaked semaphore objects" at shutdown.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    configure_tracing()  # each worker exports its own spans (ROUTER_OTEL, OTEL_EXPORTER_OTLP_ENDPOINT)
    return create_app(ServerSettings())
