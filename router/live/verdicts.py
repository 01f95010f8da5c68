"""Writing live verdicts to the ledger exactly once, and keeping live spend within its daily budgets.

A verdict goes through the ledger's own feedback script (router.ledger.scripts.FEEDBACK_LUA, reused
verbatim as a Lua function), wrapped so that it is written only if no verdict of the same source
for the same request and tier was written before: a `done` key is set in the same atomic script.
A worker that dies after the verdict and before acknowledging the job, or two workers racing on a
reclaimed job, can therefore never count a request as graded twice.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from router.ledger.config import LedgerConfig
from router.ledger.counts import NANO, to_units
from router.ledger.entry import AppCap
from router.ledger.keys import LedgerKeys, utc_day
from router.ledger.scripts import FEEDBACK_LUA, RECORD_LUA, feedback_call, record_call
from router.live.queue import LiveKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.ledger.entry import LedgerEntry

# How long the `done` marks live: longer than any request can still receive a verdict.
DONE_TTL_S = 30 * 86_400
SPENT_TTL_S = 3 * 86_400

# KEYS: request hash, ledger stream, done key. ARGV: the feedback script's ARGV, then the done key's TTL.
# Returns -1 when this verdict was already written, else what the feedback script returns
# (0 unknown request, 1 first verdict, 2 replaced, 3 kept beside a verdict of a stronger source).
ONCE_LUA = (
    "local function feedback(KEYS, ARGV)\n" + FEEDBACK_LUA + "\nend\n"
    """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local args = {}
for i = 1, #ARGV - 1 do args[i] = ARGV[i] end
local result = feedback({KEYS[1], KEYS[2]}, args)
if result ~= 0 then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[#ARGV]) end
return result
"""
)


class VerdictWriter:
    """Records explored answers and writes judge / agreement verdicts into the ledger, each at most once."""

    def __init__(self, redis: Redis, config: LedgerConfig) -> None:
        self.redis = redis
        self.config = config
        self.keys = LedgerKeys(config.key_prefix)
        self.live = LiveKeys(config.key_prefix)
        self._once = redis.register_script(ONCE_LUA)
        self._record = redis.register_script(RECORD_LUA)
        self.book = SpendBook(redis, config.key_prefix)
        self._apps = AppCap(config.max_apps)  # explored answers carry the app the proxy already admitted

    async def recorded(self, request_id: str) -> bool:
        """True when the ledger has this request (and can still take a verdict for it)."""
        return bool(await self.redis.exists(self.keys.request(request_id)))

    async def done(self, request_id: str, source: str, tier: str) -> bool:
        """True when a verdict of this source was already written for this request and tier."""
        return bool(await self.redis.exists(self.live.done(request_id, source, tier)))

    async def record(self, entry: LedgerEntry) -> bool:
        """Write an explored answer's ledger record; False when it was already recorded."""
        call = record_call(entry, self.keys, self.config, self._apps)
        return bool(await self._record(keys=call.keys, args=call.args))

    async def verdict(self, request_id: str, tier: str, score: float, source: str) -> int:
        """Write one verdict of `source` unless already written: -1 duplicate, 0 unknown request, else written."""
        call = feedback_call(request_id, score, self.keys, self.config, source)
        keys = [*call.keys, self.live.done(request_id, source, tier)]
        return int(await self._once(keys=keys, args=[*call.args, DONE_TTL_S]))

    async def spent_today(self, kind: str) -> float:
        """USD spent on this kind of live work today (UTC)."""
        return await self.book.spent_today(kind)

    async def spend(self, kind: str, cost_usd: float) -> None:
        """Add to today's spend of this kind."""
        await self.book.spend(kind, cost_usd)


class SpendBook:
    """Live spend per kind (grading, exploration, shadow) and UTC day, in nano-USD, shared by the fleet."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = LiveKeys(prefix)

    async def spent_today(self, kind: str) -> float:
        """USD spent on this kind of live work today (UTC)."""
        raw = await self.redis.get(self.keys.spent(kind, utc_day(time.time())))
        return int(raw or 0) / NANO

    async def spend(self, kind: str, cost_usd: float) -> None:
        """Add to today's spend of this kind."""
        key = self.keys.spent(kind, utc_day(time.time()))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incrby(key, to_units(cost_usd, NANO))
            pipe.expire(key, SPENT_TTL_S)
            await pipe.execute()
