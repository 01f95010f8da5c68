"""The proxy's side of the ledger: what it writes through, and the default when none is configured.

`router.ledger`'s ledgers satisfy `LedgerSink`; the proxy calls their optional `start` and
`aclose` when they have them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from router.ledger.entry import LedgerEntry

logger = logging.getLogger(__name__)


@runtime_checkable
class LedgerSink(Protocol):
    """Where the proxy records each request and its later feedback."""

    async def record(self, entry: LedgerEntry) -> None:
        """Keep one request's record; must not raise for storage trouble."""
        ...

    async def feedback(self, request_id: str, score: float) -> bool:
        """Grade a request with a score in [0, 1]; False when the id is unknown."""
        ...


class RecentLedger:
    """Keeps the last `capacity` records in memory, so feedback works; nothing persists."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[str, LedgerEntry] = OrderedDict()
        self.scores: dict[str, float] = {}

    async def start(self) -> None:
        """Say plainly that nothing persists."""
        logger.info("ledger: none configured; the last %d requests are kept in memory only.", self.capacity)

    async def record(self, entry: LedgerEntry) -> None:
        """Keep the entry, forgetting the oldest beyond capacity."""
        self.entries[entry.request_id] = entry
        while len(self.entries) > self.capacity:
            old, _ = self.entries.popitem(last=False)
            self.scores.pop(old, None)

    async def feedback(self, request_id: str, score: float) -> bool:
        """Grade a kept request; a second verdict replaces the first."""
        if request_id not in self.entries:
            return False
        self.scores[request_id] = score
        return True
