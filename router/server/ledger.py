"""The proxy's side of the ledger: the interface it writes through.

`router.ledger`'s ledgers (Redis, or in memory when no Redis is configured) satisfy `LedgerSink`;
the proxy calls their optional `start`, `stats` and `aclose` when they have them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from router.ledger.entry import LedgerEntry



@runtime_checkable
class LedgerSink(Protocol):
    """Where the proxy records each request and its later feedback."""

    async def record(self, entry: LedgerEntry) -> None:
        """Keep one request's record; must not raise for storage trouble."""
        ...

    async def feedback(self, request_id: str, score: float) -> bool:
        """Grade a request with a score in [0, 1]; False when the id is unknown."""
        ...
