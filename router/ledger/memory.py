"""The embedded ledger: the Redis ledger's semantics in this process's memory, when no Redis is configured.

It runs the same calls as the Lua scripts (scripts.py), in Python, so reports read the same
numbers from it. Nothing persists: a restart starts from zero, each worker process has its own,
and `router report` (another process) cannot see it. Bounded like Redis: at most
`stream_maxlen` records (feedback for an evicted record is refused), and daily aggregates expire.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

from router.ledger.config import LedgerConfig
from router.ledger.counts import MICRO, STAT_NAMES, Counts
from router.ledger.entry import LedgerEntry, StoredRecord, entry_from_dict
from router.ledger.entry import AppCap
from router.ledger.keys import Dimension, LedgerKeys
from router.ledger.scripts import Call, feedback_call, record_call, try_record_call

logger = logging.getLogger(__name__)


class _Request(NamedTuple):
    """What feedback needs of one recorded request.

    Kept flat (`stored`): one plain tuple of strings and numbers, which the garbage collector stops
    tracking at its first look, so the up to `stream_maxlen` requests kept are never walked by a
    collection. As objects with a list each, 20,000 requests left 40,000 objects for every full
    collection to walk (10 ms on 2 cores; 0.6 ms flat), and the proxy's gen-2 pauses averaged 28 ms
    in a 30,000-request bench (bench/proxy/run.py). Flat, since the collector untracks a tuple only
    when what it holds is untracked already, one level of nesting per collection.
    """

    aggs: tuple[str, ...]
    cost_nusd: int
    expires_at: float
    key_tag: str = ""  # the key that made the request: feedback with an owner must come from it
    score_e6: int | None = None  # the strongest source's latest verdict: what the aggregates count
    rank: int = 0  # that source's rank (0 strongest)
    verdicts: tuple[tuple[str, int], ...] = ()  # every source's latest verdict, in millionths, oldest first

    def stored(self) -> _Stored:
        """The flat tuple kept: the fields, the aggregates' count, the aggregates, then source, verdict, ..."""
        flat_verdicts = [part for pair in self.verdicts for part in pair]
        return (self.cost_nusd, self.expires_at, self.key_tag, self.score_e6, self.rank, len(self.aggs),
                *self.aggs, *flat_verdicts)

    @classmethod
    def from_stored(cls, stored: _Stored) -> _Request:
        """The request kept as `stored`."""
        cost_nusd, expires_at, key_tag, score_e6, rank, count = stored[:6]
        aggs = stored[6 : 6 + int(cast(int, count))]
        rest = stored[6 + len(aggs) :]
        return cls(
            tuple(cast(str, key) for key in aggs), cast(int, cost_nusd), cast(float, expires_at), cast(str, key_tag),
            cast("int | None", score_e6), cast(int, rank),
            tuple((cast(str, source), cast(int, verdict)) for source, verdict in zip(rest[::2], rest[1::2], strict=True)),
        )


_Stored = tuple[str | int | float | None, ...]


class MemoryLedger:
    """In-process ledger with the Redis ledger's interface (async writes, sync reads)."""

    def __init__(self, config: LedgerConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or LedgerConfig()
        self._keys = LedgerKeys(self.config.key_prefix)
        self._apps = AppCap(self.config.max_apps)
        self._clock = clock
        self._records: deque[tuple[str, str]] = deque()  # (request id, record JSON), oldest first
        self._requests: dict[str, _Stored] = {}  # by request id; _Request.from_stored reads one
        self._aggregates: dict[str, Counts] = {}
        self._expiry: dict[str, float] = {}  # daily aggregate key -> unix time it expires
        self._dims: dict[str, set[str]] = {"tier": set(), "policy": set(), "app": set()}
        self._trimmed_until: float | None = None
        self._next_purge = 0.0
        self._counters = dict.fromkeys(STAT_NAMES, 0)

    async def start(self) -> None:
        """Say plainly in the log that nothing will persist."""
        logger.warning(
            "ledger: no Redis configured (REDIS_URL), so the embedded in-process ledger is used: "
            "nothing will persist across restarts, each worker keeps its own, and `router report` cannot "
            "read it. Set REDIS_URL (the proxy) or --redis-url (the CLI) to keep records."
        )

    async def record(self, entry: LedgerEntry) -> None:
        """Record one request (same effect as the Redis record script); never raises."""
        self.record_nowait(entry)

    def record_nowait(self, entry: LedgerEntry) -> None:
        """Record one request; in memory there is nothing to wait for. Never raises."""
        call = try_record_call(entry, self._keys, self.config, self._apps)
        if call is None:
            self._counters["invalid"] += 1
        else:
            self._apply_record(entry.request_id, call)

    async def feedback(
        self, request_id: str, score: float, *, owner: str | None = None, source: str = "feedback"
    ) -> bool:
        """Set a request's verdict of `source`; False when the request is unknown or evicted."""
        return self.feedback_sync(request_id, score, owner=owner, source=source)

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Nothing is ever queued in memory."""
        return True

    def stats(self) -> dict[str, int]:
        """Counters in the same shape as the Redis ledger's (nothing is ever buffered; redis_up is 0)."""
        return {**self._counters, "buffered": 0, "redis_up": 0}

    async def aclose(self) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to release (reader interface)."""

    def record_sync(self, entry: LedgerEntry) -> bool:
        """Record one request; False when its id was already recorded (raises for a malformed entry)."""
        return self._apply_record(entry.request_id, record_call(entry, self._keys, self.config, self._apps))

    def _apply_record(self, request_id: str, call: Call) -> bool:
        now = self._clock()
        if request_id in self._requests:
            self._counters["duplicates"] += 1
            return False
        record_json, maxlen, ttl_s, expire_at, n_all, n_day = call.args[:6]
        increments = call.args[12:]
        aggs = call.keys[5 : 5 + int(n_all) + int(n_day)]
        for index, key in enumerate(aggs):
            if index >= int(n_all):
                if float(expire_at) <= now:
                    continue  # Redis would delete a key whose EXPIREAT is past
                self._expiry[key] = float(expire_at)
            counts = self._aggregates.setdefault(key, Counts())
            for name, amount in zip(increments[::2], increments[1::2], strict=True):
                setattr(counts, str(name), getattr(counts, str(name)) + int(amount))
        self._requests[request_id] = _Request(
            tuple(str(key) for key in aggs), int(call.args[9]), now + float(ttl_s), str(call.args[11])
        ).stored()
        self._records.append((request_id, str(record_json)))
        for dimension, value in zip(("tier", "policy", "app"), call.args[6:9], strict=True):
            self._dims[dimension].add(str(value))
        while len(self._records) > int(maxlen):
            old_id, _ = self._records.popleft()
            self._requests.pop(old_id, None)
            self._trimmed_until = float(json.loads(self._records[0][1])["timestamp"])
        self._purge(now)
        self._counters["recorded"] += 1
        return True

    def feedback_sync(
        self, request_id: str, score: float, *, owner: str | None = None, source: str = "feedback"
    ) -> bool:
        """Apply the feedback call: first verdict counts graded; a later one of no stronger source replaces it.

        With `owner`, a request another key made is refused as unknown, as the Redis script does. A
        verdict of a weaker source than the request's current one is kept beside it (in `records()`'
        verdicts) and leaves the aggregates alone, as in Redis.
        """
        call = feedback_call(request_id, score, self._keys, self.config, source)
        new, rank = int(call.args[0]), int(call.args[5])
        stored = self._requests.get(request_id)
        request = None if stored is None else _Request.from_stored(stored)
        if (
            request is None
            or request.expires_at <= self._clock()
            or (owner is not None and request.key_tag != owner)
        ):
            self._counters["feedback_unknown"] += 1
            return False
        request = request._replace(verdicts=tuple({**dict(request.verdicts), source: new}.items()))
        self._requests[request_id] = request.stored()
        if request.score_e6 is not None and request.rank < rank:
            self._counters["feedback"] += 1
            return True
        for key in request.aggs:
            counts = self._aggregates.get(key)
            if counts is None:
                continue  # expired daily aggregate: never recreated
            if request.score_e6 is None:
                counts.graded += 1
                counts.graded_cost_nusd += request.cost_nusd
                counts.correct_e6 += new
            else:
                counts.correct_e6 += new - request.score_e6
        self._requests[request_id] = request._replace(score_e6=new, rank=rank).stored()
        self._counters["feedback"] += 1
        return True

    def records(self, since: float | None = None, until: float | None = None) -> list[StoredRecord]:
        """Records with since <= timestamp < until, oldest first, with their verdicts."""
        out = []
        for request_id, record_json in self._records:
            entry = entry_from_dict(json.loads(record_json))
            if (since is not None and entry.timestamp < since) or (until is not None and entry.timestamp >= until):
                continue
            stored = self._requests.get(request_id)
            request = None if stored is None else _Request.from_stored(stored)
            score = None if request is None or request.score_e6 is None else request.score_e6 / MICRO
            verdicts = {} if request is None else {src: units / MICRO for src, units in request.verdicts}
            out.append(StoredRecord(entry, score, verdicts))
        return out

    def aggregates(self, dimension: Dimension | None, days: Sequence[str] | None = None) -> dict[str, Counts]:
        """Aggregates per value of a dimension (or the total, key ""), all-time or summed over UTC days."""
        self._next_purge = 0.0
        self._purge(self._clock())
        values = [""] if dimension is None else sorted(self._dims[dimension])
        out: dict[str, Counts] = {}
        for value in values:
            if days is None:
                keys = [self._keys.total(dimension, value)]
            else:
                keys = [self._keys.daily(day, dimension, value) for day in days]
            total = Counts()
            for key in keys:
                if key in self._aggregates:
                    total.add(self._aggregates[key])
            if total.requests:
                out[value] = total
        return out

    def trimmed_until(self) -> float | None:
        """Timestamp of the oldest record kept, when stream_maxlen has evicted older ones; else None."""
        return self._trimmed_until

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + 60.0  # expiry is by the day: a scan a minute is plenty
        expired = [key for key, at in self._expiry.items() if at <= now]
        for key in expired:
            del self._expiry[key]
            self._aggregates.pop(key, None)
