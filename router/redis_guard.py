"""Every Redis call a request waits for, bounded in time, with one rule for what an outage does.

A frozen Redis (SIGSTOP, a stalled network) accepts connections and never answers; without a
bound every request that checks a key, a rate or a budget would hang with it. Each call here
runs under `server.redis.timeout_s` of the live router.yaml and ends in one of three ways when
Redis fails or does not answer in time:

| call                              | on failure                                                        |
|-----------------------------------|-------------------------------------------------------------------|
| `strict` (API keys kept in Redis) | refused: 503 `redis_unavailable` (a key that cannot be checked is never accepted) |
| `per_policy` (rate limit, budget) | `server.redis.on_error: open` serves without the limit; `closed` refuses with 503 |
| `best_effort` (settling spend)    | the correction is lost and logged; the answer is already sent     |

Each failure is counted (`router_redis_failures_total{operation, action}`) and logged, at most
once per `LOG_EVERY_S` per operation, so that an outage under load does not flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policies.schema import RedisConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOG_EVERY_S = 10.0
# (operation, action): action is "served" (failed open), "refused" (503) or "lost" (not recorded).
FailureHook = Callable[[str, str], None]


class RedisGuard:
    """Runs request-path Redis calls under the configured bound and applies the outage rule."""

    def __init__(self, on_failure: FailureHook | None = None) -> None:
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._logged: dict[str, tuple[float, int]] = {}  # operation -> (last log time, failures since)

    async def strict(self, operation: str, work: Awaitable[T], config: RedisConfig) -> T:
        """`work`'s result; on failure, a RedisError (answered 503) whatever `on_error` says."""
        try:
            return await self._bounded(work, config)
        except RedisError as error:
            self._failed(operation, "refused", error, "the request is refused (503)")
            raise

    async def per_policy(self, operation: str, work: Awaitable[T], config: RedisConfig, fallback: T) -> T:
        """`work`'s result; on failure `fallback` when on_error is open, else a RedisError (503)."""
        try:
            return await self._bounded(work, config)
        except RedisError as error:
            if config.on_error == "closed":
                self._failed(operation, "refused", error, "the request is refused (503; server.redis.on_error: closed)")
                raise
            self._failed(operation, "served", error, f"served without the {operation} check (server.redis.on_error: open)")
            return fallback

    async def best_effort(self, operation: str, work: Awaitable[T], config: RedisConfig) -> T | None:
        """`work`'s result, or None when Redis failed (logged and counted, never raised)."""
        try:
            return await self._bounded(work, config)
        except RedisError as error:
            self._failed(operation, "lost", error, "not recorded")
            return None

    @staticmethod
    async def _bounded(work: Awaitable[T], config: RedisConfig) -> T:
        try:
            async with asyncio.timeout(config.timeout_s):
                return await work
        except TimeoutError:
            # redis-py drops a connection whose command was cancelled, so no reply is read twice.
            raise RedisTimeoutError(f"no answer within {config.timeout_s:g} s (server.redis.timeout_s)") from None
        except OSError as error:  # below redis-py's own wrapping, e.g. while connecting
            raise RedisConnectionError(str(error)) from error

    def _failed(self, operation: str, action: str, error: RedisError, outcome: str) -> None:
        if self._on_failure is not None:
            self._on_failure(operation, action)
        now = time.monotonic()
        with self._lock:
            last, since = self._logged.get(operation, (-LOG_EVERY_S, 0))
            if now - last < LOG_EVERY_S:
                self._logged[operation] = (last, since + 1)
                return
            self._logged[operation] = (now, 0)
        more = f" ({since} more failures since the last report)" if since else ""
        logger.warning("Redis failed during %s (%s: %s): %s%s.", operation, type(error).__name__, error, outcome, more)
