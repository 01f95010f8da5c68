"""Synchronous access to the Redis ledger, for the CLI (`router report`, `router ledger export`) and `router eval`.

Reads the stream back (records, and the verdicts appended after them) and the aggregates; writes through the
same Lua scripts as the proxy. Unlike the proxy's writer it raises when Redis is unreachable: a
command line should say so, not buffer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import redis
from redis.exceptions import RedisError

from core.errors import ConfigError
from router.ledger.config import PREFIX_SETTING, LedgerConfig
from router.ledger.counts import MICRO, Counts
from router.ledger.entry import VERDICT_SOURCES, LedgerEntry, StoredRecord, entry_from_dict, source_rank
from router.ledger.entry import AppCap
from router.ledger.keys import Dimension, LedgerKeys
from router.ledger.scripts import FEEDBACK_LUA, RECORD_LUA, feedback_call, record_call
from router.redis_client import sync_redis

PAGE = 1000
# Records reach the stream up to this long after their timestamp (a proxy flushing its outage
# buffer), so a time window is read from this much earlier in stream-id time, then filtered.
LATE_ARRIVAL_S = 86_400
NO_REDIS = (
    "No ledger Redis to read: pass --redis-url redis://HOST:6379/0 (or set REDIS_URL). "
    "The embedded ledger lives inside `router serve` and no other process can read it."
)


class SyncRedisLedger:
    """Blocking client of the Redis ledger: read records and aggregates, record, grade."""

    def __init__(self, config: LedgerConfig, client: redis.Redis | None = None) -> None:
        config.require_redis(client, NO_REDIS)
        self.config = config
        self._keys = LedgerKeys(config.key_prefix)
        self._apps = AppCap(config.max_apps)
        self._client = client or sync_redis(
            config.redis_url or "",
            prefix=config.key_prefix,
            prefix_setting=PREFIX_SETTING,
            socket_timeout=10,
            socket_connect_timeout=config.timeout_s * 4,
        )
        self._record_script = self._client.register_script(RECORD_LUA)
        self._feedback_script = self._client.register_script(FEEDBACK_LUA)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except RedisError as error:
            raise ConfigError(
                f"The ledger's Redis at {self.config.display_url} did not answer ({error}). Start Redis, or pass "
                "the right --redis-url."
            ) from error

    def record(self, entry: LedgerEntry) -> bool:
        """Write one record with its aggregates; False when its request id was already recorded."""
        call = record_call(entry, self._keys, self.config, self._apps)
        with self._reachable():
            return bool(self._record_script(keys=call.keys, args=call.args))

    def feedback(self, request_id: str, score: float, source: str = "feedback") -> bool:
        """Set a request's verdict of `source` in [0, 1] (replacing one of no stronger source); False for an unknown request."""
        call = feedback_call(request_id, score, self._keys, self.config, source)
        with self._reachable():
            return bool(self._feedback_script(keys=call.keys, args=call.args))

    def records(self, since: float | None = None, until: float | None = None) -> list[StoredRecord]:
        """Records with since <= timestamp < until, in stream order, each with its latest verdict."""
        start = "-" if since is None else str(max(0, int((since - LATE_ARRIVAL_S) * 1000)))
        entries: list[LedgerEntry] = []
        verdicts: dict[str, dict[str, int]] = {}  # request id -> source -> latest score in millionths
        with self._reachable():
            while True:
                # decode_responses=True: ids and fields are str, which redis-py's types do not know.
                page = cast(list[tuple[str, dict[str, str]]], self._client.xrange(self._keys.stream, start, "+", count=PAGE))
                for _, fields in page:
                    if "v" in fields:  # a verdict; its record came earlier in the stream
                        # Verdicts written before sources existed carry none: they were app feedback or eval references.
                        verdicts.setdefault(fields["v"], {})[fields.get("src", "feedback")] = int(fields["s"])
                        continue
                    entry = entry_from_dict(json.loads(fields["r"]))
                    if (since is None or entry.timestamp >= since) and (until is None or entry.timestamp < until):
                        entries.append(entry)
                if len(page) < PAGE:
                    break
                start = "(" + page[-1][0]
        return [_with_verdicts(e, verdicts.get(e.request_id)) for e in entries]

    def aggregates(self, dimension: Dimension | None, days: Sequence[str] | None = None) -> dict[str, Counts]:
        """Aggregates per value of a dimension (or the total, key ""), all-time or summed over UTC days."""
        with self._reachable():
            members = cast(set[str], set() if dimension is None else self._client.smembers(self._keys.dims(dimension)))
            values = [""] if dimension is None else sorted(members)
            plan: list[tuple[str, str]] = []
            for value in values:
                if days is None:
                    plan.append((value, self._keys.total(dimension, value)))
                else:
                    plan.extend((value, self._keys.daily(day, dimension, value)) for day in days)
            pipe = self._client.pipeline(transaction=False)
            for _, key in plan:
                pipe.hgetall(key)
            hashes = pipe.execute()
        out: dict[str, Counts] = {}
        for (value, _), data in zip(plan, hashes, strict=True):
            if data:
                out.setdefault(value, Counts()).add(Counts.from_hash(data))
        return out

    def trimmed_until(self) -> float | None:
        """Stream-id time of the oldest record kept, when the stream cap has removed older ones; else None."""
        with self._reachable():
            if not self._client.exists(self._keys.stream):
                return None
            info = self._client.xinfo_stream(self._keys.stream)
        if int(info.get("entries-added") or 0) <= int(info["length"]) or not info.get("first-entry"):
            return None
        return int(str(info["first-entry"][0]).split("-", 1)[0]) / 1000

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _with_verdicts(entry: LedgerEntry, by_source: dict[str, int] | None) -> StoredRecord:
    """The record with every source's latest verdict, and the strongest source's as its score."""
    if not by_source:
        return StoredRecord(entry)
    scores = {source: units / MICRO for source, units in by_source.items()}
    strongest = min(scores, key=lambda source: source_rank(source) if source in VERDICT_SOURCES else len(VERDICT_SOURCES))
    return StoredRecord(entry, scores[strongest], scores)
