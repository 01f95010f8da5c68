"""Monitoring by verdict source: per tier and UTC day, each source's accuracy and predicted vs observed success.

`router report --sources` (docs/ledger.md). Every verdict source (feedback, reference, judge,
agreement: VERDICT_SOURCES) is counted on its own: a request graded by the app and by the judge
counts once in each source's figures, never merged into one number.

Per (day, tier, source), over the requests that source graded:
- accuracy = mean verdict (with its Wilson 95% interval) and cost per correct answer = their cost /
  their correct answers;
- predicted success = mean of (1 − difficulty) over those with a difficulty. The difficulty is the
  classifier's P(cheapest tier wrong), so for the cheapest tier this is its predicted accuracy and
  `drift` = observed − predicted is calibration drift; for a stronger tier the gap is its gain over
  the cheapest tier on the same prompts. This holds for policies that route on `classifier.score:
  difficulty` (the default); with `gain`, the ledger's difficulty column is the gain.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from router.ledger.entry import VERDICT_SOURCES, StoredRecord
from router.ledger.intervals import Interval, wilson
from router.ledger.keys import utc_day


@dataclass
class SourceFigures:
    """One verdict source's figures for one tier and day."""

    source: str
    graded: int = 0
    correct: float = 0.0
    graded_cost_usd: float = 0.0
    predicted_sum: float = 0.0  # of (1 - difficulty), over graded requests with a difficulty
    predicted_n: int = 0
    predicted_correct: float = 0.0  # verdicts of those same requests

    @property
    def accuracy(self) -> Interval | None:
        """Mean verdict with its Wilson interval; None when this source graded nothing."""
        return wilson(self.correct, self.graded)

    @property
    def cost_per_correct(self) -> float | None:
        """Cost of the graded requests per correct answer among them (None when none was correct)."""
        return self.graded_cost_usd / self.correct if self.correct > 0 else None

    @property
    def predicted(self) -> float | None:
        """Mean difficulty-implied P(success) of the graded requests; None when none had a difficulty."""
        return self.predicted_sum / self.predicted_n if self.predicted_n else None

    @property
    def drift(self) -> float | None:
        """Observed accuracy − predicted success, both over the graded requests with a difficulty."""
        predicted = self.predicted
        return None if predicted is None else self.predicted_correct / self.predicted_n - predicted

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        accuracy = self.accuracy
        return {
            "source": self.source, "graded": self.graded, "correct": round(self.correct, 6),
            "accuracy": None if accuracy is None else accuracy.as_dict(6),
            "graded_cost_usd": round(self.graded_cost_usd, 9),
            "cost_per_correct": None if self.cost_per_correct is None else round(self.cost_per_correct, 9),
            "predicted_success": None if self.predicted is None else round(self.predicted, 6),
            "with_difficulty": self.predicted_n,
            "drift": None if self.drift is None else round(self.drift, 6),
        }


@dataclass
class MonitorRow:
    """One tier on one UTC day: its requests, how many any source graded, and each source's figures."""

    day: str
    tier: str
    requests: int = 0
    graded: int = 0  # by at least one source
    cost_usd: float = 0.0
    sources: dict[str, SourceFigures] = field(default_factory=dict)

    @property
    def graded_share(self) -> float:
        """Share of the requests with at least one verdict."""
        return self.graded / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready row (sources in rank order: feedback, reference, judge, agreement)."""
        return {
            "day": self.day, "tier": self.tier, "requests": self.requests, "graded": self.graded,
            "graded_share": round(self.graded_share, 6), "cost_usd": round(self.cost_usd, 9),
            "sources": [self.sources[s].as_dict() for s in _ranked(self.sources)],
        }


@dataclass
class Monitor:
    """The monitoring view of a window: rows by day then tier (cheapest first)."""

    since: float | None
    until: float
    rows: list[MonitorRow]
    predicts_tier: str | None  # the cheapest tier: the one the difficulty predicts

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (what `router report --sources --json` prints)."""
        from router.ledger.report import iso

        return {"since": iso(self.since), "until": iso(self.until), "predicts_tier": self.predicts_tier,
                "rows": [row.as_dict() for row in self.rows]}

    def series(self, tier: str, source: str) -> list[tuple[str, SourceFigures]]:
        """(day, figures) of one tier and source, by day: what the drift plot draws."""
        return [(row.day, row.sources[source]) for row in self.rows if row.tier == tier and source in row.sources]


def _ranked(sources: dict[str, SourceFigures]) -> list[str]:
    return sorted(sources, key=lambda s: VERDICT_SOURCES.index(s) if s in VERDICT_SOURCES else len(VERDICT_SOURCES))


def monitor_from_records(records: Sequence[StoredRecord], since: float | None, until: float) -> Monitor:
    """Group the window's records by UTC day and tier, and each group's verdicts by source."""
    rows: dict[tuple[str, str], MonitorRow] = {}
    tier_cost: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # tier -> [cost, requests]
    for record in records:
        entry = record.entry
        key = (utc_day(entry.timestamp), entry.tier)
        row = rows.get(key)
        if row is None:
            row = rows[key] = MonitorRow(*key)
        row.requests += 1
        row.cost_usd += entry.cost_usd
        tier_cost[entry.tier][0] += entry.cost_usd
        tier_cost[entry.tier][1] += 1
        if record.verdicts:
            row.graded += 1
        difficulty = entry.difficulty
        known = difficulty is not None and math.isfinite(difficulty) and 0.0 <= difficulty <= 1.0
        for source, verdict in record.verdicts.items():
            figures = row.sources.get(source)
            if figures is None:
                figures = row.sources[source] = SourceFigures(source)
            figures.graded += 1
            figures.correct += verdict
            figures.graded_cost_usd += entry.cost_usd
            if known:
                assert difficulty is not None
                figures.predicted_sum += 1.0 - difficulty
                figures.predicted_n += 1
                figures.predicted_correct += verdict
    by_cost = sorted(tier_cost, key=lambda t: (tier_cost[t][0] / tier_cost[t][1], t))
    order = {tier: i for i, tier in enumerate(by_cost)}
    ordered = sorted(rows.values(), key=lambda r: (r.day, order[r.tier]))
    return Monitor(since, until, ordered, by_cost[0] if by_cost else None)
