"""The ledger seams: what the proxy writes through, what reports read from, and the factory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from router.ledger.config import LedgerConfig
from router.ledger.counts import Counts
from router.ledger.entry import LedgerEntry, StoredRecord
from router.ledger.keys import Dimension
from router.ledger.sync_ledger import SyncRedisLedger


@runtime_checkable
class Ledger(Protocol):
    """Async writer used by the proxy: record every request, apply feedback; never fails a request."""

    config: LedgerConfig

    async def start(self) -> None:
        """Log where records go (and whether they persist); never raises."""

    async def record(self, entry: LedgerEntry) -> None:
        """Write one request's record and aggregates; Redis trouble is buffered, never raised."""

    def record_nowait(self, entry: LedgerEntry) -> None:
        """Queue a record for the background writer; call from inside the event loop."""

    async def feedback(
        self, request_id: str, score: float, *, owner: str | None = None, source: str = "feedback"
    ) -> bool:
        """Set a verdict in [0, 1] of `source` (VERDICT_SOURCES: `feedback` from the app, `reference`
        from `router eval`...), replacing an earlier one of no stronger source; False for an unknown
        request id, or one that another key than `owner` made (None: any key's)."""

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait (at most timeout_s) until queued writes are stored; True when none is left."""

    def stats(self) -> dict[str, int]:
        """Counters for /metrics (dropped, buffered, redis_up, ...)."""

    async def aclose(self) -> None:
        """Flush briefly and release connections."""


@runtime_checkable
class LedgerReader(Protocol):
    """Synchronous read side used by `router report` and `router ledger export`."""

    config: LedgerConfig

    def records(self, since: float | None = None, until: float | None = None) -> list[StoredRecord]:
        """Records with since <= timestamp < until, oldest first, with verdicts."""

    def aggregates(self, dimension: Dimension | None, days: Sequence[str] | None = None) -> dict[str, Counts]:
        """Aggregates per value of a dimension (or the total under key ""), all-time or over UTC days."""

    def trimmed_until(self) -> float | None:
        """When the stream cap has removed records: the time before which records are gone; else None."""

    def close(self) -> None:
        """Release connections."""


def open_ledger(config: LedgerConfig | None = None) -> Ledger:
    """The proxy's ledger: Redis when `redis_url` is set, else the embedded in-process store.

    Builds no connection; call `await ledger.start()` at start-up to log where records go.
    """
    config = config or LedgerConfig()
    if config.redis_url is None:
        from router.ledger.memory import MemoryLedger

        return MemoryLedger(config)
    from router.ledger.redis_ledger import RedisLedger

    return RedisLedger(config)


def open_sync_ledger(config: LedgerConfig) -> SyncRedisLedger:
    """A blocking reader and writer of the Redis ledger, for the CLI and `router eval`.

    Raises ConfigError when no redis_url is set: the embedded store cannot be reached from outside.
    """
    return SyncRedisLedger(config)
