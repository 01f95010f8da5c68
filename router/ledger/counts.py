"""Aggregate counters, kept as integers so that sums are exact in Redis and in Python alike.

Money is counted in nano-dollars (1e-9 USD), latency in microseconds and scores in millionths:
HINCRBY on integers never rounds, so an aggregate equals the sum of its records exactly, whatever
the order in which concurrent writers add them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from core.metrics import accuracy, cost_per_correct, ratio

NANO = 1_000_000_000  # units of cost_nusd per USD
MICRO = 1_000_000  # units of latency_us per second, and of correct_e6 per correct answer

# The writers' own counters, as `stats()` reports them for /metrics (besides `buffered` and
# `redis_up`, which are gauges).
STAT_NAMES = (
    "recorded",  # records written to Redis
    "duplicates",  # records skipped because their request id was already written (retried flushes)
    "feedback",  # verdicts applied
    "feedback_unknown",  # verdicts for request ids the ledger does not hold (or no longer holds)
    "queued_total",  # writes that went through the in-memory queue (outages and record_nowait)
    "flushed",  # queued writes that reached Redis
    "dropped",  # writes lost because the queue was full (buffer_size)
    "lost_at_close",  # queued writes still unsent when the ledger was closed
    "write_errors",  # writes Redis refused for another reason (logged)
    "outages",  # times Redis went from reachable to unreachable
    "invalid",  # entries that could not be encoded (a bug in the caller; logged, not raised)
)

def to_units(value: float | None, scale: int) -> int:
    """A non-negative amount in integer units; missing, negative or non-finite amounts count as 0."""
    if value is None or isinstance(value, bool):
        return 0
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        return 0
    return round(number * scale)


def score_units(score: float) -> int:
    """A verdict in [0, 1] as millionths (true = 1_000_000)."""
    return round(score * MICRO)


@dataclass(slots=True)
class Counts:
    """Requests, cost, tokens, latency, and the graded part of them, for one aggregate."""

    requests: int = 0
    errors: int = 0
    cost_nusd: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_us: int = 0
    graded: int = 0
    graded_cost_nusd: int = 0
    correct_e6: int = 0

    @classmethod
    def one(
        cls, cost_usd: float, input_tokens: int, output_tokens: int, latency_s: float, *, ok: bool = True,
        score: float | None = None,
    ) -> Counts:
        """One request as counters, rounded as the Lua scripts round; graded when it has a `score`."""
        cost = to_units(cost_usd, NANO)
        counts = cls(requests=1, errors=int(not ok), cost_nusd=cost, input_tokens=to_units(input_tokens, 1),
                     output_tokens=to_units(output_tokens, 1), latency_us=to_units(latency_s, MICRO))
        if score is not None:
            counts.graded, counts.graded_cost_nusd, counts.correct_e6 = 1, cost, score_units(score)
        return counts

    @classmethod
    def from_hash(cls, data: Mapping[Any, Any]) -> Counts:
        """Counts from a Redis hash (absent fields are 0; unknown fields are ignored)."""
        return cls(**{item.name: int(data[item.name]) for item in fields(cls) if item.name in data})

    def add(self, other: Counts) -> None:
        """Add another aggregate into this one."""
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def cost_usd(self) -> float:
        """Total cost of the requests."""
        return self.cost_nusd / NANO

    @property
    def graded_cost_usd(self) -> float:
        """Cost of the graded requests only."""
        return self.graded_cost_nusd / NANO

    @property
    def correct(self) -> float:
        """Sum of the verdicts of graded requests (a graded score counts its fraction)."""
        return self.correct_e6 / MICRO

    @property
    def accuracy(self) -> float | None:
        """Correct among graded, or None when nothing is graded."""
        return accuracy(self.correct, self.graded)

    @property
    def cost_per_request(self) -> float | None:
        """Mean cost of a request, or None with no requests."""
        return ratio(self.cost_usd, self.requests)

    @property
    def cost_per_correct(self) -> float | None:
        """Cost of graded requests / correct among graded (core.metrics.cost_per_correct: None when none was)."""
        return cost_per_correct(self.graded_cost_usd, self.correct)

    @property
    def mean_latency_s(self) -> float | None:
        """Mean latency of a request, or None with no requests."""
        return ratio(self.latency_us / MICRO, self.requests)
