"""Session-aware routing: a conversation keeps the tier it reached, or moves up, never down.

An agent loop that bounces between models from turn to turn loses the upstream's prompt cache
and its consistency. With `server.sessions.enabled`, each routed request (model `router`, `auto`
or a rule's model) belongs to a conversation:

- the client's own id, from `server.sessions.header` (default `x-session-id`) or `x-router-session`;
- else a hash of the API key's name and the conversation's opening (first system or developer
  message, first user message), which every later turn of the same conversation repeats.

The conversation's *pin* is the most expensive tier (`Policy.tiers_by_cost`) it has been routed to,
with the first turn's difficulty. A turn classified onto a tier that costs no more than the pin
runs on the pin instead (rule `session_pin`); one classified higher moves the pin up. A pin is
forgotten after `idle_s` unused. Pins live in Redis when the proxy has it (one Lua script per turn,
so replicas agree and two concurrent turns cannot move a pin down), else in this process, bounded.

A Redis failure or timeout (`server.redis.timeout_s`) never fails the request: the turn is routed
as classified, and the failure counted (`router_redis_failures_total{operation="session"}`).
Client ids are scoped by API key: one key cannot move another key's conversation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import InvalidRequest
from core.llm import Message
from core.names import SESSION_PIN_RULE
from policies.policy import Decision, Policy
from policies.schema import RedisConfig, SessionsConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from router.redis_guard import RedisGuard
    from router.server.runtime import Runtime

ROUTER_SESSION_HEADER = "x-router-session"  # always accepted, and the response header naming the session
MAX_LOCAL_SESSIONS = 100_000  # pins one process keeps without Redis; the least recently used go first
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# KEYS[1]: the conversation's hash. ARGV: the classified tier, its difficulty, the idle time in ms,
# then the policy's tiers cheapest first. A pin on a tier the policy no longer has is replaced.
_PIN = """
local rank = {}
for i = 4, #ARGV do rank[ARGV[i]] = i end
local held = redis.call('HMGET', KEYS[1], 'tier', 'difficulty')
local first = held[2] or ARGV[2]
if held[1] and rank[held[1]] and rank[ARGV[1]] and rank[held[1]] >= rank[ARGV[1]] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {held[1], first, 1}
end
redis.call('HSET', KEYS[1], 'tier', ARGV[1], 'difficulty', first)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ARGV[1], first, 0}
"""


@dataclass(frozen=True, slots=True)
class Pin:
    """A conversation's tier after this turn, the first turn's difficulty, and whether this turn was held on it."""

    tier: str
    first_difficulty: float
    held: bool


class PinStore(Protocol):
    """Where pins live: `pin` applies one turn's classified tier and returns the pin after it."""

    async def pin(self, key: str, tier: str, difficulty: float, order: Sequence[str], idle_s: int) -> Pin | None:
        """The pin after this turn; None when the store could not answer (the turn is routed as classified)."""
        ...


class MemoryPins:
    """Pins in this process: least recently used first, expired ones dropped as they are met."""

    def __init__(self, max_sessions: int = MAX_LOCAL_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self._pins: OrderedDict[str, tuple[str, float, float]] = OrderedDict()  # key -> tier, first, expiry

    def __len__(self) -> int:
        return len(self._pins)

    async def pin(self, key: str, tier: str, difficulty: float, order: Sequence[str], idle_s: int) -> Pin | None:
        """The pin after this turn (no await inside: atomic on the event loop)."""
        now = time.monotonic()
        held = self._pins.pop(key, None)
        if held is not None and held[2] <= now:
            held = None
        result = _apply(held[:2] if held is not None else None, tier, difficulty, order)
        self._pins[key] = (result.tier, result.first_difficulty, now + idle_s)
        # Every touch moves a pin to the end, so the front is the longest unused: expired, or evicted.
        while self._pins:
            oldest_key, (_, _, expiry) = next(iter(self._pins.items()))
            if expiry > now and len(self._pins) <= self.max_sessions:
                break
            del self._pins[oldest_key]
        return result


def _apply(held: tuple[str, float] | None, tier: str, difficulty: float, order: Sequence[str]) -> Pin:
    """The rule both stores follow (the Redis one in Lua): keep a pin that costs at least as much, else move up."""
    if held is None:
        return Pin(tier, difficulty, False)
    held_tier, first = held
    if held_tier in order and tier in order and order.index(held_tier) >= order.index(tier):
        return Pin(held_tier, first, True)
    return Pin(tier, first, False)


class RedisPins:
    """Pins in Redis, one hash per conversation with the idle time as its TTL; calls bounded by the guard."""

    def __init__(self, redis: Redis, prefix: str, guard: RedisGuard, config: Callable[[], RedisConfig]) -> None:
        self._prefix = prefix
        self._guard = guard
        self._config = config
        self._script: AsyncScript = redis.register_script(_PIN)

    async def pin(self, key: str, tier: str, difficulty: float, order: Sequence[str], idle_s: int) -> Pin | None:
        """The pin after this turn, or None when Redis failed or did not answer within server.redis.timeout_s."""
        work = self._script(keys=[f"{self._prefix}session:{key}"], args=[tier, repr(difficulty), idle_s * 1000, *order])
        answer = await self._guard.best_effort("session", work, self._config())
        if answer is None:
            return None
        held_tier, first, held = answer
        return Pin(str(held_tier), float(first), bool(int(held)))


@dataclass(frozen=True, slots=True)
class SessionRoute:
    """What the session did to one routed turn: its id, the decision served, and what was classified."""

    id: str
    decision: Decision
    first_difficulty: float
    classified_tier: str
    turn_difficulty: float

    @property
    def pinned(self) -> bool:
        """True when the turn was held on the conversation's tier instead of the classified one."""
        return self.decision.rule == SESSION_PIN_RULE

    def ledger_fields(self) -> dict[str, Any]:
        """The ledger entry's `extra` keys: the session, the first turn's difficulty, this turn's classification."""
        fields: dict[str, Any] = {"session": self.id, "first_difficulty": _number(self.first_difficulty)}
        if self.pinned:
            fields["classified_tier"] = self.classified_tier
            fields["turn_difficulty"] = _number(self.turn_difficulty)
        return fields


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def session_id(headers: Mapping[str, str], key_name: str, messages: Sequence[Message], config: SessionsConfig) -> str:
    """The conversation's id: the client's header, else a hash of the key's name and the conversation's opening."""
    for name in (config.header, ROUTER_SESSION_HEADER):
        sent = headers.get(name)
        if sent is not None:
            if not _CLIENT_ID.fullmatch(sent):
                raise InvalidRequest(
                    f"{name}: a session id is 1 to 128 letters, digits, `-`, `_`, `.` or `:`; send such an id "
                    "(the same on every turn of a conversation), or leave the header out.",
                    param=name, code="invalid_session_id",
                )
            return sent
    system = next((m["content"] for m in messages if m["role"] in ("system", "developer")), "")
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    opening = json.dumps([key_name, system, user], ensure_ascii=False)
    return hashlib.sha256(opening.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _store_key(key_name: str, conversation: str) -> str:
    """The store's key: the conversation scoped by the API key, so no key reaches another's pins."""
    return hashlib.sha256(f"{key_name}\0{conversation}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Sessions:
    """Applies `server.sessions` to a runtime's routed decisions: pins in its Redis when it has one."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.memory = MemoryPins()
        self._redis: tuple[Redis, RedisPins] | None = None

    def _store(self) -> PinStore:
        runtime = self._runtime
        redis = runtime.redis  # opened by Runtime.start, before any request
        if redis is None:
            return self.memory
        if self._redis is None or self._redis[0] is not redis:

            def live() -> RedisConfig:  # the live server.redis section (its timeout), as the limiter reads it
                return runtime.store.policy.config.server.redis

            self._redis = (redis, RedisPins(redis, runtime.settings.redis_prefix, runtime.redis_guard, live))
        return self._redis[1]

    async def route(
        self, policy: Policy, decision: Decision, headers: Mapping[str, str], key_name: str, messages: Sequence[Message], query: str
    ) -> SessionRoute | None:
        """The session's verdict on a classified decision; None when `server.sessions` is off."""
        config = policy.config.server.sessions
        if not config.enabled:
            return None
        conversation = session_id(headers, key_name, messages, config)
        pin = await self._store().pin(
            _store_key(key_name, conversation), decision.tier, decision.difficulty, policy.tiers_by_cost, config.idle_s
        )
        if pin is None:  # the store failed: routed as classified
            return SessionRoute(conversation, decision, decision.difficulty, decision.tier, decision.difficulty)
        if not pin.held:
            return SessionRoute(conversation, decision, pin.first_difficulty, decision.tier, decision.difficulty)
        first = "none" if math.isnan(pin.first_difficulty) else f"{pin.first_difficulty:.3f}"
        reason = (
            f"session {conversation}: held on tier '{pin.tier}', which the conversation reached earlier "
            f"(first turn's difficulty {first}); this turn alone: difficulty {decision.difficulty:.3f}, "
            f"tier '{decision.tier}' by rule '{decision.rule}'"
        )
        served = policy.pinned(pin.tier, query, pin.first_difficulty, reason)
        return SessionRoute(conversation, served, pin.first_difficulty, decision.tier, decision.difficulty)
