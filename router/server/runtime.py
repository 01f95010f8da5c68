"""Everything one proxy process holds while it serves: policy, models, limits, ledger, metrics.

Start-up happens in two steps. `start()` (run by the app's lifespan) opens Redis, starts the
policy watcher and returns at once, so the socket opens and `/healthz` can answer 503 while
`_load` brings the classifier and local models up in a thread. When they are loaded, the
long-lived objects are frozen out of the garbage collector (see `tune_gc`) and `/healthz` turns 200.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from policies import PolicyStore
from policies.schema import RedisConfig
from router.auth import Authenticator
from core.errors import RouterError
from router.execution import BackendProvider, Executor
from router.ledger import Ledger
from router.live.loop import build_live_loop
from router.ratelimit import Limiter, LocalLimiter, RedisLimiter
from router.redis_client import async_redis
from router.redis_guard import RedisGuard
from router.server.metrics import RouterMetrics
from router.server.middleware import RequestsInFlight
from router.server.readiness import WorkerReadiness
from router.server.scoring import GIL_SWITCH_INTERVAL_S, ClassifierLoader, ScorerPool
from router.server.settings import ServerSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

# Measured (bench/proxy): without freezing, a full collection walks the ~500k objects of torch,
# transformers and the models and pauses ~300 ms. Frozen, it walks only what serving created.
# Young collections cost ~0.6 ms per 1,000 objects, so a large first threshold only trades many
# short pauses for few long ones (50,000 gave 45 ms pauses): keep it small.
GC_THRESHOLDS = (2_000, 10, 10)
REDIS_SOCKET_TIMEOUT_S = 5.0  # a backstop: request-path calls have the shorter server.redis.timeout_s
CHAT_PATH = "/v1/chat/completions"


def tune_gc() -> tuple[int, int, int]:
    """Collect once, freeze what survived start-up (models, modules) out of every later collection."""
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    logger.info(
        "gc: %d start-up objects frozen out of collection; thresholds %s -> %s",
        gc.get_freeze_count(), before, GC_THRESHOLDS,
    )
    return before


class Runtime:
    """The per-process state behind the routes (one per app)."""

    def __init__(
        self,
        settings: ServerSettings,
        store: PolicyStore,
        backends: BackendProvider,
        ledger: Ledger,
        classifier_loader: ClassifierLoader,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backends = backends
        self.ledger = ledger
        self.metrics = RouterMetrics()
        self.executor = Executor(backends, on_event=self._count_event)
        self.in_flight = RequestsInFlight()
        self.scorers = ScorerPool(
            classifier_loader, max_batch=settings.classifier_batch, observe=self._observe_batch,
            alone=self.in_flight.alone, processes=settings.classifier_process,
            threads_alone=settings.classifier_threads_alone,
            on_process_event=lambda event: self.metrics.classifier_process.labels(event).inc(),
        )
        self.redis: Redis | None = None
        self.redis_guard = RedisGuard(self.metrics.count_redis_failure)
        self.limiter: Limiter = LocalLimiter()
        self.auth = Authenticator(settings.api_keys, None, settings.redis_prefix, self.redis_guard)
        self.metrics.track_policy_reloads(store.stats)
        self.metrics.track_classifier_stages(lambda: vars(self.scorers.stage_counts()))
        self.live = build_live_loop(lambda: self.store.policy, None, settings.redis_prefix)
        self.state = "starting"
        self.readiness = WorkerReadiness.from_environment()  # every worker's, for /readyz
        self.failure: str | None = None
        self._loading: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gc_before: tuple[int, int, int] | None = None
        self._gc_started: float | None = None
        self.metrics.set_policy(store.policy.version)

    def _time_gc(self, phase: str, info: dict[str, int]) -> None:
        """gc callback: note each collection's pause (no locks here: it may run inside any allocation)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.metrics.gc_samples.append((info.get("generation", -1), time.perf_counter() - self._gc_started))
            self._gc_started = None

    def count_error(self, request: Request, code: str, status: int) -> None:
        """Count an error response; a chat request refused before it was planned counts under tier "none"."""
        self.metrics.count_error(code)
        if request.url.path == CHAT_PATH and not getattr(request.state, "accounted", False):
            self.metrics.requests.labels("none", str(status)).inc()

    def _redis_config(self) -> RedisConfig:
        return self.store.policy.config.server.redis

    def _count_event(self, kind: str, source: str, target: str) -> None:
        self.metrics.events.labels(kind, source, target).inc()

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.classifier_batch.observe(size)

    async def start(self) -> None:
        """Open connections and begin loading models in the background."""
        # A classifier worker thread (no child process, or while one is replaced) takes the GIL back
        # from the event loop for each batch.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        if self.settings.redis_url is not None:
            # Requests bound each call by server.redis.timeout_s (router.redis_guard); the socket
            # timeouts bound everything else, and redis-py's own retries would only multiply both.
            self.redis = async_redis(
                self.settings.redis_url.get_secret_value(),
                prefix=self.settings.redis_prefix,
                prefix_setting="ROUTER_REDIS_PREFIX",
                socket_timeout=REDIS_SOCKET_TIMEOUT_S,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
                no_retry=True,
            )
            self.limiter = RedisLimiter(
                self.redis, self.settings.redis_prefix, config=self._redis_config, guard=self.redis_guard
            )
        else:
            logger.info("no REDIS_URL: rate limits and budgets are enforced per process only.")
        self.auth = Authenticator(self.settings.api_keys, self.redis, self.settings.redis_prefix, self.redis_guard)
        self.live = build_live_loop(lambda: self.store.policy, self.redis, self.settings.redis_prefix)
        await self.ledger.start()
        if self.settings.reload_interval_s > 0:
            self.store.start()
        self._loading = asyncio.create_task(self._load(), name="router-load")

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._load_blocking)
        except RouterError as error:
            self.state, self.failure = "failed", str(error)
            logger.error("start-up failed, requests get 503: %s", error)
            return
        if self.settings.gc_freeze:
            self._gc_before = tune_gc()
        gc.callbacks.append(self._time_gc)
        self.state = "ready"
        self.metrics.ready.set(1)
        self.readiness.mark_ready()
        logger.info("ready in %.1f s (policy %s)", time.perf_counter() - started, self.store.policy.version)

    def _load_blocking(self) -> None:
        if not self.settings.preload:
            return
        policy = self.store.policy
        self.scorers.load(policy)
        self.backends.preload(policy)
        # torch is loaded only by local models or a sentence-transformers classifier, never for the
        # shipped ONNX one. With more threads than idle cores, OpenMP workers spin against the event
        # loop: one MiniLM call then takes 500 ms instead of 15 ms on a busy 2-core machine.
        torch = sys.modules.get("torch")
        if self.settings.torch_threads is not None and torch is not None:
            torch.set_num_threads(self.settings.torch_threads)

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait for loading to end; True when ready."""
        if self._loading is not None:
            await asyncio.wait({self._loading}, timeout=timeout_s)
        return self.state == "ready"

    def require_ready(self) -> None:
        """Raise 503 until the models are loaded (or after start-up failed)."""
        if self.state == "ready":
            return
        if self.state == "failed":
            raise HTTPException(503, f"The router failed to start: {self.failure} Fix it and restart.")
        raise HTTPException(503, "The router is starting (models are loading); retry in a few seconds.", {"retry-after": "2"})

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, kept referenced until it ends (awaited on shutdown)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop the watcher, finish background writes, release models and connections."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        self.readiness.clear()
        self.metrics.ready.set(0)
        self.metrics.process_exited()
        self.store.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        await self.scorers.aclose()
        await self.backends.aclose()
        await self.live.aclose()
        await self.ledger.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self._time_gc in gc.callbacks:
            gc.callbacks.remove(self._time_gc)
        if self._gc_before is not None:
            gc.unfreeze()
            gc.set_threshold(*self._gc_before)
