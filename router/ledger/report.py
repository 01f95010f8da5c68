"""Cost per correct answer by tier, policy version, app or day, from the ledger's records or aggregates.

Definitions (docs/ledger.md):
- accuracy = correct / graded, where correct is the sum of verdicts of graded requests;
- cost per correct answer = cost of the graded requests / correct among them: what it costs to
  get one right answer, measured on the traffic that was graded (None when none was correct).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from core.errors import ConfigError
from core.metrics import CALIBRATION_BINS, calibration_bins, calibration_error
from router.ledger.base import LedgerReader
from router.ledger.counts import Counts
from router.ledger.entry import FORCED_RULE, NO_APP, VERDICT_SOURCES, StoredRecord, source_rank
from router.ledger.keys import utc_day

By = Literal["tier", "policy", "app", "key", "rule", "day"]
BY_CHOICES: tuple[By, ...] = ("tier", "policy", "app", "key", "rule", "day")
Source = Literal["records", "aggregates"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_since(text: str, now: float) -> float | None:
    """`90m`, `24h`, `7d`, `2w`, an ISO date or time (UTC unless it says), or `all` (None) -> unix time."""
    if text.strip().lower() == "all":
        return None
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        if seconds <= 0:
            raise ConfigError(f"--since: the duration must be more than zero (got {text!r}); e.g. 24h.")
        return now - seconds
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since: expected a duration such as 90m, 24h, 7d or 2w, an ISO date such as 2025-01-31 "
            f"(UTC), or 'all'; got {text!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() > now:
        raise ConfigError(f"--since: {text!r} is in the future; give a past time or a duration such as 24h.")
    return moment.timestamp()


def iso(timestamp: float | None) -> str | None:
    """A unix time as an ISO 8601 UTC string (seconds), or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def record_counts(record: StoredRecord) -> Counts:
    """One record as counters, with the same integer rounding as the Lua scripts."""
    e = record.entry
    return Counts.one(e.cost_usd, e.input_tokens, e.output_tokens, e.latency_s, ok=e.status == "ok", score=record.score)


_KEY_OF: dict[str, Callable[[StoredRecord], str]] = {
    "tier": lambda r: r.entry.tier,
    "policy": lambda r: r.entry.policy_version,
    "app": lambda r: r.entry.app or NO_APP,
    "key": lambda r: r.entry.key_tag or "anonymous",
    "rule": lambda r: r.entry.rule,
    "day": lambda r: utc_day(r.entry.timestamp),
}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class ReportRow:
    """One line of the report: a tier, policy version, app or day, and its figures."""

    key: str
    counts: Counts
    share: float  # of the window's requests

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures; `cost_per_correct` is None when no graded answer was correct."""
        c = self.counts
        return {
            "key": self.key,
            "requests": c.requests,
            "share": round(self.share, 6),
            "cost_usd": round(c.cost_usd, 9),
            "cost_per_request": _round(c.cost_per_request, 9),
            "graded": c.graded,
            "correct": round(c.correct, 6),
            "accuracy": _round(c.accuracy, 6),
            "graded_cost_usd": round(c.graded_cost_usd, 9),
            "cost_per_correct": _round(c.cost_per_correct, 9),
            "errors": c.errors,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "mean_latency_s": _round(c.mean_latency_s, 6),
        }


@dataclass(frozen=True)
class Point:
    """Accuracy against cost per query for one group: a tier, the policy, or always-<tier>."""

    label: str
    kind: Literal["tier", "policy", "always"]
    counts: Counts

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready point."""
        return {"label": self.label, "kind": self.kind, "requests": self.counts.requests, "graded": self.counts.graded,
                "cost_per_request": _round(self.counts.cost_per_request, 9), "accuracy": _round(self.counts.accuracy, 6)}


@dataclass(frozen=True)
class Reliability:
    """Predicted difficulty against the realised failure rate of one tier, in equal-width bins."""

    tier: str
    n: int
    ece: float  # sum over bins of (n_bin / n) * |mean predicted - observed failure rate|
    bins: list[dict[str, float | int]]  # lo, hi, n, predicted, observed

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready diagram data."""
        return {"tier": self.tier, "n": self.n, "ece": round(self.ece, 6), "bins": self.bins}


@dataclass
class Report:
    """The whole report: rows, the total, accuracy/cost points and reliability, and notes."""

    by: By
    source: Source
    since: float | None
    until: float
    rows: list[ReportRow]
    total: ReportRow
    points: list[Point] = field(default_factory=list)
    reliability: dict[str, Reliability] = field(default_factory=dict)
    reliability_tier: str | None = None  # the cheapest tier: the one difficulty predicts
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report (what `router report --json` prints)."""
        return {
            "by": self.by,
            "source": self.source,
            "since": iso(self.since),
            "until": iso(self.until),
            "rows": [row.as_dict() for row in self.rows],
            "total": self.total.as_dict(),
            "points": [point.as_dict() for point in self.points],
            "reliability": {
                "predicts_tier": self.reliability_tier,
                "tiers": {tier: r.as_dict() for tier, r in self.reliability.items()},
            },
            "notes": self.notes,
        }


def _rows(groups: dict[str, Counts], by: By) -> tuple[list[ReportRow], ReportRow]:
    total = Counts()
    for counts in groups.values():
        total.add(counts)
    n = total.requests or 1
    rows = [ReportRow(key, counts, counts.requests / n) for key, counts in groups.items()]
    if by == "day":
        rows.sort(key=lambda row: row.key)
    elif by == "tier":  # cheapest first, as tiers are listed everywhere else
        rows.sort(key=lambda row: (row.counts.cost_per_request or 0.0, row.key))
    else:
        rows.sort(key=lambda row: (-row.counts.requests, row.key))
    return rows, ReportRow("total", total, 1.0 if total.requests else 0.0)


def reliability(records: Sequence[StoredRecord], tier: str, bins: int = CALIBRATION_BINS) -> Reliability | None:
    """Reliability of the difficulty score for one tier's graded records (None when there are none)."""
    pairs = [
        (r.entry.difficulty, 1.0 - r.score)  # difficulty predicts failure
        for r in records
        if r.entry.tier == tier and r.score is not None and r.entry.difficulty is not None
        and math.isfinite(r.entry.difficulty)
    ]
    table = calibration_bins([p for p, _ in pairs], [failed for _, failed in pairs], bins)
    ece = calibration_error(table)
    if ece is None:
        return None
    return Reliability(tier, len(pairs), ece, [b.as_dict() for b in table])


def _analyse(report: Report, records: Sequence[StoredRecord]) -> None:
    """Fill in the accuracy/cost points and the reliability diagrams from the records."""
    tiers: dict[str, Counts] = defaultdict(Counts)
    policy = Counts()
    forced: dict[str, Counts] = defaultdict(Counts)
    for record in records:
        counts = record_counts(record)
        tiers[record.entry.tier].add(counts)
        if record.entry.rule == FORCED_RULE:
            forced[record.entry.tier].add(counts)
        else:
            policy.add(counts)
    order = sorted(tiers, key=lambda t: (tiers[t].cost_per_request or 0.0, t))
    report.points = [Point(f"tier {tier}", "tier", tiers[tier]) for tier in order]
    if policy.requests:
        report.points.append(Point("policy", "policy", policy))
    report.points += [Point(f"always-{tier}", "always", forced[tier]) for tier in order if forced[tier].graded]
    for tier in order:
        diagram = reliability(records, tier)
        if diagram is not None:
            report.reliability[tier] = diagram
    report.reliability_tier = order[0] if order else None


def report_from_records(
    records: Sequence[StoredRecord], by: By, since: float | None, until: float, trimmed_until: float | None = None
) -> Report:
    """Group the window's records by tier, policy, app or day (exact to the second)."""
    groups: dict[str, Counts] = defaultdict(Counts)
    key_of = _KEY_OF[by]
    for record in records:
        groups[key_of(record)].add(record_counts(record))
    rows, total = _rows(dict(groups), by)
    report = Report(by, "records", since, until, rows, total)
    _analyse(report, records)
    note = _sources_note(records)
    if note is not None:
        report.notes.append(note)
    if trimmed_until is not None and (since is None or trimmed_until >= since):
        report.notes.append(
            f"The stream cap (ledger.stream_maxlen) has removed records up to {iso(trimmed_until)}, so this window "
            "is incomplete. For day-level totals over longer spans use --source aggregates."
        )
    return report


def _sources_note(records: Sequence[StoredRecord]) -> str | None:
    """Which verdict source each graded request's accuracy came from (its strongest), so mixes are never silent."""
    def rank(source: str) -> int:
        return source_rank(source) if source in VERDICT_SOURCES else len(VERDICT_SOURCES)

    used: dict[str, int] = defaultdict(int)
    for record in records:
        if record.verdicts:
            used[min(record.verdicts, key=rank)] += 1
    if not used:
        return None
    counts = ", ".join(f"{source} {used[source]}" for source in sorted(used, key=rank))
    return (
        f"Verdicts used (each request's strongest: feedback > reference > judge > agreement): {counts}. "
        "`router report --sources` shows each source on its own, per tier and day."
    )


def report_from_aggregates(reader: LedgerReader, by: By, since: float | None, until: float) -> Report:
    """Sum the per-day aggregates over the window's UTC days (or the all-time ones with --since all)."""
    if by == "key" or by == "rule":  # no per-key or per-rule aggregates are kept
        raise ConfigError(
            f"--by {by} needs --source records: the ledger keeps aggregates by tier, policy, app and day only."
        )
    notes = []
    if since is None and by != "day":
        groups = reader.aggregates(by)
        notes.append("All-time aggregates: every request since the ledger began.")
    else:
        first = since if since is not None else until - (math.ceil(reader.config.aggregate_ttl_days) + 1) * 86_400
        start = datetime.fromtimestamp(first, UTC).date()
        days = [str(start + timedelta(days=i)) for i in range((datetime.fromtimestamp(until, UTC).date() - start).days + 1)]
        if by == "day":
            groups = {day: counts for day in days for counts in reader.aggregates(None, [day]).values()}
        else:
            groups = reader.aggregates(by, days)
        notes.append(
            f"Aggregates are kept per UTC day, so the window starts at {days[0]} 00:00 UTC; days older than "
            f"ledger.aggregate_ttl_days ({reader.config.aggregate_ttl_days:g}) have expired."
        )
    rows, total = _rows(groups, by)
    return Report(by, "aggregates", since, until, rows, total, notes=notes)


def build_report(reader: LedgerReader, by: By, since: float | None, until: float, source: Source = "records") -> Report:
    """The report for a window, from records (exact, with points and reliability) or aggregates."""
    if by not in BY_CHOICES:
        raise ConfigError(f"--by: must be one of {', '.join(BY_CHOICES)} (got {by!r}).")
    if source == "aggregates":
        report = report_from_aggregates(reader, by, since, until)
    else:
        report = report_from_records(reader.records(since, until), by, since, until, reader.trimmed_until())
    if report.total.counts.requests and not report.total.counts.graded:
        report.notes.append(
            "No request in the window is graded, so accuracy and cost per correct answer are unknown: send "
            "verdicts to POST /v1/feedback, or grade traffic with `router eval`."
        )
    return report
