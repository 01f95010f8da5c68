"""Live policy against a shadowed candidate, on the same requests: accuracy, cost, cost per correct answer.

Only rows where the judge gave both answers a verdict count (the same requests on both sides, so
the comparison is paired). Intervals are 95% (router.ledger.intervals): Wilson for each accuracy,
a normal interval for each mean cost per request and for the paired differences (candidate − live,
per request: the pairing removes the requests' own spread), the delta method for each cost per
correct answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.ledger.intervals import Interval, mean_interval, ratio_interval, wilson
from router.live.shadow import ShadowRow


@dataclass(frozen=True)
class PolicyFigures:
    """One side of the comparison over the graded rows."""

    accuracy: Interval | None
    cost_per_request: Interval | None
    cost_per_correct: Interval | None
    correct: float
    cost_usd: float
    tiers: dict[str, int]  # graded rows answered by each tier

    @classmethod
    def of(cls, costs: Sequence[float], verdicts: Sequence[float], tiers: Sequence[str]) -> PolicyFigures:
        """The figures of one side, from its per-request costs, verdicts and tiers."""
        return cls(
            accuracy=wilson(sum(verdicts), len(verdicts)),
            cost_per_request=mean_interval(costs),
            cost_per_correct=ratio_interval(costs, verdicts),
            correct=sum(verdicts),
            cost_usd=sum(costs),
            tiers=dict(sorted(Counter(tiers).items())),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (an interval as {value, low, high}, or None)."""
        return {
            "accuracy": _interval(self.accuracy, 6),
            "cost_per_request": _interval(self.cost_per_request, 12),
            "cost_per_correct": _interval(self.cost_per_correct, 12),
            "correct": round(self.correct, 6),
            "cost_usd": round(self.cost_usd, 12),
            "tiers": self.tiers,
        }


@dataclass(frozen=True)
class ShadowComparison:
    """The report of one shadowed candidate version."""

    version: str
    rows: int  # shadowed requests written
    graded: int  # of them, with both verdicts: what every figure below is computed on
    different: int  # graded rows where the candidate chose another plan than the live policy
    live: PolicyFigures
    candidate: PolicyFigures
    accuracy_difference: Interval | None  # candidate − live, paired
    cost_difference: Interval | None  # candidate − live, per request, paired
    first: float | None
    last: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "version": self.version, "rows": self.rows, "graded": self.graded, "different_plan": self.different,
            "first": self.first, "last": self.last,
            "live": self.live.as_dict(), "candidate": self.candidate.as_dict(),
            "difference": {
                "accuracy": _interval(self.accuracy_difference, 6),
                "cost_per_request": _interval(self.cost_difference, 12),
            },
        }


def compare(version: str, rows: Sequence[ShadowRow]) -> ShadowComparison:
    """Side-by-side figures of the live policy and the candidate on the rows both were graded on."""
    graded = [r for r in rows if r.graded]
    live_ok = [float(r.live_correct or 0.0) for r in graded]
    cand_ok = [float(r.candidate_correct or 0.0) for r in graded]
    live_cost = [r.live_cost_usd for r in graded]
    cand_cost = [r.candidate_cost_usd for r in graded]
    return ShadowComparison(
        version=version,
        rows=len(rows),
        graded=len(graded),
        different=sum(not r.same_plan for r in graded),
        live=PolicyFigures.of(live_cost, live_ok, [r.live_tier for r in graded]),
        candidate=PolicyFigures.of(cand_cost, cand_ok, [r.candidate_tier for r in graded]),
        accuracy_difference=mean_interval([c - v for c, v in zip(cand_ok, live_ok, strict=True)]),
        cost_difference=mean_interval([c - v for c, v in zip(cand_cost, live_cost, strict=True)]),
        first=rows[0].timestamp if rows else None,
        last=rows[-1].timestamp if rows else None,
    )


def _interval(interval: Interval | None, digits: int) -> dict[str, float] | None:
    return None if interval is None else interval.as_dict(digits)
