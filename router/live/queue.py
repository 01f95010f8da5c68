"""The live job queue: a Redis Stream with one consumer group shared by every `router worker`.

    {p}live:jobs     stream of jobs (field `j`: the job as JSON); a job is deleted once acknowledged,
                     so XLEN is the depth: jobs waiting plus jobs being worked on
    {p}live:stats    hash of fleet-wide counters: enqueued, shed (queue full), and the workers' counts

Enqueueing is one Lua call that refuses the job when the stream already holds `max_depth` jobs
(counted as `shed`), so a backlog never grows without bound and the proxy never waits on it.
Workers read new jobs with XREADGROUP and take over the jobs of a worker that died (delivered
but not acknowledged for `min_idle_s`) with XAUTOCLAIM; a job is acknowledged and deleted in one
transaction after its verdicts are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from redis.asyncio import Redis

GROUP = "workers"

# KEYS: stream, stats hash. ARGV: job JSON, max depth. Returns 1 when queued, 0 when shed.
ENQUEUE_LUA = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[2], 'shed', 1)
  return 0
end
redis.call('XADD', KEYS[1], '*', 'j', ARGV[1])
redis.call('HINCRBY', KEYS[2], 'enqueued', 1)
return 1
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job handed to this worker: its stream id and raw JSON."""

    id: str
    payload: str


class LiveKeys:
    """The live queue's key names under the ledger's prefix."""

    __slots__ = ("jobs", "prefix", "stats")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs = f"{prefix}live:jobs"
        self.stats = f"{prefix}live:stats"

    def spent(self, kind: str, day: str) -> str:
        """Nano-USD spent on one kind of live work (grading, exploration, shadow) on one UTC day."""
        return f"{self.prefix}live:spent:{kind}:{day}"

    def done(self, request_id: str, source: str, tier: str) -> str:
        """Set once a verdict of this source for this request at this tier is written."""
        return f"{self.prefix}live:done:{source}:{tier}:{request_id}"


class JobQueue:
    """Enqueue (proxy side) and consume (worker side) live jobs on one Redis Stream."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = LiveKeys(prefix)
        self._enqueue = redis.register_script(ENQUEUE_LUA)

    async def enqueue(self, payload: str, max_depth: int) -> bool:
        """Queue one job; False (counted as shed) when the queue already holds max_depth jobs."""
        return bool(await self._enqueue(keys=[self.keys.jobs, self.keys.stats], args=[payload, max_depth]))

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so jobs queued before any worker are kept)."""
        try:
            await self.redis.xgroup_create(self.keys.jobs, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        """New jobs for this consumer (waits up to block_ms when there are none)."""
        reply = await self.redis.xreadgroup(GROUP, consumer, {self.keys.jobs: ">"}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply)[0]
        return [Delivery(entry_id, fields.get("j", "")) for entry_id, fields in entries]

    async def reclaim(self, consumer: str, min_idle_s: float, count: int) -> list[Delivery]:
        """Take over jobs delivered to any consumer but not acknowledged for min_idle_s (a dead worker's)."""
        reply = await self.redis.xautoclaim(
            self.keys.jobs, GROUP, consumer, min_idle_time=int(min_idle_s * 1000), start_id="0-0", count=count
        )
        entries = cast(list[tuple[str, dict[str, str] | None]], reply[1])
        # An entry deleted meanwhile comes back without fields; it has nothing left to do.
        return [Delivery(entry_id, fields.get("j", "")) for entry_id, fields in entries if fields]

    async def ack(self, delivery_id: str) -> None:
        """Acknowledge and delete a finished job, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.jobs, GROUP, delivery_id)
            pipe.xdel(self.keys.jobs, delivery_id)
            await pipe.execute()

    async def depth(self) -> int:
        """Jobs in the queue: waiting, or delivered and not yet acknowledged."""
        return int(await self.redis.xlen(self.keys.jobs))

    async def pending(self) -> int:
        """Jobs delivered to some worker and not yet acknowledged."""
        try:
            summary = await self.redis.xpending(self.keys.jobs, GROUP)
        except ResponseError:  # no group yet
            return 0
        return int(summary.get("pending", 0)) if isinstance(summary, dict) else 0

    async def count(self, counters: dict[str, int]) -> None:
        """Add to the fleet-wide counters in the stats hash."""
        if not counters:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, amount in counters.items():
                pipe.hincrby(self.keys.stats, name, amount)
            await pipe.execute()

    async def stats(self) -> dict[str, int]:
        """The fleet-wide counters."""
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.stats))
        return {name: int(value) for name, value in raw.items()}
