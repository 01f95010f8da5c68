"""Ledger records out as routing-outcome JSONL (docs/data-format.md), ready for `router classifier train`.

A routing-outcome row needs, for every tier of the file, a verdict on the same prompt, and every
row must list the same tiers in the same order (cheapest first). Live traffic gives one tier per
request, so records are grouped by (source, prompt): each tier's outcome comes from the graded
records of that prompt at that tier (the mean verdict when it was graded more than once; the
latest record's model, tokens, cost and latency). A prompt with no graded record for some tier of
the export is left out and counted. Export one tier (`tiers=["fast"]`) to train difficulty from
the cheapest tier's verdicts alone, or fill the other tiers by running `router eval --force-tier`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from core.errors import ConfigError
from router.ledger.counts import NANO, to_units
from router.ledger.entry import StoredRecord

DEFAULT_SOURCE = "proxy"


@dataclass
class ExportSummary:
    """What an export wrote and what it left out, and why."""

    format: str
    records: int  # read from the ledger
    rows: int = 0  # written
    tiers: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        tiers = f" with tiers {', '.join(self.tiers)} (cheapest first)" if self.tiers else ""
        out = [f"exported {self.rows} rows{tiers} from {self.records} ledger records ({self.format})"]
        reasons = {
            "ungraded": "records were not graded (an outcome needs a verdict: send feedback or run `router eval`)",
            "no_prompt": "graded records have no stored prompt (set ledger.store_prompts: true to keep prompts)",
            "other_tier": "graded records are of tiers not exported (see --tiers)",
            "missing_tier": "prompts lack a graded record for some exported tier (run `router eval --force-tier "
            "TIER` on them, or export fewer tiers with --tiers)",
        }
        for reason, count in self.skipped.items():
            out.append(f"skipped {count} {reasons.get(reason, reason)}")
        return out


def _model(models: Sequence[str]) -> str | None:
    unique = list(dict.fromkeys(models))
    return "+".join(unique) if unique else None


def tier_order(records: Iterable[StoredRecord]) -> list[str]:
    """Tiers seen, cheapest first by mean cost per request (ties by name)."""
    cost: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        total = cost[record.entry.tier]
        total[0] += to_units(record.entry.cost_usd, NANO)
        total[1] += 1
    return sorted(cost, key=lambda tier: (cost[tier][0] / cost[tier][1], tier))


def outcome_rows(
    records: Sequence[StoredRecord], tiers: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], ExportSummary]:
    """Routing-outcome rows, one per (source, prompt) with a graded outcome for every exported tier."""
    summary = ExportSummary("jsonl", len(records))
    usable = []
    for record in records:
        if record.score is None:
            summary.skipped["ungraded"] += 1
        elif not record.entry.prompt:
            summary.skipped["no_prompt"] += 1
        else:
            usable.append(record)
    if tiers is not None:
        if not tiers or len(set(tiers)) != len(tiers) or any(not t.strip() for t in tiers):
            raise ConfigError(f"--tiers: give distinct tier names, cheapest first, e.g. fast,deep (got {list(tiers)!r}).")
        order = list(tiers)
    else:
        order = tier_order(usable)
    summary.tiers = order
    wanted = set(order)
    groups: dict[tuple[str, str], dict[str, list[StoredRecord]]] = {}
    for record in usable:
        if record.entry.tier not in wanted:
            summary.skipped["other_tier"] += 1
            continue
        source = record.entry.source or record.entry.app or DEFAULT_SOURCE
        groups.setdefault((source, str(record.entry.prompt)), defaultdict(list))[record.entry.tier].append(record)
    rows = []
    for (source, prompt), by_tier in groups.items():
        if any(tier not in by_tier for tier in order):
            summary.skipped["missing_tier"] += 1
            continue
        outcomes: dict[str, dict[str, Any]] = {}
        for tier in order:
            graded = by_tier[tier]
            latest = max(graded, key=lambda r: r.entry.timestamp).entry
            outcomes[tier] = {
                "correct": round(sum(r.score or 0.0 for r in graded) / len(graded), 6),
                "model": _model(latest.models),
                "input_tokens": latest.input_tokens,
                "output_tokens": latest.output_tokens,
                "cost_usd": latest.cost_usd,
                "latency_s": latest.latency_s,
            }
        members = sorted((r for group in by_tier.values() for r in group), key=lambda r: r.entry.timestamp)
        rows.append({
            "id": members[0].entry.request_id,
            "source": source,
            "prompt": prompt,
            "outcomes": outcomes,
            "metadata": {"request_ids": [r.entry.request_id for r in members]},
        })
    summary.rows = len(rows)
    return rows, summary


def record_rows(records: Sequence[StoredRecord], graded_only: bool) -> tuple[list[dict[str, Any]], ExportSummary]:
    """The raw ledger records (every field, plus `score`: the verdict or null)."""
    summary = ExportSummary("records", len(records))
    rows = []
    for record in records:
        if graded_only and record.score is None:
            summary.skipped["ungraded"] += 1
            continue
        rows.append({**record.entry.as_dict(), "score": record.score})
    summary.rows = len(rows)
    return rows, summary


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    """One compact JSON object per line."""
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
