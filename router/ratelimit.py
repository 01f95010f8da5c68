"""Per-key request rates and daily budgets, atomic across workers and processes.

With Redis, each check is one Lua script, so two processes can never both take the last token
or both spend the last cent. Budgets work by reservation: before a request runs, its expected
cost is added to the key's spend of the day (refused if that would pass the limit); when it
ends, the difference to the actual cost is settled. Without Redis, `LocalLimiter` does the same
in one process only, which the start-up log says.

Every Redis call is bounded by `server.redis.timeout_s` of the live router.yaml. When Redis
fails or does not answer in time, `server.redis.on_error` decides: `open` (the default) serves
the request without the limit, `closed` refuses it with 503; either way it is logged and counted
(`router.redis_guard`). A settle that fails is lost, logged and counted: the answer is already sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from core.errors import LimitExceeded
from policies.schema import RedisConfig
from router.redis_guard import RedisGuard

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

SPEND_TTL_S = 2 * 86_400  # a day's spend outlives the day, for late settles

# Token bucket: KEYS[1] bucket hash, KEYS[2] today's spend; ARGV rate (tokens per ms), burst, on (1/0).
_ADMIT = """
local spent = redis.call('GET', KEYS[2]) or '0'
if ARGV[3] == '0' then return {1, 0, spent} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait, spent}
"""

# Reserve: KEYS[1] today's spend; ARGV amount, limit ('' = none), ttl seconds.
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] ~= '' and spent + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, tostring(spent)}
end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, total}
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: `per_minute` requests a minute, at most `burst` at once."""

    per_minute: int
    burst: int

    @property
    def per_ms(self) -> float:
        """Tokens added per millisecond."""
        return self.per_minute / 60_000


class Limiter(Protocol):
    """Admits requests under a key's rate, and reserves and settles its daily spend."""

    async def admit(self, principal: str, rate: Rate | None) -> float:
        """Take one token (LimitExceeded when none is left); return the key's spend today in USD."""
        ...

    async def reserve(self, principal: str, amount_usd: float, limit_usd: float | None) -> None:
        """Add `amount_usd` to today's spend, or raise LimitExceeded if that would pass `limit_usd`."""
        ...

    async def settle(self, principal: str, delta_usd: float) -> None:
        """Correct today's spend by `delta_usd` (actual minus reserved)."""
        ...

    async def admit_tokens(self, principal: str, per_minute: int) -> None:
        """Raise LimitExceeded when the key has used `per_minute` tokens this minute (a request's own
        tokens are not known before it runs, so the request that crosses the limit still runs)."""
        ...

    async def count_tokens(self, principal: str, tokens: int) -> None:
        """Add a finished request's tokens to this minute's count."""
        ...


TOKEN_WINDOW_TTL_S = 120


def _minute() -> int:
    return int(time.time() // 60)


def _tokens_refusal(principal: str, per_minute: int, used: int) -> LimitExceeded:
    wait = 60 - time.time() % 60
    return LimitExceeded(
        f"Token rate limit reached for key '{principal}': {used} of {per_minute} tokens per minute used; "
        f"retry in {wait:.0f} s.",
        code="rate_limit_exceeded",
        retry_after_s=wait,
    )


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _rate_refusal(principal: str, rate: Rate, wait_s: float) -> LimitExceeded:
    return LimitExceeded(
        f"Rate limit reached for key '{principal}': {rate.per_minute} requests per minute "
        f"(burst {rate.burst}); retry in {wait_s:.1f} s.",
        code="rate_limit_exceeded",
        retry_after_s=wait_s,
    )


def _budget_refusal(principal: str, spent: float, amount: float, limit: float) -> LimitExceeded:
    return LimitExceeded(
        f"Daily budget of ${limit:g} for key '{principal}' would be exceeded: ${spent:.6f} spent or "
        f"reserved today, and this request is expected to cost ${amount:.6f}. Retry tomorrow (UTC) "
        "or ask for a larger budget.",
        code="budget_exceeded",
    )


class RedisLimiter:
    """The shared limiter: one Lua script per check, keys under `prefix`.

    `config` gives the live `server.redis` section (timeout and outage rule) at each call.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        config: Callable[[], RedisConfig] = RedisConfig,
        guard: RedisGuard | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._config = config
        self._guard = guard or RedisGuard()
        self._admit: AsyncScript = redis.register_script(_ADMIT)
        self._reserve: AsyncScript = redis.register_script(_RESERVE)

    def _spend_key(self, principal: str) -> str:
        return f"{self._prefix}spend:{principal}:{_today()}"

    async def admit(self, principal: str, rate: Rate | None) -> float:
        """One token from the key's bucket, atomically; returns today's spend."""
        keys = [f"{self._prefix}rate:{principal}", self._spend_key(principal)]
        args = [rate.per_ms, rate.burst, 1] if rate is not None else [0, 0, 0]
        open_result = [1, 0, 0.0]  # failed open: admitted, and nothing known spent
        allowed, wait_ms, spent = await self._guard.per_policy(
            "rate_limit", self._admit(keys=keys, args=args), self._config(), open_result
        )
        if not int(allowed):
            assert rate is not None
            raise _rate_refusal(principal, rate, int(wait_ms) / 1000)
        return float(spent)

    async def reserve(self, principal: str, amount_usd: float, limit_usd: float | None) -> None:
        """Reserve the expected cost atomically against the daily limit."""
        limit = "" if limit_usd is None else repr(limit_usd)
        reservation = self._reserve(keys=[self._spend_key(principal)], args=[repr(amount_usd), limit, SPEND_TTL_S])
        ok, spent = await self._guard.per_policy("budget", reservation, self._config(), [1, 0.0])
        if not int(ok):
            assert limit_usd is not None
            raise _budget_refusal(principal, float(spent), amount_usd, limit_usd)

    async def settle(self, principal: str, delta_usd: float) -> None:
        """Add the difference between actual and reserved cost."""
        if delta_usd == 0:
            return
        await self._guard.best_effort("budget_settle", self._settle(self._spend_key(principal), delta_usd), self._config())

    async def admit_tokens(self, principal: str, per_minute: int) -> None:
        """This minute's tokens for the key, from Redis (failing open or closed per server.redis.on_error)."""
        lookup = self._redis.get(f"{self._prefix}tpm:{principal}:{_minute()}")
        used = await self._guard.per_policy("token_limit", lookup, self._config(), None)
        if used is not None and int(used) >= per_minute:
            raise _tokens_refusal(principal, per_minute, int(used))

    async def count_tokens(self, principal: str, tokens: int) -> None:
        """Add `tokens` to this minute's count (lost, logged and counted when Redis fails)."""
        if tokens > 0:
            key = f"{self._prefix}tpm:{principal}:{_minute()}"
            await self._guard.best_effort("token_count", self._count(key, tokens), self._config())

    async def _count(self, key: str, tokens: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, TOKEN_WINDOW_TTL_S)
            await pipe.execute()

    async def _settle(self, key: str, delta_usd: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(key, delta_usd)
            pipe.expire(key, SPEND_TTL_S)
            await pipe.execute()


class LocalLimiter:
    """The same limits for one process (no Redis configured)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._spend: dict[tuple[str, str], float] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # key -> (minute, tokens)

    async def admit(self, principal: str, rate: Rate | None) -> float:
        """One token from the key's bucket; returns today's spend."""
        spent = self._spend.get((principal, _today()), 0.0)
        if rate is None:
            return spent
        now = time.monotonic() * 1000
        tokens, stamp = self._buckets.get(principal, (float(rate.burst), now))
        tokens = min(rate.burst, tokens + max(0.0, now - stamp) * rate.per_ms)
        if tokens < 1:
            self._buckets[principal] = (tokens, now)
            raise _rate_refusal(principal, rate, math.ceil((1 - tokens) / rate.per_ms) / 1000)
        self._buckets[principal] = (tokens - 1, now)
        return spent

    async def reserve(self, principal: str, amount_usd: float, limit_usd: float | None) -> None:
        """Reserve the expected cost against the daily limit."""
        key = (principal, _today())
        if any(day != key[1] for _, day in self._spend):  # a new day: forget the old ones
            self._spend = {k: v for k, v in self._spend.items() if k[1] == key[1]}
        spent = self._spend.get(key, 0.0)
        if limit_usd is not None and spent + amount_usd > limit_usd:
            raise _budget_refusal(principal, spent, amount_usd, limit_usd)
        self._spend[key] = spent + amount_usd

    async def settle(self, principal: str, delta_usd: float) -> None:
        """Add the difference between actual and reserved cost."""
        key = (principal, _today())
        self._spend[key] = self._spend.get(key, 0.0) + delta_usd

    async def admit_tokens(self, principal: str, per_minute: int) -> None:
        """This minute's tokens for the key, in this process."""
        minute, used = self._tokens.get(principal, (0, 0))
        if minute == _minute() and used >= per_minute:
            raise _tokens_refusal(principal, per_minute, used)

    async def count_tokens(self, principal: str, tokens: int) -> None:
        """Add `tokens` to this minute's count."""
        minute, used = self._tokens.get(principal, (0, 0))
        now = _minute()
        self._tokens[principal] = (now, (used if minute == now else 0) + tokens)
