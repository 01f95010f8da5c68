"""The ledger in Redis for the async proxy: one atomic script per write, and a buffer for outages.

A write never fails the request that made it. While Redis answers, `record` awaits one EVALSHA.
When a call fails for want of Redis (refused, timed out, loading, read-only replica), the write
goes into a bounded in-memory queue and a background task retries, with backoff, until Redis is
back, then drains the queue in pipelined batches; later writes queue behind it so that a verdict
never overtakes its record. What does not fit is dropped, counted in `stats()` and logged.
Retried writes cannot double-count: the record script skips a request id it already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from itertools import islice
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from router.ledger.config import PREFIX_SETTING, LedgerConfig
from router.ledger.counts import STAT_NAMES
from router.ledger.entry import LedgerEntry
from router.ledger.entry import AppCap
from router.ledger.keys import LedgerKeys
from router.ledger.scripts import FEEDBACK_LUA, RECORD_LUA, Call, feedback_call, try_record_call
from router.redis_client import async_redis

logger = logging.getLogger(__name__)

# Failures that mean "Redis is not there right now": worth buffering and retrying.
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
BATCH_SIZE = 256
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
NO_REDIS = (
    "ledger.redis_url: a Redis URL is needed for the Redis ledger, e.g. redis://127.0.0.1:6379/0; "
    "use open_ledger() to fall back to the embedded store when none is configured."
)


def redis_client(url: str, timeout_s: float, prefix: str) -> aioredis.Redis:
    """An asyncio client that fails fast: the ledger's own queue does the retrying."""
    return async_redis(
        url,
        prefix=prefix,
        prefix_setting=PREFIX_SETTING,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        no_retry=True,
    )


class RedisLedger:
    """Async ledger writer backed by Redis (stream + aggregates), resilient to Redis outages."""

    def __init__(self, config: LedgerConfig, client: aioredis.Redis | None = None) -> None:
        config.require_redis(client, NO_REDIS)
        self.config = config
        self._keys = LedgerKeys(config.key_prefix)
        self._apps = AppCap(config.max_apps)
        self._client = client
        self._owns_client = client is None
        self._scripts: dict[str, AsyncScript] = {}
        self._pending: deque[Call] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._up = True  # optimistic until a call fails
        self._closed = False
        self._counters = dict.fromkeys(STAT_NAMES, 0)

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            assert self.config.redis_url is not None  # checked in __init__
            self._client = redis_client(self.config.redis_url, self.config.timeout_s, self.config.key_prefix)
        if not self._scripts:
            self._scripts = {
                "record": self._client.register_script(RECORD_LUA),
                "feedback": self._client.register_script(FEEDBACK_LUA),
            }
        return self._client

    async def start(self) -> None:
        """Check Redis once and say in the log where records go; never raises."""
        try:
            client = self._redis()
            await client.ping()
            # Apps seen before a restart keep their own aggregates; the cap counts them.
            known = await client.smembers(self._keys.dims("app"))
            self._apps.seen.update(sorted(str(app) for app in known)[: self.config.max_apps])
        except OUTAGE_ERRORS as error:
            self._outage(error)
            return
        logger.info(
            "ledger: recording to Redis at %s (prefix %r, stream capped near %d records, prompts %s)",
            self.config.display_url, self.config.key_prefix, self.config.stream_maxlen,
            "stored" if self.config.store_prompts else "not stored",
        )

    async def record(self, entry: LedgerEntry) -> None:
        """Write one request's record and its aggregates; never raises for Redis trouble."""
        call = self._encode(entry)
        if call is not None:
            await self._submit(call)

    def record_nowait(self, entry: LedgerEntry) -> None:
        """Queue a record for the background writer (pipelined); call from inside the event loop."""
        call = self._encode(entry)
        if call is not None:
            self._enqueue(call)

    async def feedback(
        self, request_id: str, score: float, *, owner: str | None = None, source: str = "feedback"
    ) -> bool:
        """Set a request's verdict of `source` in [0, 1] (a second one replaces the first, unless the
        request has a verdict of a stronger source: then it is kept beside it, see VERDICT_SOURCES).

        False when the ledger holds no such request (unknown, or older than record_ttl_days), or,
        with `owner`, when another key made it. During an outage the verdict is queued and True is
        returned; an unknown id (or another key's) is then counted in `stats()["feedback_unknown"]`
        when the queue is flushed, and changes nothing.
        """
        result = await self._submit(feedback_call(request_id, score, self._keys, self.config, source, owner))
        return result is None or result != 0

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until queued writes reach Redis, at most timeout_s; True when the queue is empty."""
        if self._pending or not self._up:
            self._ensure_flusher()
        task = self._flusher
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
        return not self._pending

    def stats(self) -> dict[str, int]:
        """Counters for /metrics: the STAT_NAMES totals, `buffered` (queued now) and `redis_up` (0/1)."""
        return {**self._counters, "buffered": len(self._pending), "redis_up": int(self._up)}

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Flush what is queued (at most timeout_s), stop the background writer, close the client."""
        if self._pending and not self._closed:
            await self.flush(timeout_s)
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._pending:
            self._counters["lost_at_close"] += len(self._pending)
            logger.error(
                "ledger: %d buffered writes were lost at shutdown because Redis at %s stayed unreachable.",
                len(self._pending), self.config.display_url,
            )
            self._pending.clear()
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
            self._scripts = {}

    def _encode(self, entry: LedgerEntry) -> Call | None:
        call = try_record_call(entry, self._keys, self.config, self._apps)
        if call is None:
            self._counters["invalid"] += 1
        return call

    async def _submit(self, call: Call) -> int | None:
        """Run a call now, or queue it; the script's result, or None when it was not confirmed."""
        if self._pending or not self._up:
            self._enqueue(call)
            return None
        try:
            result = int(await self._scripts_for()[call.script](keys=call.keys, args=call.args))
        except OUTAGE_ERRORS as error:
            self._outage(error)
            self._enqueue(call)
            return None
        except RedisError as error:
            self._write_error(call, error)
            return None
        self._count(call, result)
        return result

    def _scripts_for(self) -> dict[str, AsyncScript]:
        self._redis()
        return self._scripts

    def _enqueue(self, call: Call) -> None:
        if self._closed:
            self._counters["lost_at_close"] += 1
            return
        if len(self._pending) >= self.config.buffer_size:
            self._counters["dropped"] += 1
            dropped = self._counters["dropped"]
            if dropped & (dropped - 1) == 0:  # log the 1st, 2nd, 4th, 8th... drop, not every one
                logger.warning(
                    "ledger: the write buffer is full (%d writes); %d writes dropped so far. Bring Redis at %s "
                    "back, or raise ledger.buffer_size.",
                    self.config.buffer_size, dropped, self.config.display_url,
                )
        else:
            self._pending.append(call)
            self._counters["queued_total"] += 1
        self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        if self._closed or (self._flusher is not None and not self._flusher.done()):
            return
        if self._pending or not self._up:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="ledger-flush")

    async def _flush_loop(self) -> None:
        delay = RETRY_FIRST_S
        while (self._pending or not self._up) and not self._closed:
            if await self._drain_once():
                delay = RETRY_FIRST_S
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _drain_once(self) -> bool:
        """Send one batch (or a ping when nothing is queued); False when Redis is still away."""
        batch = list(islice(self._pending, 0, BATCH_SIZE))
        try:
            client = self._redis()
            if not batch:
                await client.ping()
                results: list[Any] = []
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for call in batch:
                        await self._scripts[call.script](keys=call.keys, args=call.args, client=pipe)
                    results = await pipe.execute(raise_on_error=False)
        except OUTAGE_ERRORS as error:
            self._outage(error)
            return False
        for call, result in zip(batch, results, strict=True):
            self._pending.popleft()
            if isinstance(result, Exception):
                self._write_error(call, result)
            else:
                self._count(call, int(result))
                self._counters["flushed"] += 1
        if not self._up:
            self._up = True
            logger.warning(
                "ledger: Redis at %s is reachable again; sending %d buffered writes.",
                self.config.display_url, len(self._pending) + len(batch),
            )
        return True

    def _outage(self, error: Exception) -> None:
        if self._up:
            self._counters["outages"] += 1
            logger.warning(
                "ledger: Redis at %s is unreachable (%s); requests are still served, and up to %d ledger "
                "writes are kept in memory until it is back.",
                self.config.display_url, error, self.config.buffer_size,
            )
        self._up = False
        self._ensure_flusher()

    def _write_error(self, call: Call, error: Exception) -> None:
        self._counters["write_errors"] += 1
        logger.error("ledger: Redis refused a %s write (%s); it was dropped.", call.script, error)

    def _count(self, call: Call, result: int) -> None:
        if call.script == "record":
            self._counters["recorded" if result else "duplicates"] += 1
        else:
            self._counters["feedback" if result else "feedback_unknown"] += 1
