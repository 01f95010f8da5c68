"""`router serve`: run the OpenAI-compatible proxy with uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from policies import load_policy
from router.cli._common import configure_logging, reports_errors


class LogFormat(str, Enum):
    """How log lines look."""

    text = "text"
    json = "json"


class LogLevel(str, Enum):
    """uvicorn's log levels."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


@reports_errors
def serve_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="ROUTER_CONFIG", help="Policy file (hot-reloaded while serving).")
    ] = Path("router.yaml"),
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the proxy to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes; each loads its own models. Share limits via REDIS_URL.")
    ] = 1,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="REDIS_URL", show_default=False,
            help="Redis for API keys, rate limits and budgets shared by workers (default: per process).",
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log one line per request (costs throughput); chat requests get a `router.access` line with "
            "request id, key, tier, rule, strategy, samples, tokens, cost and latency.",
        ),
    ] = False,
    log_level: Annotated[LogLevel, typer.Option(help="Log level.")] = LogLevel.info,
    otel: Annotated[
        bool,
        typer.Option(
            "--otel", envvar="ROUTER_OTEL",
            help="OpenTelemetry traces over OTLP/HTTP, configured by the standard OTEL_* variables (on by itself "
            "when OTEL_EXPORTER_OTLP_ENDPOINT is set); needs the `otel` extra.",
        ),
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option(envvar="ROUTER_LOG_FORMAT", help="text, or json: one JSON object per line.")
    ] = LogFormat.text,
) -> None:
    """Serve /v1/chat/completions (plain and streamed), /v1/models, /metrics, /v1/feedback, /healthz, /livez and /readyz."""
    import uvicorn

    from router.server import ServerSettings, create_app
    from router.server.logs import log_config
    from router.tracing import configure_tracing
    from router.server.readiness import READY_DIR_ENV, WORKERS_ENV

    configure_logging(verbose=log_level is LogLevel.debug)
    load_policy(config)  # a bad file stops here with its problems listed, before any model loads
    # Workers are separate processes that build their settings from the environment.
    os.environ["ROUTER_CONFIG"] = str(config)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    logging = log_config(log_format.value, level=log_level.value, access_log=access_log)
    if otel:
        os.environ["ROUTER_OTEL"] = "1"  # worker processes read it (router.tracing)
    configure_tracing()  # fails here, before models load, when the SDK is missing
    options = {"host": host, "port": port, "log_level": log_level.value, "access_log": access_log, "log_config": logging}
    if workers == 1:
        uvicorn.run(create_app(ServerSettings(config=config)), **options)  # type: ignore[arg-type]
        return
    # Several workers share a private folder: their readiness markers (/readyz is 200 only when all
    # are ready) and, unless the operator chose one, prometheus_client's multiprocess files (/metrics
    # then sums every worker). The folder goes when the server stops.
    shared = Path(tempfile.mkdtemp(prefix="router-serve-"))
    os.environ[READY_DIR_ENV], os.environ[WORKERS_ENV] = str(shared), str(workers)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        (shared / "metrics").mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared / "metrics")
    try:
        uvicorn.run("router.server:app_from_environment", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(shared, ignore_errors=True)
