"""The cost-per-correct-answer ledger: every routed request, what it cost, and whether it was right.

    from router.ledger import LedgerConfig, LedgerEntry, open_ledger

    ledger = open_ledger(LedgerConfig(redis_url="redis://127.0.0.1:6379/0"))
    await ledger.start()                       # logs where records go
    await ledger.record(entry)                 # never raises for Redis trouble
    await ledger.feedback(request_id, 1.0)     # False for an unknown request id
    ledger.stats()                             # counters for /metrics
    await ledger.aclose()

Reports and exports read through `open_sync_ledger(config)`. See docs/ledger.md.
"""

from router.ledger.base import Ledger, LedgerReader, open_ledger, open_sync_ledger
from router.ledger.config import LedgerConfig
from router.ledger.counts import STAT_NAMES, Counts
from router.ledger.entry import FORCED_RULE, NO_APP, LedgerEntry, StoredRecord
from router.ledger.memory import MemoryLedger
from router.ledger.redis_ledger import RedisLedger
from router.ledger.sync_ledger import SyncRedisLedger

__all__ = [
    "FORCED_RULE",
    "NO_APP",
    "STAT_NAMES",
    "Counts",
    "Ledger",
    "LedgerConfig",
    "LedgerEntry",
    "LedgerReader",
    "MemoryLedger",
    "RedisLedger",
    "StoredRecord",
    "SyncRedisLedger",
    "open_ledger",
    "open_sync_ledger",
]
