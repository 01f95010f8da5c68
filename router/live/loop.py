"""The proxy's side of live grading and exploration: decide, after a request is answered, whether
to queue a job for it, and queue it without ever touching the response.

    live = build_live_loop(lambda: store.policy, redis, prefix)   # at start-up; redis may be None
    await live.after_request(entry, messages, answer_text)        # after the request is accounted
    live.stats()                                                  # counters for /metrics
    await live.queue_depth()                                      # the queue's depth, for /metrics
    await live.aclose()                                           # at shutdown (waits 1 s at most)

`after_request` returns at once: the enqueue runs in a background task bounded by
`queue.enqueue_timeout_s`, at most `max_in_flight` of them at a time (beyond that the job is shed
and counted, as it is when the queue holds `queue.max_depth` jobs or Redis does not answer).

A shadowed candidate policy (router.live.shadow) is looked up in the background every few
seconds; routed requests are then sampled for `shadow` jobs at the candidate's rate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from core.llm import Message
from core.names import FORCED_RULE, PASSTHROUGH, SESSION_PIN_RULE
from policies.policy import Policy
from router.ledger.entry import LedgerEntry
from router.live.jobs import Job, JobKind
from router.live.queue import JobQueue
from router.live.shadow import ShadowSource, ShadowSpec, ShadowStore
from router.live.verdicts import SpendBook

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

# Spend read from Redis is reused this long before the daily budget is checked again.
BUDGET_CACHE_S = 5.0
BUDGET_KIND: dict[JobKind, str] = {"grade": "grading", "explore": "exploration", "shadow": "shadow"}
# Requests the router did not route: a candidate policy would answer them exactly as the live one.
NOT_ROUTED = frozenset({FORCED_RULE, SESSION_PIN_RULE, PASSTHROUGH})


class LiveLoop:
    """Samples answered requests for grading, exploration and shadowing and queues them for `router worker`."""

    def __init__(
        self,
        policy: Callable[[], Policy],
        redis: Redis | None,
        prefix: str,
        *,
        rng: random.Random | None = None,
        max_in_flight: int = 256,
    ) -> None:
        self._policy = policy
        self._queue = JobQueue(redis, prefix) if redis is not None else None
        self._spend = SpendBook(redis, prefix) if redis is not None else None
        self._shadow = ShadowSource(ShadowStore(redis, prefix)) if redis is not None else None
        self._refreshing: asyncio.Task[None] | None = None
        self._rng = rng or random.Random()
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._budget_cache: dict[str, tuple[float, float]] = {}  # kind -> (read at, spent USD)
        self.counts: Counter[str] = Counter()
        self._warned = False

    def sample(self, policy: Policy, entry: LedgerEntry, answer: str) -> JobKind | None:
        """Which job, if any, this answered request gets (exploration and shadowing include grading)."""
        if entry.status != "ok" or not answer or entry.tier not in policy.tier_names:
            return None
        config = policy.config
        draw = self._rng.random()
        if config.exploration.sample and draw < config.exploration.sample and len(policy.tier_names) > 1:
            return "explore"
        shadow = self.shadowing
        if (
            shadow is not None and config.grading.judge_tier is not None and entry.rule not in NOT_ROUTED
            and self._rng.random() < shadow.sample
        ):
            return "shadow"
        if config.grading.judge_tier is not None and self._rng.random() < config.grading.sample:
            return "grade"
        return None

    @property
    def shadowing(self) -> ShadowSpec | None:
        """The candidate policy being shadowed, as last looked up; None when none is."""
        return self._shadow.current if self._shadow is not None else None

    async def refresh_shadow(self) -> ShadowSpec | None:
        """Look up the shadowed candidate now (after_request does it in the background every few seconds)."""
        if self._shadow is None:
            return None
        return await self._shadow.refresh(self._policy())

    def _refresh_in_background(self, policy: Policy) -> None:
        if self._shadow is None or not self._shadow.stale():
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._shadow.read_at = time.monotonic()  # one look-up per period, even when it fails
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh(policy))

    async def _refresh(self, policy: Policy) -> None:
        assert self._shadow is not None
        try:
            async with asyncio.timeout(max(policy.config.queue.enqueue_timeout_s, 1.0)):
                await self._shadow.refresh(policy)
        except (TimeoutError, RedisError, OSError, ValueError) as error:  # ValueError: a malformed record
            self.counts["shadow_lookup_failed"] += 1
            logger.debug("live: looking up the shadowed candidate failed: %s", error)

    async def after_request(
        self, entry: LedgerEntry, messages: Sequence[Message], answer: str, *, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Queue a grading, exploration or shadow job for this answered request when sampled; never raises, never waits.

        `metadata` is the request's as the rules saw it (a shadowed candidate's rules match on it);
        without it, the entry's app and key stand for it.
        """
        policy = self._policy()
        self._refresh_in_background(policy)
        kind = self.sample(policy, entry, answer)
        if kind is None:
            return
        if self._queue is None:
            if not self._warned:
                logger.warning("live: grading/exploration is configured but there is no REDIS_URL; jobs are dropped.")
                self._warned = True
            self.counts["no_redis"] += 1
            return
        if len(self._tasks) >= self._max_in_flight:
            self.counts["shed"] += 1
            return
        job = Job(
            kind=kind, request_id=entry.request_id, tier=entry.tier, messages=tuple(messages), answer=answer,
            policy_version=entry.policy_version, enqueued_at=time.time(), app=entry.app, source=entry.source,
            key_tag=entry.key_tag, difficulty=entry.difficulty, cost_usd=entry.cost_usd,
            extra=self._shadow_extra(entry, metadata) if kind == "shadow" else {},
        )
        task = asyncio.get_running_loop().create_task(self._enqueue(policy, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shadow_extra(self, entry: LedgerEntry, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        shadow = self.shadowing
        assert shadow is not None
        if metadata is None:
            metadata = {k: v for k, v in (("app", entry.app), ("key", entry.key_tag)) if v is not None}
        return {
            "candidate": shadow.version, "budget": shadow.daily_budget_usd, "metadata": dict(metadata),
            "requested_model": entry.extra.get("requested_model"),
        }

    async def _enqueue(self, policy: Policy, job: Job) -> None:
        assert self._queue is not None
        timeout = policy.config.queue.enqueue_timeout_s
        try:
            async with asyncio.timeout(timeout):
                if await self._over_budget(policy, job):
                    self.counts["over_budget"] += 1
                    return
                queued = await self._queue.enqueue(job.to_json(), policy.config.queue.max_depth)
        except (TimeoutError, RedisError, OSError):
            self.counts["enqueue_failed"] += 1
            return
        self.counts[f"queued_{job.kind}" if queued else "shed"] += 1

    async def _over_budget(self, policy: Policy, job: Job) -> bool:
        budget_kind = BUDGET_KIND[job.kind]
        budget = {
            "grading": policy.config.grading.daily_budget_usd,
            "exploration": policy.config.exploration.daily_budget_usd,
            "shadow": job.extra.get("budget"),
        }[budget_kind]
        if budget is None or self._spend is None:
            return False
        now = time.monotonic()
        cached = self._budget_cache.get(budget_kind)
        if cached is None or now - cached[0] > BUDGET_CACHE_S:
            cached = (now, await self._spend.spent_today(budget_kind))
            self._budget_cache[budget_kind] = cached
        return cached[1] >= budget

    def stats(self) -> dict[str, int]:
        """Counters for /metrics: queued_grade, queued_explore, queued_shadow, shed, over_budget,
        enqueue_failed, no_redis, shadow_lookup_failed (cumulative), and in_flight."""
        return {**self.counts, "in_flight": len(self._tasks)}

    async def queue_depth(self, timeout_s: float = 0.25) -> int | None:
        """Jobs in the queue, fleet-wide; None without Redis or when it does not answer within timeout_s."""
        if self._queue is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await self._queue.depth()
        except (TimeoutError, RedisError, OSError):
            return None

    async def aclose(self) -> None:
        """Let in-flight enqueues finish (1 s at most)."""
        pending = set(self._tasks)
        if self._refreshing is not None and not self._refreshing.done():
            pending.add(self._refreshing)
        if pending:
            await asyncio.wait(pending, timeout=1.0)


def build_live_loop(policy: Callable[[], Policy], redis: Redis | None, prefix: str) -> LiveLoop:
    """The proxy's live loop: `policy` gives the current policy (e.g. `lambda: store.policy`), so
    router.yaml edits to grading/exploration apply without a restart; without Redis, jobs are dropped (counted)."""
    return LiveLoop(policy, redis, prefix)
