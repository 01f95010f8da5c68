"""Training data from the ledger's own traffic, for `router classifier train --from-ledger` and
`router policy calibrate --from-ledger`.

Reuses `router ledger export` (router.ledger.export.outcome_rows): records are grouped by prompt,
and a row is made for each prompt with a graded answer at every exported tier, which live traffic
gives for explored requests (docs/live.md). `sources` picks which verdicts count (the strongest
allowed one per record); the summary counts, per source, the verdicts the rows were built from.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, DataError
from router.ledger.config import DEFAULT_PREFIX, LedgerConfig
from router.ledger.entry import VERDICT_SOURCES, StoredRecord, source_rank
from router.ledger.export import outcome_rows, write_jsonl
from router.ledger.sync_ledger import SyncRedisLedger


@dataclass
class LedgerTrainingData:
    """What was exported for training, and where each verdict came from."""

    path: Path
    rows: int
    tiers: list[str]
    sources: Counter[str] = field(default_factory=Counter)  # verdict source -> verdicts used in the rows
    summary: list[str] = field(default_factory=list)

    def metadata(self, since: str) -> dict[str, Any]:
        """What the classifier artifact records about its ledger training data."""
        return {"rows": self.rows, "tiers": self.tiers, "rows_by_verdict_source": dict(self.sources), "since": since}


def check_sources(sources: Sequence[str] | None) -> list[str]:
    """The verdict sources to use (all when none given); ConfigError naming the choices otherwise."""
    if not sources:
        return list(VERDICT_SOURCES)
    unknown = [s for s in sources if s not in VERDICT_SOURCES]
    if unknown:
        raise ConfigError(f"--source: unknown {', '.join(unknown)}; choose from {', '.join(VERDICT_SOURCES)}.")
    return list(sources)


def restrict(records: Sequence[StoredRecord], sources: Sequence[str]) -> tuple[list[StoredRecord], dict[str, str]]:
    """Each record with its strongest verdict among `sources` as its score (ungraded when it has none),
    and the source that verdict came from, by request id."""
    out: list[StoredRecord] = []
    used: dict[str, str] = {}
    for record in records:
        allowed = {s: v for s, v in record.verdicts.items() if s in sources}
        if not allowed:
            out.append(StoredRecord(record.entry))
            continue
        best = min(allowed, key=source_rank)
        used[record.entry.request_id] = best
        out.append(StoredRecord(record.entry, allowed[best], allowed))
    return out, used


def export_for_training(
    redis_url: str | None, out: Path, *, prefix: str | None = None, since: float | None = None,
    sources: Sequence[str] | None = None, tiers: Sequence[str] | None = None, min_per_tier: int = 1,
) -> LedgerTrainingData:
    """Write routing-outcome JSONL from the ledger to `out`; DataError when fewer than min_per_tier rows qualify."""
    if redis_url is None:
        raise ConfigError("--from-ledger needs the ledger's Redis: pass --redis-url redis://HOST:6379/0 or set REDIS_URL.")
    ledger = SyncRedisLedger(LedgerConfig(redis_url=redis_url, key_prefix=prefix or DEFAULT_PREFIX))
    try:
        records = ledger.records(since)
    finally:
        ledger.close()
    restricted, used = restrict(records, check_sources(sources))
    rows, summary = outcome_rows(restricted, list(tiers) if tiers else None)
    counted: Counter[str] = Counter()
    for row in rows:
        for request_id in row["metadata"]["request_ids"]:
            if request_id in used:
                counted[used[request_id]] += 1
    if len(rows) < min_per_tier:
        raise DataError(
            f"The ledger has {len(rows)} prompts graded at every tier ({', '.join(summary.tiers) or 'none'}), fewer "
            f"than --min-per-tier {min_per_tier}: " + "; ".join(summary.lines()) + ". Raise exploration.sample in "
            "router.yaml (and run `router worker`), widen --since or --source, or lower --min-per-tier."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        write_jsonl(rows, handle)
    return LedgerTrainingData(out, len(rows), summary.tiers, counted, summary.lines())


def parse_since_option(since: str) -> float | None:
    """--since as the report reads it (a duration, an ISO date or time, or `all`)."""
    from router.ledger.report import parse_since

    return parse_since(since, time.time())
