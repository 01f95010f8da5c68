"""`router worker`: grade and explore live traffic off the request path (docs/live.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from router.cli._common import RedisUrlOption, configure_logging, redis_url, reports_errors
from core.errors import ConfigError

logger = logging.getLogger(__name__)


@reports_errors
def worker_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="ROUTER_CONFIG", help="Policy file (hot-reloaded): tiers, grading, exploration.")
    ] = Path("router.yaml"),
    redis: RedisUrlOption = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Key prefix of the ledger and the queue.")] = "router:",
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Jobs handled at once by this process.")] = 4,
    min_idle: Annotated[
        float, typer.Option("--min-idle", min=0.1, help="Seconds a job may stay unacknowledged before another worker takes it over.")
    ] = 30.0,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
    consumer: Annotated[
        str | None, typer.Option("--consumer", help="This worker's name in the consumer group (default: host-pid).")
    ] = None,
    max_jobs: Annotated[int | None, typer.Option("--max-jobs", min=1, help="Exit after this many jobs (tests, batch runs).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Consume the live queue: judge sampled answers, answer explored requests with the other tiers, write verdicts."""
    from policies import PolicyStore
    from router.execution import DefaultBackends
    from router.ledger.config import LedgerConfig
    from router.live.metrics import WorkerMetrics
    from router.live.worker import Worker, check_live_config
    from router.redis_client import async_redis

    configure_logging(verbose)
    url = redis_url(redis)
    if url is None:
        raise ConfigError("router worker needs Redis: pass --redis-url redis://HOST:6379/0 or set REDIS_URL.")
    store = PolicyStore(config)
    check_live_config(store.policy)
    ledger = LedgerConfig(redis_url=url, key_prefix=prefix, store_prompts=store.policy.config.ledger.store_prompts)
    metrics = WorkerMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=metrics.registry)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"

    async def main() -> None:
        client = async_redis(url, prefix=prefix, prefix_setting="--prefix", socket_timeout=30, socket_connect_timeout=2)
        backends = DefaultBackends()
        worker = Worker(
            client, lambda: store.policy, backends, ledger, consumer=name, concurrency=concurrency,
            min_idle_s=min_idle, metrics=metrics,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        logger.info("worker %s: consuming %slive:jobs at %s", name, prefix, ledger.display_url)
        try:
            await worker.run(stop, max_jobs=max_jobs)
        finally:
            logger.info("worker %s: stopping; %s", name, dict(worker.totals))
            await backends.aclose()
            await client.aclose()

    with store:
        asyncio.run(main())
